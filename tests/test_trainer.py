"""Training end to end through `python train.py` on a tiny CLIP and a tiny COCO-format dataset written here:
exact resume after SIGKILL and SIGTERM, checkpoints that survive a kill mid-write, the schedule, the logit-scale
cap, skipped images, and config errors."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dataloader.synthetic import SyntheticDataConfig, write_train_set
from model import build_model, model_config_by_name
from trainer.checkpointing import list_checkpoints
from trainer.config import OptimizerConfig
from trainer.optim import MAX_LOGIT_SCALE, build_optimizer, optimizer_step
from trainer.run_log import read_log
from trainer.schedule import learning_rate
from utils.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
BATCH, IMAGES, EPOCHS = 8, 48, 2  # 6 steps per epoch, 12 in all
TOTAL_STEPS = EPOCHS * IMAGES // BATCH


@pytest.fixture(scope="module")
def coco_dataset(tmp_path_factory):
    config = SyntheticDataConfig(root=str(tmp_path_factory.mktemp("coco")), train_images=IMAGES, image_size=32)
    write_train_set(config)
    return config


def train_command(dataset, run_dir, *extra):
    return [sys.executable, str(REPO / "train.py"), "--train_img_dir", str(dataset.train_img_dir),
            "--train_annotation_file", str(dataset.train_annotation_file), "model.name=tiny",
            f"output_dir={run_dir}", f"train.epochs={EPOCHS}", f"train.batch_size={BATCH}", "train.precision=fp32",
            "train.num_threads=1", "train.log_every_steps=1", "checkpoint.every_steps=2", "checkpoint.keep_last=2",
            "data.num_workers=0", "schedule.warmup_fraction=0.25", *extra]


def start(command, **kwargs):
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def run(command):
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def wait_for(condition, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"training ended before the test could interrupt it: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for training to reach the interruption point"
        time.sleep(0.005)


def final_weights(run_dir):
    return load_checkpoint(list_checkpoints(run_dir)[-1])["model"]


def assert_bit_identical(weights, reference):
    assert weights.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(weights[name], tensor), f"{name} differs from the uninterrupted run"


@pytest.fixture(scope="module")
def uninterrupted_run(coco_dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = run(train_command(coco_dataset, run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir


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


def test_sigterm_saves_exits_cleanly_and_resumes(coco_dataset, uninterrupted_run, tmp_path):
    process = start(train_command(coco_dataset, tmp_path))
    wait_for(lambda: list_checkpoints(tmp_path), process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    saved = list_checkpoints(tmp_path)[-1]
    assert f"SIGTERM: saved {saved}" in stdout
    assert load_checkpoint(saved)["step"] < TOTAL_STEPS
    resumed = run(train_command(coco_dataset, tmp_path, "--resume", "auto"))
    assert resumed.returncode == 0, resumed.stderr
    assert_bit_identical(final_weights(tmp_path), final_weights(uninterrupted_run))


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
    (previous,) = list_checkpoints(tmp_path)
    assert load_checkpoint(previous)["step"] == 2
    resumed = run(train_command(coco_dataset, tmp_path, "--resume", "auto"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {previous} at step 2" in resumed.stdout


def test_missing_and_corrupt_images_are_skipped_and_counted(tmp_path):
    dataset = SyntheticDataConfig(root=str(tmp_path / "coco"), train_images=17, image_size=32)
    write_train_set(dataset)
    (dataset.train_img_dir / "000001.jpg").unlink()
    (dataset.train_img_dir / "000002.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    result = run(train_command(dataset, tmp_path / "run", "train.epochs=1"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["skipped_images"] == 2


def test_logit_scale_never_exceeds_100():
    torch.manual_seed(0)
    model = build_model(model_config_by_name("tiny-vit"))
    optimizer = build_optimizer(model, OptimizerConfig(lr=1.0))  # a huge step size for the temperature
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for _ in range(10):
        (-model.logit_scale).backward()  # always pushes the scale up
        optimizer_step(model, optimizer, scaler, grad_clip_norm=1.0)
        assert model.logit_scale.exp().item() <= 100 * (1 + 1e-6)
    assert model.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)


def test_config_typo_is_one_line_error_naming_the_nearest_key(coco_dataset, tmp_path, capsys):
    import train
    assert train.main(train_command(coco_dataset, tmp_path, "optimizer.lrr=1e-4")[2:]) == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith("error: ") and len(stderr.splitlines()) == 1
    assert "unknown key 'optimizer.lrr'" in stderr and "did you mean 'optimizer.lr'" in stderr
