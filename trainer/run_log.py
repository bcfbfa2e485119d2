"""The run's records on the main process: one JSON line per logged step and per evaluation (log.jsonl, on one step
axis), TensorBoard scalars when TensorBoard is installed, and the end-of-run summary (summary.json)."""
import json
from pathlib import Path

LOG_FILE = "log.jsonl"
SUMMARY_FILE = "summary.json"


def read_log(run_dir) -> list[dict]:
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class RunLog:
    def __init__(self, run_dir, enabled: bool, resumed_step: int):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.tensorboard = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._drop_records_after(resumed_step)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(self.run_dir / "tensorboard", purge_step=resumed_step + 1)
        except ImportError:  # TensorBoard is optional: the JSONL log holds the same numbers
            pass

    def _drop_records_after(self, step: int) -> None:
        """A run that stopped after its last checkpoint logged steps it will now redo: keep one record per step."""
        kept = [record for record in read_log(self.run_dir) if record["step"] <= step]
        (self.run_dir / LOG_FILE).write_text("".join(json.dumps(record) + "\n" for record in kept))

    def write(self, record: dict, group: str = "train") -> None:
        """Append `record` (its "step" and values); TensorBoard files the values under `group`/."""
        if not self.enabled:
            return
        with open(self.run_dir / LOG_FILE, "a") as file:
            file.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step":
                    self.tensorboard.add_scalar(f"{group}/{key}", value, record["step"])

    def write_summary(self, summary: dict) -> None:
        if self.enabled:
            (self.run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
