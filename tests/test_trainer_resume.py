"""Exact resume through `python train.py`: after SIGKILL and SIGTERM the final weights are bit-identical to an
uninterrupted run; SIGTERM exits as interrupted (143) without the end-of-run evaluation, and an evaluation that a
stop left undone is done on resume; a kill inside a checkpoint write leaves the previous checkpoint loadable; the
run's records."""
import json
import math
import signal
import sys

import pytest
import torch

from trainer.checkpointing import find_resume_checkpoint, list_checkpoints
from trainer.run_log import read_log
from trainer.schedule import learning_rate
from training_runs import (TOTAL_STEPS, BATCH, assert_bit_identical, final_weights, run, run_in_process,
                           shapes_task, sigterm_during_step, start, train_command, wait_for)
from utils.checkpoint import load_checkpoint


def test_uninterrupted_run_writes_its_records(uninterrupted_run):
    summary = json.loads((uninterrupted_run / "summary.json").read_text())
    assert summary["steps"] == TOTAL_STEPS and summary["skipped_images"] == 0
    assert (uninterrupted_run / "training_curves.png").stat().st_size > 10_000
    assert "optimizer" in (uninterrupted_run / "config.yaml").read_text()
    payload = torch.load(list_checkpoints(uninterrupted_run)[-1], weights_only=True)
    assert payload["step"] == TOTAL_STEPS and payload["config"]["train"]["batch_size"] == BATCH
    assert {"model", "model_config", "optimizer", "scaler", "rng", "epoch", "batch_in_epoch"} <= payload.keys()
    assert len(list_checkpoints(uninterrupted_run)) == 2  # keep_last


def test_learning_rate_follows_warmup_then_cosine(uninterrupted_run):
    records = read_log(uninterrupted_run)
    assert [record["step"] for record in records] == list(range(1, TOTAL_STEPS + 1))
    lrs = [record["lr"] for record in records]  # the rate used by each step
    warmup = round(0.25 * TOTAL_STEPS)
    base_lr = 5e-4
    for index, lr in enumerate(lrs):
        if index < warmup:
            expected = base_lr * (index + 1) / warmup
        else:
            expected = base_lr * 0.5 * (1 + math.cos(math.pi * (index - warmup) / (TOTAL_STEPS - warmup)))
        assert lr == pytest.approx(expected, rel=1e-9)
    assert lrs == [learning_rate(step, TOTAL_STEPS, base_lr, warmup) for step in range(TOTAL_STEPS)]
    assert max(lrs) == pytest.approx(base_lr) and lrs[-1] < 0.05 * base_lr
    assert all(record["logit_scale"] <= 100 for record in records)


def test_resume_after_sigkill_is_bit_identical(coco_dataset, uninterrupted_run, tmp_path):
    process = start(train_command(coco_dataset, tmp_path))
    wait_for(lambda: list_checkpoints(tmp_path), process)
    process.kill()
    process.wait()
    interrupted_at = load_checkpoint(list_checkpoints(tmp_path)[-1])
    assert 0 < interrupted_at["step"] < TOTAL_STEPS and not (tmp_path / "summary.json").exists()
    resumed = run(train_command(coco_dataset, tmp_path, "--resume", "auto"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {list_checkpoints(tmp_path)[0].parent}" in resumed.stdout
    assert_bit_identical(final_weights(tmp_path), final_weights(uninterrupted_run))
    assert [record["step"] for record in read_log(tmp_path)] == list(range(1, TOTAL_STEPS + 1))


def test_sigterm_saves_exits_as_interrupted_without_final_evaluation_and_resumes(coco_dataset, uninterrupted_run,
                                                                                   shapes_task, tmp_path):
    run_dir = tmp_path / "run"
    process = start(train_command(coco_dataset, run_dir, shapes_task))
    wait_for(lambda: list_checkpoints(run_dir), process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    saved = list_checkpoints(run_dir)[-1]
    assert f"SIGTERM: saved {saved}" in stdout and "continue with --resume auto" in stdout
    assert not any("shapes/top1" in record for record in read_log(run_dir))
    assert not (run_dir / "summary.json").exists()
    assert load_checkpoint(saved)["step"] < TOTAL_STEPS
    resumed = run(train_command(coco_dataset, run_dir, "--resume", "auto"))
    assert resumed.returncode == 0, resumed.stderr
    assert_bit_identical(final_weights(run_dir), final_weights(uninterrupted_run))


EVALUATED_EVERY = 4  # evaluations due at steps 4, 8 and 12, the last


@pytest.fixture(scope="module")
def evaluated_run(coco_dataset, shapes_task, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("evaluated")
    assert run_in_process(train_command(coco_dataset, run_dir, shapes_task, f"eval.every_steps={EVALUATED_EVERY}")) == 0
    return run_dir


def evaluations(run_dir) -> list[dict]:
    return [record for record in read_log(run_dir) if "shapes/top1" in record]


def final_records(run_dir) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {key: summary.get(key) for key in ("steps", "final_loss", "final_eval")}


@pytest.mark.parametrize("stop_step", [2 * EVALUATED_EVERY, TOTAL_STEPS])
def test_an_evaluation_a_stop_left_undone_is_done_on_resume(coco_dataset, evaluated_run, shapes_task, tmp_path,
                                                             monkeypatch, stop_step):
    command = train_command(coco_dataset, tmp_path, shapes_task, f"eval.every_steps={EVALUATED_EVERY}", "--resume",
                            "auto")
    with monkeypatch.context() as patch:
        sigterm_during_step(patch, stop_step)
        assert run_in_process(command) == 128 + signal.SIGTERM
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] == stop_step
    # stopped before scoring the stop's step
    assert [record["step"] for record in evaluations(tmp_path)] == list(range(EVALUATED_EVERY, stop_step,
                                                                              EVALUATED_EVERY))
    assert run_in_process(command) == 0
    assert evaluations(tmp_path) == evaluations(evaluated_run)  # the stop's step scored too, on the same weights
    final = final_records(tmp_path)
    assert final == final_records(evaluated_run) and final["final_eval"]["step"] == TOTAL_STEPS and final["final_loss"]


# Runs train.py with torch.save stalled inside its second checkpoint write, after part of the file is written.
STALL_IN_SECOND_CHECKPOINT_WRITE = """
import sys, time, torch
real_save, calls = torch.save, []
def stalled_save(payload, file, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        file.write(b"PK partial checkpoint"); file.flush(); time.sleep(600)
    real_save(payload, file, *args, **kwargs)
torch.save = stalled_save
import train
sys.exit(train.main(sys.argv[1:]))
"""


def test_kill_inside_checkpoint_write_leaves_previous_checkpoint(coco_dataset, tmp_path):
    command = train_command(coco_dataset, tmp_path)
    process = start([sys.executable, "-c", STALL_IN_SECOND_CHECKPOINT_WRITE, *command[2:]])
    checkpoints = tmp_path / "checkpoints"
    wait_for(lambda: list_checkpoints(tmp_path) and list(checkpoints.glob(".step_*.tmp")), process)
    process.kill()
    process.wait()
    (previous,) = list_checkpoints(tmp_path)  # the torn temporary file is not taken for a checkpoint
    assert load_checkpoint(previous)["step"] == 2
    assert find_resume_checkpoint("auto", tmp_path) == previous
