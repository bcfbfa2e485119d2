"""What a training checkpoint holds, where it lives, and how a run continues from one exactly.

Everything in the payload is plain data (tensors, numbers, strings, lists, dicts), so it loads with
`torch.load(weights_only=True)`; `model` + `model_config` make it loadable by `model.load_model` as well.
"""
import dataclasses
import random
from pathlib import Path

import numpy as np
import torch

from utils.checkpoint import load_checkpoint, save_checkpoint_atomic
from utils.errors import UserError

CHECKPOINT_GLOB = "step_*.pt"


@dataclasses.dataclass
class TrainState:
    """The loop's position: everything else (epoch, batch in epoch, learning rate) follows from `step`."""
    step: int = 0
    skipped_images: int = 0  # missing/corrupt images replaced in the batches seen so far, all ranks


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def list_checkpoints(run_dir) -> list[Path]:
    return sorted(checkpoint_dir(run_dir).glob(CHECKPOINT_GLOB))


def remove_torn_writes(run_dir) -> None:
    """Temporary files of checkpoint writes that a kill interrupted: never valid, safe to delete."""
    for temporary in checkpoint_dir(run_dir).glob(".step_*.tmp"):
        temporary.unlink(missing_ok=True)


def find_resume_checkpoint(resume: str | None, run_dir) -> Path | None:
    """`auto`: the latest checkpoint of this run folder (None if there is none yet); otherwise a path."""
    if resume is None:
        return None
    if resume == "auto":
        found = list_checkpoints(run_dir)
        return found[-1] if found else None
    if not Path(resume).is_file():
        raise UserError(f"--resume {resume}: no such checkpoint file (use --resume auto for the latest in the run)")
    return Path(resume)


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
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(run_dir, model, optimizer, scaler, state: TrainState, position: dict,
                             config: dict, rng_states: list, metrics: dict, keep_last: int) -> Path:
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
        "metrics": metrics,
    }
    path = checkpoint_path(run_dir, state.step)
    save_checkpoint_atomic(payload, path)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def load_training_checkpoint(path, model, optimizer, scaler, rank: int, world_size: int) -> TrainState:
    """Restore model, optimiser, grad scaler and this rank's RNG; return the loop's state."""
    payload = load_checkpoint(path)
    missing = {"model", "optimizer", "scaler", "step", "rng"} - payload.keys()
    if missing:
        raise UserError(f"{path}: not a training checkpoint of this toolkit (missing {', '.join(sorted(missing))})")
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
    return TrainState(step=payload["step"], skipped_images=payload.get("skipped_images", 0))
