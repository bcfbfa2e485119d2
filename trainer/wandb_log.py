"""Weights & Biases as a mirror of the run's TensorBoard scalars (logging.wandb; wandb is optional and only imported
here). Its files go under the run folder, and the run's id is kept there (wandb_run_id), so that a resumed run
continues the same wandb run and a fresh one starts a new one."""
from pathlib import Path

from trainer.config import WandbConfig
from utils.atomic_files import write_text_atomically
from utils.errors import UserError

RUN_ID_FILE = "wandb_run_id"
STEP = "step"  # the x-axis of every chart: the trainer's optimiser step, as in TensorBoard and log.jsonl


class WandbLog:
    def __init__(self, config: WandbConfig, run_dir: Path, resolved_config: dict, resumed: bool):
        import wandb
        id_file = run_dir / RUN_ID_FILE
        # a run that starts over at step 0 is a new wandb run: its steps would repeat the old run's
        run_id = id_file.read_text().strip() if resumed and id_file.is_file() else None
        try:
            self.run = wandb.init(project=config.project, entity=config.entity, mode=config.mode, dir=run_dir,
                                  id=run_id, resume="allow" if run_id else None, config=resolved_config)
        except wandb.Error as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise UserError(f"wandb could not start the run (logging.wandb): {reason}; logging.wandb.mode=offline "
                            "logs without a connection") from None
        write_text_atomically(id_file, self.run.id + "\n")
        # records are logged by their own step (not wandb's, which must increase): a step redone after a kill and
        # an evaluation at a logged step are kept, not dropped
        self.run.define_metric(STEP)
        self.run.define_metric("*", step_metric=STEP)

    def write(self, step: int, scalars: dict) -> None:
        self.run.log({STEP: step, **scalars})

    def close(self, exit_code: int) -> None:
        self.run.finish(exit_code=exit_code)
