"""The training loop: set-up, loop, step, log, checkpoint. Everything else is a call to a named function."""
import contextlib
import time
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from trainer.checkpointing import (TrainState, checkpoint_path, find_resume_checkpoint, load_training_checkpoint,
                                   remove_torn_writes, rng_state, save_training_checkpoint,
                                   set_aside_checkpoints_after)
from trainer.config import TrainerConfig
from trainer.curves import plot_training_curves
from trainer.distributed import all_gather_object, on_main_for_all
from trainer.metrics import MetricWindow
from trainer.optim import build_optimizer, optimizer_step, set_learning_rate
from trainer.precision_choice import choose_training_precision, record_precision
from trainer.preemption import StopRequest
from trainer.resume_compatibility import ResumeRules
from trainer.run_log import RunLog, read_log
from trainer.schedule import learning_rate
from utils.atomic_files import write_text_atomically
from utils.errors import UserError


def train(config: TrainerConfig, model, loader, objective, ctx, resolved_config: dict,
          resume: str | None = None) -> int:
    """Train `model` on `loader` batches to minimise `objective` (trainer.objectives); returns the process exit
    code (0, or 128 + the signal's number when SIGTERM or Ctrl-C stopped it: resumable)."""
    say = print if ctx.is_main else (lambda *args: None)
    run_dir, loop = Path(config.output_dir), config.train
    model.to(ctx.device).train()
    if loop.channels_last:
        model.to(memory_format=torch.channels_last)
    decision = choose_training_precision(loop.precision, model, objective, loop.batch_size, ctx, loop.channels_last)
    precision = decision.precision
    say(f"precision: {decision.describe()}")
    resolved_config = record_precision(resolved_config, decision)
    if loop.compile:
        model.compile()  # in place: parameter names, checkpoints and DDP wrapping stay as they are
    optimizer = build_optimizer(model, config.optimizer)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=precision == "fp16")
    state, last_checkpoint = TrainState(), find_resume_checkpoint(resume, run_dir, say)
    if last_checkpoint:
        rules = ResumeRules(resolved_config, ctx.world_size, loader.order_depends_on_workers,
                            config.checkpoint.resume_allow_changes)
        state = load_training_checkpoint(last_checkpoint, model, optimizer, scaler, ctx.rank, ctx.world_size, rules)
        say(f"resumed from {last_checkpoint} at step {state.step}")
    elif resume == "auto":
        say(f"no checkpoint in {run_dir / 'checkpoints'}: starting a fresh run")
    ddp_model = DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None) \
        if ctx.world_size > 1 else model
    steps_per_epoch = len(loader) // loop.grad_accum_steps
    if steps_per_epoch == 0:
        raise UserError(f"the dataset gives {len(loader)} batches per process, fewer than train.grad_accum_steps="
                        f"{loop.grad_accum_steps}: lower train.batch_size or train.grad_accum_steps")
    total_steps = loop.epochs * steps_per_epoch
    warmup_steps = round(config.schedule.warmup_fraction * total_steps)
    samples_per_step = loop.batch_size * ctx.world_size * loop.grad_accum_steps
    say(f"{total_steps} steps ({loop.epochs} epochs x {steps_per_epoch}), global batch {samples_per_step}, "
        f"{warmup_steps} warmup steps; run folder {run_dir}")
    log = RunLog(run_dir, ctx.is_main, state.step)
    if ctx.is_main:
        remove_torn_writes(run_dir)
        for moved in set_aside_checkpoints_after(run_dir, state.step):
            say(f"moved {moved.name}, newer than step {state.step}, to {moved.parent}: this run writes its step anew")
        write_text_atomically(run_dir / "config.yaml", f"# train.precision: {decision.describe()}\n"
                              + yaml.safe_dump(resolved_config, sort_keys=False))
    window, record = MetricWindow(ctx.device, ctx.world_size), {}
    started = time.perf_counter()

    def save_checkpoint():
        rng_states = all_gather_object(rng_state())
        position = dict(zip(("epoch", "batch_in_epoch"), data_position(state.step, steps_per_epoch, loop)))
        on_main_for_all(lambda: save_training_checkpoint(run_dir, model, optimizer, scaler, state, position,
                                                         resolved_config, rng_states, record,
                                                         config.checkpoint.keep_last), ctx.is_main)
        return checkpoint_path(run_dir, state.step)

    with StopRequest() as stop, tqdm(total=total_steps, initial=state.step, disable=not ctx.is_main, unit="step",
                                     dynamic_ncols=True) as progress:
        while state.step < total_steps:
            epoch, first_batch = data_position(state.step, steps_per_epoch, loop)
            for micro_batches in groups_of(loader.epoch(epoch, first_batch), loop.grad_accum_steps):
                lr = learning_rate(state.step, total_steps, config.optimizer.lr, warmup_steps)
                set_learning_rate(optimizer, lr)
                loss, skipped = accumulate_gradients(ddp_model, micro_batches, objective, scaler, ctx.device,
                                                     precision)
                optimizer_step(model, optimizer, scaler, config.optimizer.grad_clip_norm)
                objective.after_step(model)
                state.step += 1
                window.add(loss, skipped, samples_per_step)
                progress.update()
                stopping = stop.agreed(ctx.world_size, ctx.device)
                saving = stopping or state.step % config.checkpoint.every_steps == 0 or state.step == total_steps
                if saving or state.step % loop.log_every_steps == 0:
                    metrics = window.flush(state.step, last_checkpoint)  # raises on a NaN/inf loss: nothing saved
                    state.skipped_images += metrics.pop("skipped")
                    extra = objective.logged_values(model)
                    record = {"step": state.step, "epoch": epoch, **metrics, "lr": lr, **extra}
                    log.write(record)
                    progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}",
                                         **{key: f"{value:.1f}" for key, value in extra.items()},
                                         sps=f"{metrics['samples_per_s']:.0f}")
                if saving:
                    last_checkpoint = save_checkpoint()
                    window.restart_clock()
                if stopping:
                    progress.close()  # before the message: the bar would overwrite it
                    say(f"{stop.signal_name}: saved {last_checkpoint} at step {state.step}; continue with --resume auto")
                    return stop.exit_code
                if state.step % steps_per_epoch == 0:
                    break
    summary = {"steps": state.step, "epochs": loop.epochs, "samples_seen": state.step * samples_per_step,
               "final_loss": record.get("loss"),
               **{f"final_{key}": value for key, value in objective.logged_values(model).items()},
               "skipped_images": len(loader.skipped_at_start) + state.skipped_images,
               "missing_images": list(loader.skipped_at_start), "precision": precision,
               "precision_samples_per_s": decision.samples_per_s,
               "wall_time_s_this_session": round(time.perf_counter() - started, 1),
               "checkpoint": str(last_checkpoint)}
    log.write_summary(summary)
    log.close()
    if ctx.is_main:
        plot_training_curves(read_log(run_dir), run_dir / "training_curves.png", objective.loss_name,
                             title=str(run_dir))
        say(f"done: {state.step} steps, final loss {summary['final_loss']}, {summary['skipped_images']} images "
            f"skipped; checkpoint {last_checkpoint}, curves {run_dir / 'training_curves.png'}")
    return 0


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
    """Forward and backward over the micro-batches of one step; gradients are averaged over them and (by DDP)
    synchronised across ranks on the last one only. Returns the step's loss and its skipped images (on device)."""
    total_loss, skipped = 0.0, 0
    for index, batch in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        no_sync = ddp_model.no_sync() if isinstance(ddp_model, DistributedDataParallel) and not last \
            else contextlib.nullcontext()
        with no_sync:
            loss = objective.loss(ddp_model, batch, device, precision) / len(micro_batches)
            scaler.scale(loss).backward()
        total_loss = total_loss + loss.detach()
        skipped = skipped + batch["skipped"]
    return total_loss, torch.as_tensor(skipped)
