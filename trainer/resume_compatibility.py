"""Whether a run may continue from a checkpoint written with other settings. Resuming is exact only when every
setting that shapes the trajectory (batch size, processes, accumulation, epochs, seed, data, model, precision,
optimiser, schedule ...) is the one the checkpoint was written with; any change there is refused unless the user
allows it. Settings that cannot alter the trajectory pass silently."""
import dataclasses

from utils.errors import UserError

# Where the run writes its files and records (logging: wandb), how often it logs, checkpoints and evaluates, and how
# fast it computes: free to change.
TRAJECTORY_FREE = ("output_dir", "checkpoint", "eval", "logging", "train.log_every_steps", "train.num_threads",
                   "train.channels_last", "train.grad_checkpointing", "train.deterministic", "data.prefetch_factor",
                   "data.memory_cache_mb", "data.strict_images")
WORKERS = "data.num_workers"  # free unless the loader's batches depend on it (shards: a worker reads its own)
PROCESSES = "processes"
# Settings added after checkpoints were being written, each with the value that behaves as runs did before it: a
# configuration that lacks the key (an older checkpoint's) ran with that value.
ADDED_SINCE = {
    "train.compile": False, "loss.kind": "clip", "loss.duplicate_captions": "negative",
    "optimizer.logit_scale_lr": None, "model.lock_image": False, "model.lock_image_unlocked_groups": 0,
    "model.lock_image_freeze_bn_stats": False, "model.lock_text": False, "model.lock_text_unlocked_layers": 0,
    "data.random_crop_max_aspect": 1.0, "data.horizontal_flip": 0.0, "data.sided_captions": "swap",
    "data.color_jitter": 0.0, "data.captions_per_image": 1, "model.init_image_from": None,
    "model.init_text_from": None,
}
ABSENT = "(absent)"


@dataclasses.dataclass(frozen=True)
class ResumeRules:
    config: dict  # this run's resolved configuration (train.precision as `auto` resolved it)
    processes: int
    order_depends_on_workers: bool
    allow_changes: bool  # checkpoint.resume_allow_changes (--resume_allow_changes)


def flatten(config: dict, prefix: str = "") -> dict:
    """{"train": {"seed": 0}} -> {"train.seed": 0}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changes_that_alter_the_run(saved: dict, saved_processes: int, rules: ResumeRules) -> list[str]:
    """'key old → new' for each setting that differs and can change the trajectory, in the config's order."""
    old, new = flatten(saved), flatten(rules.config)
    for flat in (old, new):
        for key, value in ADDED_SINCE.items():
            flat.setdefault(key, value)  # after the config's own keys: changes stay listed in the config's order
    old[PROCESSES], new[PROCESSES] = saved_processes, rules.processes
    free = TRAJECTORY_FREE if rules.order_depends_on_workers else (*TRAJECTORY_FREE, WORKERS)
    changes = []
    for key in [*new, *(key for key in old if key not in new)]:
        if old.get(key, ABSENT) != new.get(key, ABSENT) and not any(key == f or key.startswith(f + ".") for f in free):
            changes.append(f"{key} {old.get(key, ABSENT)} → {new.get(key, ABSENT)}")
    return changes


def check_resume_settings(path, saved_config: dict | None, saved_processes: int, rules: ResumeRules) -> str | None:
    """Raise a one-line UserError listing the changes that alter the run, unless they are allowed; return the note
    to print when changes were allowed (or the checkpoint has no configuration to compare), else None."""
    if saved_config is None:
        return f"note: {path} records no configuration: the settings it was written with cannot be compared"
    changes = changes_that_alter_the_run(saved_config, saved_processes, rules)
    if not changes:
        return None
    if not rules.allow_changes:
        raise UserError(f"{path} was written with other settings, and resuming with these would not continue the "
                        f"same run: {', '.join(changes)}; rerun with the original settings, or add "
                        "--resume_allow_changes to continue with the new ones")
    return f"note: resuming with changed settings (--resume_allow_changes): {', '.join(changes)}"
