"""A checkpoint's GPU random generator belongs to its rank's device: a run saved where a process saw 8 GPUs resumes
where each process sees one (one GPU per task under SLURM). Checked on the CPU with torch's own torch.cuda.random
code running over CPU generators that stand in for the visible GPUs."""
import torch
import torch.cuda.random as cuda_random

from trainer.checkpointing import restore_rng_state, rng_state


def see_gpus(monkeypatch, count: int, current: int) -> tuple[torch.Generator, ...]:
    """Make torch.cuda see `count` GPUs, `current` the process's own; returns their generators."""
    generators = tuple(torch.Generator().manual_seed(100 + index) for index in range(count))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "default_generators", generators)
    monkeypatch.setattr(cuda_random, "device_count", lambda: count)
    monkeypatch.setattr(cuda_random, "current_device", lambda: current)
    monkeypatch.setattr(cuda_random, "is_initialized", lambda: True)
    monkeypatch.setattr(cuda_random, "_lazy_init", lambda: None)
    monkeypatch.setattr(cuda_random, "_lazy_call", lambda callback: callback())
    return generators


def test_saved_with_eight_visible_gpus_resumes_with_one(monkeypatch):
    saved_on = see_gpus(monkeypatch, count=8, current=3)  # local rank 3 of a node whose tasks see every GPU
    saved_on[3].manual_seed(1234)
    expected = torch.randn(4, generator=saved_on[3])
    saved_on[3].manual_seed(1234)
    state = rng_state()

    (resumed_on,) = see_gpus(monkeypatch, count=1, current=0)  # the same rank, now alone with its GPU
    restore_rng_state(state)
    assert torch.equal(torch.randn(4, generator=resumed_on), expected)  # its own stream continues, nobody else's
