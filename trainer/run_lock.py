"""One run per run folder: the run holds an OS lock on <run folder>/run.lock for its lifetime, so a second run
started on the same folder (another terminal, a re-submitted job) stops at once instead of writing into the same
checkpoints and log. The kernel releases the lock when the holder exits or is killed: no stale lock survives it.

A POSIX record lock (lockf), not flock: it belongs to the process alone, so the loader's forked worker processes,
which outlive a killed run by a few seconds, do not keep holding the folder."""
import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

from utils.distributed import on_main_for_all
from utils.errors import UserError

LOCK_FILE = "run.lock"


@contextlib.contextmanager
def run_folder_lock(run_dir, is_main: bool):
    """Hold the run folder's lock for the block (rank 0 holds it for all ranks); if another run holds it, every
    rank raises a one-line UserError naming the folder and the holder. A folder the block created and left empty
    is removed again: a run refused at its start leaves nothing behind."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    lock = on_main_for_all(lambda: acquire(run_dir), is_main)
    try:
        yield
    finally:
        if lock is not None:
            if created and [path.name for path in run_dir.iterdir()] == [LOCK_FILE]:
                (run_dir / LOCK_FILE).unlink()  # while still held, so no other run can take the old file
                run_dir.rmdir()
            lock.close()  # closing the file releases the lock


def acquire(run_dir: Path):
    """The open lock file, locked and holding this process's PID and host; raises if another process holds it."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = open(run_dir / LOCK_FILE, "a+")
    except OSError as error:
        raise UserError(f"cannot create the run folder's lock {run_dir / LOCK_FILE}: {error.strerror}") from None
    try:
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EAGAIN):
            raise UserError(f"cannot lock {run_dir / LOCK_FILE}: {error.strerror}") from None
        lock.seek(0)
        holder = lock.read().strip() or "a process that has not written its PID yet"
        lock.close()
        raise UserError(f"{run_dir} is in use by another training run ({holder}): wait for it to end, or give "
                        "this run another output_dir") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"PID {os.getpid()} on host {socket.gethostname()}\n")
    lock.flush()
    return lock
