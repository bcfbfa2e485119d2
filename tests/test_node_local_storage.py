"""Two "nodes" that share no storage: two train.py processes in one gloo group (as torchrun starts them), each in a
folder of its own, with the same relative paths in the same configuration. The synthetic data is generated on
each; a fresh run trains consistently (rank 0 writes the checkpoints, in its own folder); resuming stops both at
start-up with one line saying that output_dir must be shared; with a copy of the run folder on the second node
both resume from the same step. No hang: every wait has a timeout."""
import os
import shutil
import socket
import subprocess
import sys

import yaml

from gloo_ranks import free_port
from training_runs import REPO
from trainer.checkpointing import list_checkpoints

STEPS = 4  # 32 images, 4 per rank per step, 2 ranks
CONFIG = {
    "output_dir": "runs/shared", "model": {"name": "quickstart"},
    "synthetic_data": {"root": "data/shapes", "train_images": 32, "eval_images_per_class": 1, "image_size": 32},
    "data": {"train_img_dir": "data/shapes/train", "train_annotation_file": "data/shapes/captions_train.json",
             "num_workers": 0},
    "train": {"epochs": 1, "batch_size": 4, "precision": "fp32", "num_threads": 1, "log_every_steps": 2},
    "checkpoint": {"every_steps": 2},
}


def run_on_two_nodes(nodes, *extra) -> list[subprocess.CompletedProcess]:
    port = free_port()
    processes = []
    for rank, folder in enumerate(nodes):
        (folder / "run.yaml").write_text(yaml.safe_dump(CONFIG))
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen([sys.executable, str(REPO / "train.py"), "--config", "run.yaml", *extra],
                                          cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
    try:
        outputs = [process.communicate(timeout=240) for process in processes]
    finally:
        for process in processes:
            process.kill()
    return [subprocess.CompletedProcess(process.args, process.returncode, *output)
            for process, output in zip(processes, outputs)]


def test_nodes_without_shared_storage_resume_together_or_stop_together(tmp_path):
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    for folder in nodes:
        folder.mkdir()

    fresh = run_on_two_nodes(nodes, "--resume", "auto")
    assert [result.returncode for result in fresh] == [0, 0], [result.stderr[-2000:] for result in fresh]
    assert all((folder / "data/shapes/dataset.json").is_file() for folder in nodes)  # each node has its own copy
    assert [path.name for path in list_checkpoints(nodes[0] / "runs/shared")] == ["step_00000002.pt",
                                                                                  "step_00000004.pt"]
    assert not list_checkpoints(nodes[1] / "runs/shared")

    resumed = run_on_two_nodes(nodes, "--resume", "auto")
    expected = (f"error: rank 1 on host {socket.gethostname()}: runs/shared/checkpoints/step_00000004.pt, the "
                "checkpoint rank 0 resumes from, is not there: output_dir must be on storage every node reads "
                "(a shared filesystem)")
    for result in resumed:
        assert result.returncode == 2 and result.stderr.strip() == expected, result.stderr[-2000:]

    shutil.copytree(nodes[0] / "runs", nodes[1] / "runs")
    copied = run_on_two_nodes(nodes, "--resume", "auto")
    assert [result.returncode for result in copied] == [0, 0], [result.stderr[-2000:] for result in copied]
    assert "resumed from runs/shared/checkpoints/step_00000004.pt at step 4" in copied[0].stdout
