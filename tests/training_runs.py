"""Runs of `python train.py` on a tiny CLIP and a tiny COCO-format dataset written by the test, and the checks
the trainer tests share. conftest.py shares the dataset and the uninterrupted reference run across the session; a
module that imports them from here builds its own."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dataloader.train.synthetic import SyntheticDataConfig, write_eval_set, write_train_set
from trainer import trainer as trainer_module
from trainer.checkpointing import list_checkpoints
from utils.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
BATCH, IMAGES, EPOCHS = 8, 48, 2  # 6 steps per epoch, 12 in all
TOTAL_STEPS = EPOCHS * IMAGES // BATCH


@pytest.fixture(scope="session")
def coco_dataset(tmp_path_factory):
    config = SyntheticDataConfig(root=str(tmp_path_factory.mktemp("coco")), train_images=IMAGES, image_size=32)
    write_train_set(config)
    return config


@pytest.fixture(scope="session")
def uninterrupted_run(coco_dataset, tmp_path_factory):
    """The run every interrupted one must end like; tests copy it, never change it."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = run(train_command(coco_dataset, run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture(scope="module")
def shapes_task(tmp_path_factory):
    """A zero-shot task of one image per class, cheap to score; by itself, on the final weights only."""
    shapes = SyntheticDataConfig(root=str(tmp_path_factory.mktemp("shapes")), eval_images_per_class=1)
    write_eval_set(shapes)
    return f"eval.tasks=[{{kind: zeroshot, name: shapes, data_dir: {shapes.eval_dir}}}]"


def train_command(dataset, run_dir, *extra):
    return source_command(["--train_img_dir", str(dataset.train_img_dir), "--train_annotation_file",
                           str(dataset.train_annotation_file)], run_dir, *extra)


def train_data_command(train_data, run_dir, *extra):
    """The command on any training source given as --train_data."""
    return source_command(["--train_data", str(train_data)], run_dir, *extra)


def source_command(source_flags, run_dir, *extra):
    return [sys.executable, str(REPO / "train.py"), *source_flags, "model.name=quickstart",
            f"output_dir={run_dir}", f"train.epochs={EPOCHS}", f"train.batch_size={BATCH}", "train.precision=fp32",
            "train.deterministic=true", "train.num_threads=1", "train.log_every_steps=1", "checkpoint.every_steps=2", "checkpoint.keep_last=2",
            "data.num_workers=0", "schedule.warmup_fraction=0.25", *extra]


def start(command, **kwargs):
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def run(command):
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def run_in_process(command) -> int:
    """train.py's exit code on `command`'s arguments, run in this process: no interpreter start-up, seconds
    faster. Torch's thread count (the run sets it) is restored after."""
    import train
    threads = torch.get_num_threads()
    try:
        return train.main(command[2:])
    finally:
        torch.set_num_threads(threads)


def sigterm_during_step(monkeypatch, step: int) -> None:
    """SIGTERM arrives while the run computes `step`: it stops right after that step."""
    def train_step(session, micro_batches, _train_step=trainer_module.train_step):
        if session.state.step == step - 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return _train_step(session, micro_batches)
    monkeypatch.setattr(trainer_module, "train_step", train_step)


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
