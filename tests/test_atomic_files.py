"""Reports, caches, logs and checkpoints are written whole or not at all: a kill mid-write leaves the old file, a
failed write (a full disk, a folder that is a file) is one error naming the file and the cause, with no partial
file left."""
import logging
import os
import signal
import subprocess
import sys
import tempfile

import pytest
import torch

from faults import fsync_failing_on_folders, mkstemp_on_a_full_disk
from training_runs import REPO, wait_for
from utils.atomic_files import WriteFailed, temporary_files, write_atomically, write_text_atomically
from utils.checkpoint import save_checkpoint_atomic

# Writes half of the new content, then waits to be killed.
HALF_WRITTEN_THEN_KILLED = """
import sys, time
from utils.atomic_files import write_atomically
def write(file):
    file.write(b"new, half of it"); file.flush(); time.sleep(600)
write_atomically(sys.argv[1], write)
"""


def test_a_kill_mid_write_leaves_the_old_file(tmp_path):
    report = tmp_path / "report.json"
    write_text_atomically(report, '{"top1": 50.0}\n')
    writer = subprocess.Popen([sys.executable, "-c", HALF_WRITTEN_THEN_KILLED, str(report)], cwd=REPO)
    wait_for(lambda: temporary_files(tmp_path), writer)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert report.read_text() == '{"top1": 50.0}\n'
    assert [path.read_bytes() for path in temporary_files(tmp_path)] == [b"new, half of it"]  # never the report


@pytest.fixture
def full_disk(monkeypatch):
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_on_a_full_disk())


def test_a_full_disk_is_one_error_naming_the_file_and_keeps_the_old_one(tmp_path, full_disk):
    summary = tmp_path / "summary.json"
    summary.write_text("old")
    with pytest.raises(WriteFailed, match=f"^cannot write {summary}: No space left on device$"):
        write_text_atomically(summary, "x" * 100_000)
    assert summary.read_text() == "old" and list(tmp_path.iterdir()) == [summary]


def test_torch_save_on_a_full_disk_reports_the_disk_not_its_own_error(tmp_path, full_disk):
    with pytest.raises(WriteFailed, match="No space left on device"):  # torch raises "unexpected pos ..." itself
        save_checkpoint_atomic({"weights": torch.zeros(100_000)}, tmp_path / "step.pt", checksum=True)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_a_file_is_one_error(tmp_path):
    (tmp_path / "run").write_text("a file, not a folder")
    with pytest.raises(WriteFailed, match=f"^cannot write {tmp_path / 'run' / 'config.yaml'}: "):
        write_text_atomically(tmp_path / "run" / "config.yaml", "seed: 0\n")


def test_an_error_of_the_writer_itself_passes_through(tmp_path):
    with pytest.raises(ZeroDivisionError):
        write_atomically(tmp_path / "x", lambda file: 1 / 0)
    assert list(tmp_path.iterdir()) == []


def test_a_written_file_has_the_mode_open_would_give_it(tmp_path):
    write_text_atomically(tmp_path / "report.txt", "Top 1 accuracy = 50.00 %\n")
    (tmp_path / "plain.txt").write_text("Top 1 accuracy = 50.00 %\n")
    assert (tmp_path / "report.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode


def test_new_folders_are_flushed_in_their_parents(tmp_path, monkeypatch):
    real_fsync, flushed = os.fsync, []

    def fsync(descriptor):
        flushed.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)
    monkeypatch.setattr(os, "fsync", fsync)
    write_text_atomically(tmp_path / "run" / "eval" / "report.json", "{}\n")
    # A power loss must not drop a new folder with the file in it: each new entry is flushed in its parent.
    assert {str(tmp_path), str(tmp_path / "run"), str(tmp_path / "run" / "eval")} <= set(flushed)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_failed_chmod_closes_the_temporary_file(tmp_path, monkeypatch):
    def chmod(*args, **kwargs):
        raise PermissionError(13, "Operation not permitted")
    monkeypatch.setattr(os, "chmod", chmod)
    before = open_descriptors()
    with pytest.raises(WriteFailed, match="Operation not permitted$"):
        write_text_atomically(tmp_path / "report.txt", "x")
    assert open_descriptors() == before and list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_flushed_after_the_rename_is_a_warning_not_a_failed_write(tmp_path, monkeypatch,
                                                                                            caplog):
    report = tmp_path / "report.txt"
    report.write_text("old")
    monkeypatch.setattr(os, "fsync", fsync_failing_on_folders())
    with caplog.at_level(logging.WARNING):
        write_text_atomically(report, "new")  # the new file is in place: callers must not report it lost
    assert report.read_text() == "new" and list(tmp_path.iterdir()) == [report]
    assert [record.getMessage() for record in caplog.records] == [
        f"{report} is written, but its folder could not be flushed to disk (Input/output error): "
        "a power loss may bring back the previous version"]
