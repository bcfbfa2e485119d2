"""Numeric precision, and what `auto` becomes for training and for inference. What the hardware runs natively
decides; where both fp32 and bf16 are native (a CPU with AVX512_BF16 or AMX), a measurement of the actual work
decides (its timing in utils.precision_timing), since on such a CPU bf16 wins on a large model and loses on a small
one. Never hard-code a precision: emulated bf16 runs 10-50x slower than fp32."""
import contextlib
import copy
import dataclasses
from typing import Callable

import torch

from utils.distributed import all_gather_object, decided_on_main
from utils.errors import UserError
from utils.machine import cpu_bf16_unit
from utils.precision_timing import Workload, remember_entry, remembered_entry, time_candidates

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FIRST_NATIVE_BF16_CUDA = (8, 0)  # Ampere: bf16 tensor cores; older GPUs run bf16 through fp32 units
BF16_MARGIN = 1.05  # bf16 must be this much faster to be kept: it costs precision, and timings are noisy


@dataclasses.dataclass(frozen=True)
class HardwareChoice:
    """What `auto` may become on a device: one precision, or several for a measurement to decide between."""
    candidates: tuple[str, ...]
    reason: str

    @property
    def decided(self) -> bool:
        return len(self.candidates) == 1


def cuda_capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def hardware_choice(device) -> HardwareChoice:
    """The precisions `auto` chooses among on `device`, judged by native support alone."""
    device = torch.device(device)
    if device.type == "cuda":
        name, capability = torch.cuda.get_device_name(device), cuda_capability(device)
        if capability >= FIRST_NATIVE_BF16_CUDA:
            return HardwareChoice(("bf16",), f"{name} (compute capability {capability[0]}.{capability[1]}) "
                                             "has native bf16")
        # torch.cuda.is_bf16_supported() counts emulation: a V100 or T4 would get a slow bf16
        return HardwareChoice(("fp16",), f"{name} (compute capability {capability[0]}.{capability[1]}) has no "
                                         "native bf16: fp16 with a grad scaler")
    if device.type == "cpu":
        unit = cpu_bf16_unit()
        if unit:
            return HardwareChoice(("fp32", "bf16"), f"CPU has native bf16 ({unit})")
        return HardwareChoice(("fp32",), "CPU has no native bf16 (no AVX512_BF16 or AMX): bf16 would be emulated")
    return HardwareChoice(("fp32",), f"no native bf16 known for {device.type}")


def check_precision(name: str, device) -> None:
    """Reject names that do not exist or cannot run on `device`."""
    if name not in PRECISIONS:
        raise UserError(f"precision '{name}' is not one of {', '.join(PRECISIONS)}")
    if name == "fp16" and torch.device(device).type != "cuda":
        raise UserError("precision 'fp16' needs a CUDA device (its grad scaler is CUDA-only); use bf16 or fp32")


def autocast(device: torch.device, precision: str):
    """Autocast context for a resolved precision; fp32 runs without autocast."""
    dtype = _DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


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


def measure(device, workload: Workload, agreed: Callable = lambda value: value) -> PrecisionDecision:
    """Time the workload at each of the hardware's candidate precisions and keep the faster. Where several
    processes time steps that wait for each other (collectives), `agreed` turns each process's value of what
    decides which steps run (the candidates, whether to time another round) into one value for all (rank 0's): on
    their own hardware and clocks they would run different steps and wait for each other forever."""
    choice = agreed(hardware_choice(device))
    speeds = time_candidates(choice.candidates, workload, agreed)
    if speeds["bf16"] >= BF16_MARGIN * speeds["fp32"]:
        return PrecisionDecision("bf16", f"{choice.reason}; bf16 is the faster for this model and batch", speeds)
    return PrecisionDecision("fp32", f"{choice.reason}; bf16 is not {BF16_MARGIN - 1:.0%} faster than fp32 for this "
                                     "model and batch", speeds)


def remembered_decision(device, workload: Workload) -> PrecisionDecision | None:
    entry = remembered_entry(device, workload)
    if not entry:
        return None
    return PrecisionDecision(entry["precision"], entry["reason"], entry["samples_per_s"], remembered=True)


def remember(device, workload: Workload, decision: PrecisionDecision) -> None:
    remember_entry(device, workload, {"precision": decision.precision, "reason": decision.reason,
                                      "samples_per_s": decision.samples_per_s})


def decide_precision(requested: str, device, workload: Workload) -> PrecisionDecision:
    """The precision to run `workload` at, in one process: explicit, settled by the hardware, remembered, or
    measured now (and remembered)."""
    decision = decide_without_measuring(requested, device) or remembered_decision(device, workload)
    if decision is None:
        decision = measure(device, workload)
        remember(device, workload, decision)
    return decision


def training_workload(model, objective, batch_size: int, device, channels_last: bool) -> Workload:
    """Forward and backward passes of the objective's loss on a copy of the model, so that the measurement's
    gradients and batch-norm statistics never reach the run, on a random batch from a generator of its own, so
    that no random stream of the run moves."""
    batch = objective.example_batch(model, batch_size, torch.Generator().manual_seed(0))
    probe = []  # copied when a measurement needs it, once for every precision

    def make_step(precision: str):
        if not probe:
            probe.append(copy.deepcopy(model))

        def step():
            objective.loss(probe[0], batch, device, precision).backward()
            probe[0].zero_grad(set_to_none=True)
        return step
    identity = {"task": "train", "objective": type(objective).__name__, "model": repr(model.config),
                "batch_size": batch_size, "channels_last": channels_last}
    return Workload(make_step, batch_size, identity)


def choose_training_precision(requested: str, model, objective, batch_size: int, ctx,
                              channels_last: bool) -> PrecisionDecision:
    """`train.precision` for a training run, rank 0's decision for every rank: settled by its hardware, remembered,
    or a measurement of this model's own training step at this batch size. When rank 0 must measure, every rank
    measures alongside it, as the loss gathers features across ranks, and runs the steps rank 0 decides on: its
    candidates, its number of timing rounds."""
    decision = decided_on_main(lambda: decide_without_measuring(requested, ctx.device), ctx.is_main)
    if decision:
        return decision
    workload = training_workload(model, objective, batch_size, ctx.device, channels_last)
    decision = rank_0s(remembered_decision(ctx.device, workload))
    if decision is None:
        decision = rank_0s(measure(ctx.device, workload, agreed=rank_0s))
        if ctx.is_main:
            remember(ctx.device, workload, decision)
    return decision


def rank_0s(value):
    """Rank 0's `value`, on every rank."""
    return all_gather_object(value)[0]


def record_precision(resolved_config: dict, decision: PrecisionDecision) -> dict:
    """The run's configuration with `auto` replaced by what it became, so that the saved configuration (and every
    checkpoint's) reruns at the same precision."""
    return {**resolved_config, "train": {**resolved_config["train"], "precision": decision.precision}}


def inference_workload(model, device, batch_size: int, channels_last: bool) -> Workload:
    """Image-tower forward passes on random images, as the evaluation loops run them (no gradients; the model in
    the state the caller will use, e.g. after model.inference.prepare_for_inference)."""
    side = model.config.image_size
    images = torch.randn(batch_size, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    def make_step(precision: str):
        def step():
            with torch.no_grad(), autocast(device, precision):
                model.encode_image(images)
        return step
    identity = {"task": "inference", "model": repr(model.config), "batch_size": batch_size,
                "channels_last": channels_last}
    return Workload(make_step, batch_size, identity)


def choose_inference_precision(requested: str, model, device, batch_size: int,
                               channels_last: bool = True) -> PrecisionDecision:
    """`--precision` for inference: the hardware's choice, or a measurement of this model's image tower at the
    evaluation batch size where the hardware leaves it open."""
    return decide_precision(requested, device, inference_workload(model, device, batch_size, channels_last))
