"""What a training checkpoint holds, where it lives, and how a run continues from one exactly.

Everything in the payload is plain data (tensors, numbers, strings, lists, dicts), so it loads with
`torch.load(weights_only=True)`; `model` + `model_config` make it loadable by `model.load_model` as well. Each
checkpoint has its SHA-256 beside it (step_XXXXXXXX.pt.sha256), verified before it is used.
"""
import dataclasses
import random
from pathlib import Path

import numpy as np
import torch

from trainer.resume_compatibility import ResumeRules, check_resume_settings
from utils.atomic_files import WriteFailed, temporary_files
from utils.checkpoint import checksum_path, checksum_problem, load_checkpoint, save_checkpoint_atomic
from utils.errors import UserError

CHECKPOINT_GLOB = "step_*.pt"
PASSED_OVER_DIR = "passed_over"


@dataclasses.dataclass
class TrainState:
    """The loop's position (everything else, epoch, batch in epoch, learning rate, follows from `step`) and the
    records of it that the summary reports: a run resumed at its last step writes the summary it would have."""
    step: int = 0
    skipped_images: int = 0  # missing/corrupt images replaced in the batches seen so far, all ranks
    evaluation_pending: bool = False  # one was due at `step`, but a stop came first: the resumed run does it
    record: dict = dataclasses.field(default_factory=dict)  # the last training record logged
    evaluation: dict = dataclasses.field(default_factory=dict)  # the last evaluation record


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def list_checkpoints(run_dir) -> list[Path]:
    return sorted(checkpoint_dir(run_dir).glob(CHECKPOINT_GLOB))


def remove_torn_writes(run_dir) -> None:
    """Temporary files of writes that a kill interrupted, and checksums left without their checkpoint by a kill
    between the two renames: never valid, safe to delete."""
    folder = checkpoint_dir(run_dir)
    for temporary in temporary_files(folder):
        temporary.unlink(missing_ok=True)
    for checksum in folder.glob(CHECKPOINT_GLOB + ".sha256"):
        if not checksum.with_suffix("").is_file():
            checksum.unlink(missing_ok=True)


def find_resume_checkpoint(resume: str | None, run_dir, say=print) -> Path | None:
    """`auto`: the newest checkpoint of this run folder that verifies and reads (None if there is none), saying
    which newer ones it passed over and why; otherwise the given path, which must verify."""
    if resume is None:
        return None
    if resume != "auto":
        if not Path(resume).is_file():
            raise UserError(f"--resume {resume}: no such checkpoint file (use --resume auto for the latest in the run)")
        problem = checksum_problem(resume)
        if problem:
            raise UserError(f"--resume {resume}: {problem}")
        return Path(resume)
    for path in reversed(list_checkpoints(run_dir)):
        problem = unusable(path)
        if problem is None:
            if not checksum_path(path).is_file():
                say(f"note: {path} has no checksum (written before checksums were kept); it loads, so it is used")
            return path
        say(f"passed over {path}: {problem}")
    return None


def unusable(path: Path) -> str | None:
    """Why a checkpoint cannot be resumed from, or None. One without a checksum (written before checksums were
    kept) is taken when it loads."""
    if checksum_path(path).is_file():
        return checksum_problem(path)
    try:
        load_checkpoint(path)
    except UserError as error:
        return str(error).removeprefix(f"{path}: ")
    return None


def set_aside_checkpoints_after(run_dir, step: int) -> list[Path]:
    """Move the checkpoints newer than `step` (passed over as unusable, or of a run resumed from an earlier one)
    into checkpoints/passed_over/: this run writes those steps anew, and nothing is deleted. Returns the new
    places."""
    moved = []
    for path in list_checkpoints(run_dir):
        if int(path.stem.removeprefix("step_")) <= step:
            continue
        target = free_name(checkpoint_dir(run_dir) / PASSED_OVER_DIR / path.name)
        target.parent.mkdir(exist_ok=True)
        if checksum_path(path).is_file():
            checksum_path(path).replace(checksum_path(target))
        path.replace(target)
        moved.append(target)
    return moved


def free_name(path: Path) -> Path:
    """`path`, or path.1, path.2 ... when it is taken: an earlier run's passed-over file is kept too."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.{number}")
    return candidate


def rng_state() -> dict:
    """This process's random generators, as plain data."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                  "has_gauss": has_gauss, "cached_gaussian": cached_gauss},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        # this process's device only: a resumed task may see fewer GPUs (one per task under SLURM)
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_training_checkpoint(run_dir, model, optimizer, scaler, state: TrainState, position: dict,
                             config: dict, rng_states: list, keep_last: int) -> Path:
    """Write the checkpoint of `state.step` atomically and delete all but the newest `keep_last`."""
    payload = {
        "model": model.state_dict(),
        "model_config": dataclasses.asdict(model.config),
        "config": config,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "step": state.step,
        **position,  # epoch, batch_in_epoch: where the data stream continues
        "skipped_images": state.skipped_images,
        "rng": rng_states,  # one entry per rank
        "metrics": state.record,
        "evaluation": state.evaluation,
        "evaluation_pending": state.evaluation_pending,
    }
    path = checkpoint_path(run_dir, state.step)
    try:
        save_checkpoint_atomic(payload, path, checksum=True)
    except WriteFailed as failure:
        last = find_resume_checkpoint("auto", run_dir, say=lambda message: None)
        raise UserError(f"cannot write checkpoint {failure.path}: {failure.cause}; the last whole checkpoint is "
                        f"{last or 'none'}: fix the cause and rerun with --resume auto") from None
    prune_checkpoints(run_dir, keep_last, keep=path)
    return path


def prune_checkpoints(run_dir, keep_last: int, keep: Path) -> None:
    """Delete all but the newest `keep_last` checkpoints (and their checksums), never `keep`: the one just
    written and verified."""
    others = [path for path in list_checkpoints(run_dir) if path != keep]
    for old in others[:max(0, len(others) - (keep_last - 1))]:
        checksum_path(old).unlink(missing_ok=True)
        old.unlink(missing_ok=True)


def load_training_checkpoint(path, model, optimizer, scaler, rank: int, world_size: int,
                             rules: ResumeRules) -> TrainState:
    """Check that the checkpoint's settings allow resuming under `rules`, then restore model, optimiser, grad
    scaler and this rank's RNG; return the loop's state."""
    if not Path(path).is_file():  # rank 0 chose it: this node does not see rank 0's storage
        raise UserError(f"{path}, the checkpoint rank 0 resumes from, is not there: output_dir must be on storage "
                        "every node reads (a shared filesystem)")
    payload = load_checkpoint(path)
    missing = {"model", "optimizer", "scaler", "step", "rng"} - payload.keys()
    if missing:
        raise UserError(f"{path}: not a training checkpoint of this toolkit (missing {', '.join(sorted(missing))})")
    note = check_resume_settings(path, payload.get("config"), len(payload["rng"]), rules)
    if note and rank == 0:
        print(note)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        detail = " ".join(line.strip() for line in str(error).splitlines()[:2])[:300]
        raise UserError(f"{path}: its weights do not fit the configured model ({detail})") from None
    optimizer.load_state_dict(payload["optimizer"])
    if payload["scaler"]:
        scaler.load_state_dict(payload["scaler"])
    if len(payload["rng"]) == world_size:
        restore_rng_state(payload["rng"][rank])
    elif rank == 0:
        print(f"note: {path} was written by {len(payload['rng'])} processes, this run has {world_size}: "
              f"random generators start fresh and the data order differs from the original run")
    # checkpoints written before these records were kept: a stop's evaluation is lost, the summary without them
    return TrainState(step=payload["step"], skipped_images=payload.get("skipped_images", 0),
                      evaluation_pending=payload.get("evaluation_pending", False),
                      record=payload.get("metrics", {}), evaluation=payload.get("evaluation", {}))
