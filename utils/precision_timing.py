"""The timing mechanics behind `auto` precision (the policy that uses them: utils.precision): time a few steps of
the actual work at each candidate precision, and remember the outcome per machine and workload, so that later runs
with the same model, batch and threads skip the measurement and choose the same."""
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import torch

from utils.atomic_files import WriteFailed, write_text_atomically
from utils.cache_folders import toolkit_cache
from utils.machine import cpu_bf16_unit, cpu_model

# After one untimed step per precision (kernel selection, buffers), each round times one step of every precision:
# at least MIN_TIMED_ROUNDS, and more while a precision has been timed for less than MIN_TIMED_SECONDS in all (a
# small model's step lasts milliseconds, where one step says little), up to MAX_TIMED_ROUNDS.
MIN_TIMED_ROUNDS, MAX_TIMED_ROUNDS, MIN_TIMED_SECONDS = 2, 20, 1.0


@dataclasses.dataclass(frozen=True)
class Workload:
    """The work a precision is chosen for: `make_step(precision)` returns a function that runs one step of it,
    which leaves no trace on the run (a copy of the model, random inputs from a generator of its own)."""
    make_step: Callable[[str], Callable[[], None]]
    samples_per_step: int
    identity: dict  # what the speed depends on besides the machine: task, model config, batch, image size ...


def time_candidates(candidates: tuple[str, ...], workload: Workload,
                    agreed: Callable = lambda value: value) -> dict[str, float]:
    """Samples/s of the workload at each candidate precision, timed in turn: each precision's best step over the
    rounds (interference from other processes only ever adds time). `agreed` turns each process's decision to time
    another round into one for all (utils.precision.measure)."""
    steps = {precision: workload.make_step(precision) for precision in candidates}
    for step in steps.values():
        step()
    best, total, rounds = dict.fromkeys(steps, float("inf")), dict.fromkeys(steps, 0.0), 0
    while agreed(rounds < MIN_TIMED_ROUNDS
                 or (rounds < MAX_TIMED_ROUNDS and min(total.values()) < MIN_TIMED_SECONDS)):
        for precision, step in steps.items():
            started = time.perf_counter()
            step()
            seconds = time.perf_counter() - started
            best[precision], total[precision] = min(best[precision], seconds), total[precision] + seconds
        rounds += 1
    return {precision: workload.samples_per_step / seconds for precision, seconds in best.items()}


def cache_file() -> Path:
    return toolkit_cache() / "precision.json"


def cache_key(device, workload: Workload) -> str:
    """The measurement's identity: the machine, torch, the thread count and the workload."""
    identity = {"cpu": cpu_model(), "bf16_unit": cpu_bf16_unit(), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "device": torch.device(device).type, **workload.identity}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def remembered_entry(device, workload: Workload) -> dict | None:
    return _read_cache().get(cache_key(device, workload))


def remember_entry(device, workload: Workload, entry: dict) -> None:
    """Add the entry to the cache file, written whole or not at all (a kill mid-write leaves the old file); a cache
    that cannot be written only costs the next run a measurement."""
    entries = _read_cache()
    entries[cache_key(device, workload)] = {**entry, "workload": workload.identity}
    try:
        write_text_atomically(cache_file(), json.dumps(entries, indent=1, default=str))
    except WriteFailed:
        pass


def _read_cache() -> dict:
    try:
        entries = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}
