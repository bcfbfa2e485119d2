"""The training loop: set-up, loop, step, log, evaluate, checkpoint. Everything else is a call to a named function."""
import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Iterator, Protocol

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from trainer.checkpointing import (TrainState, checkpoint_path, find_resume_checkpoint, load_training_checkpoint,
                                   remove_torn_writes, restore_rng_state, rng_state, save_training_checkpoint,
                                   set_aside_checkpoints_after)
from trainer.config import TrainerConfig
from trainer.curves import plot_training_curves
from trainer.metrics import MetricWindow
from trainer.optim import build_optimizer, optimizer_step, set_learning_rate
from trainer.preemption import StopRequest
from trainer.resume_compatibility import ResumeRules
from trainer.run_log import RunLog, read_log
from trainer.schedule import learning_rate
from utils.atomic_files import write_text_atomically
from utils.distributed import (DistributedContext, all_gather_object, decided_on_main, on_every_rank_for_all,
                               on_main_for_all)
from utils.errors import UserError
from utils.precision import PrecisionDecision, choose_training_precision, record_precision
from utils.seeding import choose_cuda_kernels


class TrainBatches(Protocol):
    """What the trainer expects of a loader (dataloader.train.train_loader.TrainLoader is one)."""
    skipped_at_start: list[str]  # images left out before training (e.g. missing files), counted in the summary
    order_depends_on_workers: bool  # whether data.num_workers shapes the batches (then resume refuses a change)

    def __len__(self) -> int:
        """Batches per epoch on this process."""

    def epoch(self, epoch: int, first_batch: int = 0) -> Iterator[dict]:
        """Batches first_batch.. of `epoch`, each a dict the objective reads plus "skipped" (an int: images replaced
        in it); the same (epoch, batch index) gives the same batch in every run, so a resumed run sees the same data."""


class Objective(Protocol):
    """What a step minimises (trainer.objectives)."""
    loss_name: str

    def loss(self, model, batch: dict, device, precision: str) -> torch.Tensor: ...

    def accumulate_gradients(self, model, micro_batches: list[dict], scaler, device, precision: str) -> torch.Tensor:
        """Back-propagates the step's micro-batches (trainer.accumulation); returns the step's loss."""

    def after_step(self, model) -> None: ...

    def logged_values(self, model) -> dict: ...

    def example_batch(self, model, batch_size: int, generator: torch.Generator) -> dict:
        """A random batch of the loader's shapes, for timing the step (utils.precision)."""


class Evaluator(Protocol):
    """Scores the model during training (evaluation.during_training.TrainingEvaluator is one)."""

    def due(self, step: int, steps_per_epoch: int, total_steps: int) -> bool: ...

    def __call__(self, model, step: int, precision: str) -> dict[str, float]: ...


@dataclasses.dataclass
class TrainingJob:
    """Everything a run needs besides the processes it runs on."""
    config: TrainerConfig
    model: torch.nn.Module
    loader: TrainBatches
    objective: Objective
    resolved_config: dict  # saved in the run folder and every checkpoint, with train.precision as resolved
    evaluator: Evaluator | None = None


@dataclasses.dataclass
class Session:
    """A run once set up: its model, optimiser, position and records."""
    job: TrainingJob
    ctx: DistributedContext
    ddp_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    precision_decision: PrecisionDecision
    state: TrainState
    last_checkpoint: Path | None
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    log: RunLog
    window: MetricWindow
    started: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def precision(self) -> str:
        return self.precision_decision.precision

    @property
    def samples_per_step(self) -> int:
        loop = self.job.config.train
        return loop.batch_size * self.ctx.world_size * loop.grad_accum_steps

    def say(self, *args) -> None:
        if self.ctx.is_main:
            print(*args)


def train(job: TrainingJob, ctx: DistributedContext, resume: str | None = None) -> int:
    """Train `job.model` on `job.loader` batches to minimise `job.objective`; returns the process exit code (0,
    or 128 + the signal's number after SIGTERM/Ctrl-C, which saves a checkpoint first: interrupted, resumable)."""
    session = set_up(job, ctx, resume)
    exit_code = 1  # the run's records close with this one if the loop raises
    try:
        exit_code = run_loop(session)
        if exit_code == 0:
            finish(session)
    finally:
        session.log.close(exit_code)
    return exit_code


def set_up(job: TrainingJob, ctx: DistributedContext, resume: str | None) -> Session:
    config, model, loop = job.config, job.model, job.config.train
    run_dir = Path(config.output_dir)
    if ctx.device.type == "cuda":
        choose_cuda_kernels(loop.deterministic)
    model.to(ctx.device).train()
    if loop.channels_last:
        model.to(memory_format=torch.channels_last)
    decision = choose_training_precision(loop.precision, model, job.objective, loop.batch_size, ctx,
                                         loop.channels_last)
    job.resolved_config = record_precision(job.resolved_config, decision)
    if loop.compile:
        model.compile()  # in place: parameter names, checkpoints and DDP wrapping stay as they are
    optimizer = build_optimizer(model, config.optimizer)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=decision.precision == "fp16")
    # rank 0 alone chooses the checkpoint; every rank loads that one, or all stop (node-local run folders)
    state, last_checkpoint = TrainState(), decided_on_main(lambda: find_resume_checkpoint(resume, run_dir),
                                                           ctx.is_main)
    if last_checkpoint:
        rules = ResumeRules(job.resolved_config, ctx.world_size, job.loader.order_depends_on_workers,
                            config.checkpoint.resume_allow_changes)
        state = on_every_rank_for_all(lambda: load_training_checkpoint(last_checkpoint, model, optimizer, scaler,
                                                                       ctx.rank, ctx.world_size, rules))
    # gradient_as_bucket_view: gradients live in DDP's communication buckets, saving a copy per step
    ddp_model = DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
                                        gradient_as_bucket_view=True) if ctx.world_size > 1 else model
    steps_per_epoch = len(job.loader) // loop.grad_accum_steps
    if steps_per_epoch == 0:
        raise UserError(f"the dataset gives {len(job.loader)} batches per process, fewer than "
                        f"train.grad_accum_steps={loop.grad_accum_steps}: lower train.batch_size or "
                        f"train.grad_accum_steps")
    total_steps = loop.epochs * steps_per_epoch
    session = Session(job, ctx, ddp_model, optimizer, scaler, decision, state, last_checkpoint, steps_per_epoch,
                      total_steps, round(config.schedule.warmup_fraction * total_steps),
                      RunLog(run_dir, ctx.is_main, state.step, config.logging.wandb, job.resolved_config),
                      MetricWindow(ctx.device, ctx.world_size))
    session.say(f"precision: {decision.describe()}")
    if last_checkpoint:
        session.say(f"resumed from {last_checkpoint} at step {state.step}")
    elif resume == "auto":
        session.say(f"no checkpoint in {run_dir / 'checkpoints'}: starting a fresh run")
    session.say(f"{total_steps} steps ({loop.epochs} epochs x {steps_per_epoch}), global batch "
                f"{session.samples_per_step}, {session.warmup_steps} warmup steps; run folder {run_dir}")
    if ctx.is_main:
        remove_torn_writes(run_dir)
        for moved in set_aside_checkpoints_after(run_dir, state.step):
            session.say(f"moved {moved.name}, newer than step {state.step}, to {moved.parent}: this run writes its "
                        "step anew")
        write_text_atomically(run_dir / "config.yaml", f"# train.precision: {decision.describe()}\n"
                              + yaml.safe_dump(job.resolved_config, sort_keys=False))
    return session


def run_loop(session: Session) -> int:
    """Steps until the last one, or until a stop request (SIGTERM/Ctrl-C), honoured at the next logging step: then a
    checkpoint and its exit code."""
    job, state, loop = session.job, session.state, session.job.config.train
    if state.step == 0 or state.evaluation_pending:  # at the start, or the one a stop left for this run
        evaluate_if_due(session)
        state.evaluation_pending = False
    with StopRequest() as stop, tqdm(total=session.total_steps, initial=state.step, disable=not session.ctx.is_main,
                                     unit="step", dynamic_ncols=True) as progress:
        while state.step < session.total_steps:
            epoch, first_batch = data_position(state.step, session.steps_per_epoch, loop)
            for micro_batches in groups_of(job.loader.epoch(epoch, first_batch), loop.grad_accum_steps):
                lr = train_step(session, micro_batches)
                progress.update()
                saving = state.step % job.config.checkpoint.every_steps == 0 or state.step == session.total_steps
                logging_step = saving or state.step % loop.log_every_steps == 0
                # ranks agree on a stop at logging steps only, which read the device anyway: other steps read nothing
                stopping = logging_step and stop.agreed()
                if logging_step:
                    log_training(session, epoch, lr, progress)
                if stopping:  # stop within the scheduler's grace period; the resumed run scores these weights
                    state.evaluation_pending = evaluation_due(session)
                else:
                    evaluate_if_due(session)
                if saving or stopping:
                    save_checkpoint(session)
                if stopping:
                    progress.close()  # before the message: the bar would overwrite it
                    session.say(f"{stop.signal_name}: saved {session.last_checkpoint} at step {state.step}; "
                                f"continue with --resume auto")
                    return stop.exit_code
                if state.step % session.steps_per_epoch == 0:
                    break
    return 0


def train_step(session: Session, micro_batches: list[dict]) -> float:
    """One optimiser step at the scheduled learning rate; returns that rate."""
    job, state = session.job, session.state
    lr = learning_rate(state.step, session.total_steps, job.config.optimizer.lr, session.warmup_steps)
    set_learning_rate(session.optimizer, lr)
    loss, skipped = accumulate_gradients(session.ddp_model, micro_batches, job.objective, session.scaler,
                                         session.ctx.device, session.precision)
    optimizer_step(job.model, session.optimizer, session.scaler, job.config.optimizer.grad_clip_norm)
    job.objective.after_step(job.model)
    state.step += 1
    session.window.add(loss, skipped, session.samples_per_step)
    return lr


def log_training(session: Session, epoch: int, lr: float, progress) -> None:
    metrics = session.window.flush(session.state.step, session.last_checkpoint)  # raises on NaN/inf: nothing saved
    session.state.skipped_images += metrics.pop("skipped")
    extra = session.job.objective.logged_values(session.job.model)
    record = session.state.record = {"step": session.state.step, "epoch": epoch, **metrics, "lr": lr, **extra}
    session.log.write(record)
    progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}",
                         **{key: f"{value:.1f}" for key, value in extra.items()},
                         sps=f"{metrics['samples_per_s']:.0f}")


def evaluation_due(session: Session) -> bool:
    evaluator = session.job.evaluator
    return evaluator is not None and evaluator.due(session.state.step, session.steps_per_epoch, session.total_steps)


def evaluate_if_due(session: Session) -> None:
    if not evaluation_due(session):
        return
    step = session.state.step
    with session.window.paused(), evaluation_mode(session.job.model):
        metrics = session.job.evaluator(session.job.model, step, session.precision)
    session.state.evaluation = {"step": step, **metrics}
    session.log.write(session.state.evaluation, group="eval")
    session.say(f"step {step}: " + ", ".join(f"{key} {value:.4g}" for key, value in metrics.items()))


@contextlib.contextmanager
def evaluation_mode(model):
    """Evaluation leaves the training trajectory as it was: eval mode (batch norms use and keep their running
    statistics), no gradients, every random generator restored (a DataLoader draws its base seed from torch's),
    then train mode again."""
    generators = rng_state()
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train()
        restore_rng_state(generators)


def save_checkpoint(session: Session) -> None:
    job, state, loop = session.job, session.state, session.job.config.train
    with session.window.paused():
        rng_states = all_gather_object(rng_state())
        position = dict(zip(("epoch", "batch_in_epoch"), data_position(state.step, session.steps_per_epoch, loop)))
        on_main_for_all(lambda: save_training_checkpoint(job.config.output_dir, job.model, session.optimizer,
                                                         session.scaler, state, position, job.resolved_config,
                                                         rng_states, job.config.checkpoint.keep_last),
                        session.ctx.is_main)
    session.last_checkpoint = checkpoint_path(job.config.output_dir, state.step)


def finish(session: Session) -> None:
    """summary.json, training_curves.png and the closing line."""
    job, state = session.job, session.state
    run_dir = Path(job.config.output_dir)
    summary = {"steps": state.step, "epochs": job.config.train.epochs,
               "samples_seen": state.step * session.samples_per_step, "final_loss": state.record.get("loss"),
               **{f"final_{key}": value for key, value in job.objective.logged_values(job.model).items()},
               "skipped_images": len(job.loader.skipped_at_start) + state.skipped_images,
               "missing_images": list(job.loader.skipped_at_start), "precision": session.precision,
               "precision_samples_per_s": session.precision_decision.samples_per_s,
               "wall_time_s_this_session": round(time.perf_counter() - session.started, 1),
               "checkpoint": str(session.last_checkpoint)}
    if state.evaluation:
        summary["final_eval"] = state.evaluation
    session.log.write_summary(summary)
    if session.ctx.is_main:
        plot_training_curves(read_log(run_dir), run_dir / "training_curves.png", job.objective.loss_name,
                             title=str(run_dir))
        session.say(f"done: {state.step} steps, final loss {summary['final_loss']}, {summary['skipped_images']} "
                    f"images skipped; checkpoint {session.last_checkpoint}, curves {run_dir / 'training_curves.png'}")


def data_position(step: int, steps_per_epoch: int, loop) -> tuple[int, int]:
    """(epoch, index of the next batch in it) after `step` optimiser steps."""
    epoch, step_in_epoch = divmod(step, steps_per_epoch)
    return epoch, step_in_epoch * loop.grad_accum_steps


def groups_of(batches, size: int):
    """Consecutive groups of `size` batches, one group per optimiser step; a short last group is dropped."""
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []


def accumulate_gradients(ddp_model, micro_batches, objective, scaler, device, precision):
    """Forward and backward over the micro-batches of one step (how they combine is the objective's:
    trainer.accumulation); DDP synchronises gradients on the last one only. Returns the step's loss (on the
    device) and its skipped images."""
    loss = objective.accumulate_gradients(ddp_model, micro_batches, scaler, device, precision)
    return loss, sum(batch["skipped"] for batch in micro_batches)
