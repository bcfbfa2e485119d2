"""SIGTERM (a scheduler preempting the job) and SIGINT (Ctrl-C) ask the loop to save and stop at its next logging
step (train.log_every_steps) instead of dying mid-step. The ranks agree there, where the loop reads the device for
the log anyway, so the steps between wait on nothing; the delay is a few steps, well inside the 30 s or so a
scheduler leaves between SIGTERM and SIGKILL at the default of 10."""
import signal

from utils.distributed import all_gather_object


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

    def agreed(self) -> bool:
        """True on every rank once any rank received a signal, which every rank then names: all ranks stop at the
        same step. A collective: call it at the same steps on every rank, logging steps only."""
        received = [name for name in all_gather_object(self.signal_name) if name]
        self.signal_name = self.signal_name or next(iter(received), None)
        return bool(received)

    @property
    def exit_code(self) -> int:
        # 128 + signal number, the shell's convention: "interrupted", which here also means "resumable"
        return 128 + signal.Signals[self.signal_name].value
