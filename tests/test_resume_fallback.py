"""Checkpoints prove they are whole: `--resume auto` passes over a truncated or bit-flipped latest checkpoint (it
says which and why, and keeps the file) and continues exactly from the one before; a checkpoint write that fails
with a full disk is one line naming the last whole checkpoint, leaves no partial file, and the run resumes; under
torchrun (slow) every rank stops with rank 0's failed write."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from faults import mkstemp_on_a_full_disk
from training_runs import REPO, TOTAL_STEPS, assert_bit_identical, final_weights, run_in_process, train_command
from trainer.checkpointing import find_resume_checkpoint, list_checkpoints, prune_checkpoints, remove_torn_writes
from utils.atomic_files import temporary_files
from utils.checkpoint import checksum_path, load_checkpoint


def truncate_to_half(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def flip_one_bit_in_the_middle(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate_to_half, flip_one_bit_in_the_middle])
def test_resume_auto_passes_over_a_damaged_latest_checkpoint_and_keeps_it(coco_dataset, uninterrupted_run, tmp_path,
                                                                         capsys, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted_run, run_dir)
    previous, latest = list_checkpoints(run_dir)
    damage(latest)
    damaged = latest.read_bytes()
    assert run_in_process(train_command(coco_dataset, run_dir, "--resume", "auto")) == 0
    output = capsys.readouterr().out
    assert f"passed over {latest}: its content does not match its checksum {latest.name}.sha256" in output
    assert f"resumed from {previous} at step {TOTAL_STEPS - 2}" in output
    kept = run_dir / "checkpoints" / "passed_over" / latest.name
    assert kept.read_bytes() == damaged and checksum_path(kept).is_file()  # set aside, never deleted
    assert_bit_identical(final_weights(run_dir), final_weights(uninterrupted_run))


def test_a_checkpoint_without_checksum_still_resumes_with_a_note(uninterrupted_run, tmp_path, capsys):
    shutil.copytree(uninterrupted_run / "checkpoints", tmp_path / "checkpoints")
    latest = list_checkpoints(tmp_path)[-1]
    checksum_path(latest).unlink()  # as written before checksums were kept
    assert find_resume_checkpoint("auto", tmp_path) == latest
    assert f"note: {latest} has no checksum" in capsys.readouterr().out


def test_an_unreadable_checkpoint_without_checksum_is_passed_over(uninterrupted_run, tmp_path, capsys):
    shutil.copytree(uninterrupted_run / "checkpoints", tmp_path / "checkpoints")
    previous, latest = list_checkpoints(tmp_path)
    checksum_path(latest).unlink()
    truncate_to_half(latest)
    assert find_resume_checkpoint("auto", tmp_path) == previous
    assert f"passed over {latest}: not a readable PyTorch checkpoint" in capsys.readouterr().out


def test_an_explicit_damaged_checkpoint_is_refused(uninterrupted_run, tmp_path):
    latest = tmp_path / "latest.pt"
    shutil.copy(list_checkpoints(uninterrupted_run)[-1], latest)
    shutil.copy(checksum_path(list_checkpoints(uninterrupted_run)[-1]), checksum_path(latest))
    flip_one_bit_in_the_middle(latest)
    with pytest.raises(Exception, match=f"--resume {latest}: its content does not match its checksum"):
        find_resume_checkpoint(str(latest), tmp_path)


def test_a_new_session_removes_what_a_kill_left_half_done_and_nothing_else(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    whole, whole_checksum = folder / "step_00000002.pt", folder / "step_00000002.pt.sha256"
    whole.write_bytes(b"x")
    whole_checksum.write_text("digest  step_00000002.pt\n")
    (folder / ".step_00000004.pt.a1b2.tmp").write_bytes(b"half")  # killed inside the write
    (folder / "step_00000004.pt.sha256").write_text("digest  step_00000004.pt\n")  # killed between the renames
    remove_torn_writes(tmp_path)
    assert sorted(folder.iterdir()) == [whole, whole_checksum]


def test_keep_last_never_deletes_the_checkpoint_just_written(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (2, 4, 6):
        (folder / f"step_{step:08d}.pt").write_bytes(b"x")
    written = folder / "step_00000002.pt"  # a run resumed from an earlier checkpoint wrote step 2 again
    prune_checkpoints(tmp_path, keep_last=1, keep=written)
    assert list_checkpoints(tmp_path) == [written]


def test_disk_full_during_a_checkpoint_write_is_one_line_and_the_run_resumes(coco_dataset, uninterrupted_run,
                                                                            tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_on_a_full_disk(checkpoint_write=2))
    run_dir = tmp_path / "run"
    assert run_in_process(train_command(coco_dataset, run_dir)) == 2
    checkpoints = run_dir / "checkpoints"
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"error: cannot write checkpoint {checkpoints / 'step_00000004.pt'}: No space left on device; the last whole "
        f"checkpoint is {checkpoints / 'step_00000002.pt'}: fix the cause and rerun with --resume auto")
    assert list_checkpoints(run_dir) == [checkpoints / "step_00000002.pt"] and not temporary_files(checkpoints)
    assert load_checkpoint(checkpoints / "step_00000002.pt")["step"] == 2
    monkeypatch.undo()
    assert run_in_process(train_command(coco_dataset, run_dir, "--resume", "auto")) == 0
    assert_bit_identical(final_weights(run_dir), final_weights(uninterrupted_run))


# train.py whose rank 0 writes its second checkpoint on a full disk.
RANK_0_DISK_FULL_AT_SECOND_CHECKPOINT = """
import os, sys, tempfile
from faults import mkstemp_on_a_full_disk
if os.environ["RANK"] == "0":
    tempfile.mkstemp = mkstemp_on_a_full_disk(checkpoint_write=2)
import train
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.slow  # two ranks start and train a few steps
def test_under_torchrun_a_failed_checkpoint_write_stops_every_rank(coco_dataset, tmp_path):
    script = tmp_path / "disk_full_on_rank_0.py"
    script.write_text(RANK_0_DISK_FULL_AT_SECOND_CHECKPOINT)
    command = train_command(coco_dataset, tmp_path / "run")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
                *command[2:]]
    result = subprocess.run(torchrun, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"})
    assert result.returncode != 0
    checkpoints = tmp_path / "run" / "checkpoints"
    message = (f"error: cannot write checkpoint {checkpoints / 'step_00000004.pt'}: No space left on device; the last "
               f"whole checkpoint is {checkpoints / 'step_00000002.pt'}")
    assert result.stderr.count(message) == 2, result.stderr  # rank 1 stops with rank 0 instead of waiting for it
