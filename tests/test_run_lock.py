"""One run per run folder: a second `train.py` on a folder in use stops at once, naming the folder and the holder;
under torchrun every rank stops; a killed run leaves no stale lock."""
import os
import socket
import subprocess
import sys

from training_runs import REPO, run_in_process, start, train_command, wait_for
from trainer.run_lock import LOCK_FILE, acquire, run_folder_lock


def test_second_run_on_the_same_folder_fails_naming_the_holder(coco_dataset, tmp_path, capsys):
    first = start(train_command(coco_dataset, tmp_path, "train.epochs=100"))
    holder = f"PID {first.pid} on host {socket.gethostname()}"
    try:
        wait_for(lambda: (tmp_path / LOCK_FILE).is_file() and holder in (tmp_path / LOCK_FILE).read_text(), first)
        assert run_in_process(train_command(coco_dataset, tmp_path, "--resume", "auto")) == 2
        stderr = capsys.readouterr().err
        assert stderr == (f"error: {tmp_path} is in use by another training run ({holder}): wait for it to end, or "
                          "give this run another output_dir\n")
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()
    acquire(tmp_path).close()  # the kernel released the killed run's lock: nothing stale is left


def test_under_torchrun_every_rank_stops_when_the_folder_is_in_use(coco_dataset, tmp_path):
    command = train_command(coco_dataset, tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *command[1:]]
    with run_folder_lock(tmp_path, is_main=True):
        result = subprocess.run(torchrun, cwd=REPO, capture_output=True, text=True, timeout=180,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    message = f"error: {tmp_path} is in use by another training run (PID {os.getpid()} on host"
    assert result.stderr.count(message) == 2, result.stderr  # rank 0 could not lock, rank 1 stopped with it

