"""SIGTERM (a scheduler preempting the job) and SIGINT (Ctrl-C) ask the loop to save and stop at the next step
boundary instead of dying mid-step."""
import signal

import torch

from trainer.distributed import all_reduce_mean


class StopRequest:
    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def agreed(self, world_size: int, device) -> bool:
        """True on every rank once any rank received a signal: all ranks must stop at the same step."""
        if world_size == 1:
            return self.signal_name is not None
        flag = torch.tensor(float(self.signal_name is not None), device=device)
        return all_reduce_mean(flag).item() > 0

    @property
    def exit_code(self) -> int:
        # 128 + signal number, the shell's convention: "interrupted", which here also means "resumable"
        return 128 + signal.Signals[self.signal_name].value
