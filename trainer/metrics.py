"""Step metrics kept on the device (losses) or the host (counts) between logging steps, so the loop never waits
on the device, nor copies to it, just to log."""
import contextlib
import math
import time

import torch

from utils.distributed import all_reduce_sum
from utils.errors import UserError


class MetricWindow:
    """Sums of the losses and skipped images since the last flush; read (one host sync) only when flushed."""

    def __init__(self, device, world_size: int):
        self.device, self.world_size = device, world_size
        self._reset()

    def _reset(self):
        self.loss_sum = torch.zeros((), device=self.device)
        self.skipped = 0
        self.steps = 0
        self.samples = 0
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def paused(self):
        """Time inside (a checkpoint write, an evaluation) is not training: samples/s leaves it out, while the
        samples of the steps before it still count."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.started += time.perf_counter() - began

    def add(self, loss: torch.Tensor, skipped: int, samples: int) -> None:
        self.loss_sum += loss.detach().float()
        self.skipped += skipped
        self.steps += 1
        self.samples += samples

    def flush(self, step: int, last_good_checkpoint) -> dict:
        """Mean loss over the window and all ranks, skipped images over all ranks, samples/s; raises if any loss
        since the last flush was NaN/inf (a NaN anywhere in the window makes the sum NaN)."""
        # one collective for both: summed over ranks (a no-op in a single process)
        counts = torch.stack([self.loss_sum, torch.tensor(float(self.skipped), device=self.device)])
        loss_total, skipped = all_reduce_sum(counts).tolist()
        loss_sum = loss_total / self.world_size
        if not math.isfinite(loss_sum):
            where = f"the last good checkpoint is {last_good_checkpoint}" if last_good_checkpoint \
                else "no checkpoint was written yet"
            steps = f"step {step}" if self.steps == 1 else f"steps {step - self.steps + 1}-{step}"
            raise UserError(f"training diverged: the loss became NaN/inf at {steps}; nothing was saved after it "
                            f"({where}). Lower optimizer.lr, set optimizer.grad_clip_norm, or use train.precision=fp32")
        elapsed = time.perf_counter() - self.started
        metrics = {"loss": loss_sum / max(self.steps, 1), "samples_per_s": self.samples / max(elapsed, 1e-9),
                   "skipped": round(skipped)}
        self._reset()
        return metrics
