"""The run's records on the main process: one JSON line per logged step and per evaluation (log.jsonl, on one step
axis), TensorBoard scalars when TensorBoard is installed, the same scalars in Weights & Biases when logging.wandb
names a project, and the end-of-run summary (summary.json)."""
import json
from pathlib import Path

from trainer.config import WandbConfig
from trainer.wandb_log import WandbLog
from utils.atomic_files import write_text_atomically
from utils.errors import UserError

LOG_FILE = "log.jsonl"
SUMMARY_FILE = "summary.json"


def read_log(run_dir) -> list[dict]:
    """The logged records; a last line that a full disk cut short is left out (the resumed run logs it again)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines[:-1]]
    try:
        return records + [json.loads(line) for line in lines[-1:]]
    except json.JSONDecodeError:
        return records


class RunLog:
    def __init__(self, run_dir, enabled: bool, resumed_step: int, wandb: WandbConfig, run_config: dict):
        """`run_config`: the resolved configuration, wandb's record of the run."""
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.tensorboard = self.wandb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._drop_records_after(resumed_step)
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(self.run_dir / "tensorboard", purge_step=resumed_step + 1)
        except ImportError:  # TensorBoard is optional: the JSONL log holds the same numbers
            pass
        if wandb.enabled:
            self.wandb = WandbLog(wandb, self.run_dir, run_config, resumed=resumed_step > 0)

    def _drop_records_after(self, step: int) -> None:
        """A run that stopped after its last checkpoint logged steps it will now redo: keep one record per step."""
        kept = [record for record in read_log(self.run_dir) if record["step"] <= step]
        write_text_atomically(self.run_dir / LOG_FILE, "".join(json.dumps(record) + "\n" for record in kept))

    def write(self, record: dict, group: str = "train") -> None:
        """Append `record` (its "step" and values); TensorBoard files the values under `group`/."""
        if not self.enabled:
            return
        try:
            with open(self.run_dir / LOG_FILE, "a") as file:
                file.write(json.dumps(record) + "\n")
        except OSError as error:
            raise UserError(f"cannot write {self.run_dir / LOG_FILE}: {error.strerror}") from None
        scalars = {f"{group}/{key}": value for key, value in record.items() if key != "step"}
        if self.tensorboard is not None:
            for key, value in scalars.items():
                self.tensorboard.add_scalar(key, value, record["step"])
        if self.wandb is not None:
            self.wandb.write(record["step"], scalars)

    def write_summary(self, summary: dict) -> None:
        if self.enabled:
            write_text_atomically(self.run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")

    def close(self, exit_code: int) -> None:
        """`exit_code`: the run's (wandb marks a run that did not end with 0 as failed)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.close(exit_code)
