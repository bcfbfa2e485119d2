"""`train.precision: auto` for a training run: the hardware's choice or, where it leaves the choice open, a
measurement of this model's own training step at this batch size (utils.precision_calibration), the same on
every rank."""
import copy

import torch

from utils.distributed import all_gather_object, decided_on_main
from utils.precision_calibration import (PrecisionDecision, Workload, decide_without_measuring, measure, remember,
                                         remembered_decision)


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
    """Rank 0's decision, for every rank: settled by its hardware, remembered, or measured. When rank 0 must
    measure, every rank measures alongside it, as the loss gathers features across ranks, and runs the steps rank 0
    decides on: its candidates, its number of timing rounds."""
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
