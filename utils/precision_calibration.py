"""`auto` precision where the hardware leaves it open (utils.precision.hardware_choice): time a few steps of the
actual work at each candidate precision, keep the faster, and remember the answer per machine and workload, so
that later runs with the same model, batch and threads skip the measurement and choose the same."""
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import torch

from utils.atomic_files import WriteFailed, write_text_atomically
from utils.machine import cpu_model
from utils.precision import check_precision, cpu_bf16_unit, hardware_choice

# After one untimed step per precision (kernel selection, buffers), each round times one step of every precision:
# at least MIN_TIMED_ROUNDS, and more while a precision has been timed for less than MIN_TIMED_SECONDS in all (a
# small model's step lasts milliseconds, where one step says little), up to MAX_TIMED_ROUNDS.
MIN_TIMED_ROUNDS, MAX_TIMED_ROUNDS, MIN_TIMED_SECONDS = 2, 20, 1.0
BF16_MARGIN = 1.05  # bf16 must be this much faster to be kept: it costs precision, and timings are noisy


@dataclasses.dataclass(frozen=True)
class Workload:
    """The work a precision is chosen for: `make_step(precision)` returns a function that runs one step of it,
    which leaves no trace on the run (a copy of the model, random inputs from a generator of its own)."""
    make_step: Callable[[str], Callable[[], None]]
    samples_per_step: int
    identity: dict  # what the speed depends on besides the machine: task, model config, batch, image size ...


@dataclasses.dataclass(frozen=True)
class PrecisionDecision:
    precision: str
    reason: str
    samples_per_s: dict[str, float] = dataclasses.field(default_factory=dict)  # per candidate, where measured
    remembered: bool = False  # from the cache of an earlier run's measurement

    def describe(self) -> str:
        if not self.samples_per_s:
            return f"{self.precision} ({self.reason})"
        speeds = ", ".join(f"{name} {speed:,.1f}" for name, speed in self.samples_per_s.items())
        source = "remembered from an earlier measurement" if self.remembered else "measured"
        return f"{self.precision} ({self.reason}; {source}: {speeds} samples/s)"


def decide_without_measuring(requested: str, device) -> PrecisionDecision | None:
    """The decision where no measurement is needed (an explicit precision, or hardware that settles `auto`);
    None where `auto` must be measured."""
    check_precision(requested, device)
    if requested != "auto":
        return PrecisionDecision(requested, "asked for explicitly")
    choice = hardware_choice(device)
    return PrecisionDecision(choice.candidates[0], choice.reason) if choice.decided else None


def cache_file() -> Path:
    root = os.environ.get("CLIP_TOOLKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) \
        / "clip-toolkit"
    return Path(root) / "precision.json"


def cache_key(device, workload: Workload) -> str:
    """The measurement's identity: the machine, torch, the thread count and the workload."""
    identity = {"cpu": cpu_model(), "bf16_unit": cpu_bf16_unit(), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "device": torch.device(device).type, **workload.identity}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def remembered_decision(device, workload: Workload) -> PrecisionDecision | None:
    entry = _read_cache().get(cache_key(device, workload))
    if not entry:
        return None
    return PrecisionDecision(entry["precision"], entry["reason"], entry["samples_per_s"], remembered=True)


def remember(device, workload: Workload, decision: PrecisionDecision) -> None:
    """Add the decision to the cache file, written whole or not at all (a kill mid-write leaves the old file);
    a cache that cannot be written only costs the next run a measurement."""
    entries = _read_cache()
    entries[cache_key(device, workload)] = {"precision": decision.precision, "reason": decision.reason,
                                            "samples_per_s": decision.samples_per_s, "workload": workload.identity}
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


def measure(device, workload: Workload, agreed: Callable = lambda value: value) -> PrecisionDecision:
    """Time the workload at each of the hardware's candidate precisions, in turn, and keep the faster: each
    precision's best step over the rounds (interference from other processes only ever adds time). Where several
    processes time steps that wait for each other (collectives), `agreed` turns each process's value of what
    decides which steps run (the candidates, whether to time another round) into one value for all (rank 0's): on
    their own hardware and clocks they would run different steps and wait for each other forever."""
    choice = agreed(hardware_choice(device))
    steps = {precision: workload.make_step(precision) for precision in choice.candidates}
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
    speeds = {precision: workload.samples_per_step / seconds for precision, seconds in best.items()}
    if speeds["bf16"] >= BF16_MARGIN * speeds["fp32"]:
        return PrecisionDecision("bf16", f"{choice.reason}; bf16 is the faster for this model and batch", speeds)
    return PrecisionDecision("fp32", f"{choice.reason}; bf16 is not {BF16_MARGIN - 1:.0%} faster than fp32 for this "
                                     "model and batch", speeds)


def decide_precision(requested: str, device, workload: Workload) -> PrecisionDecision:
    """The precision to run `workload` at, in one process: explicit, settled by the hardware, remembered, or
    measured now (and remembered)."""
    decision = decide_without_measuring(requested, device) or remembered_decision(device, workload)
    if decision is None:
        decision = measure(device, workload)
        remember(device, workload, decision)
    return decision
