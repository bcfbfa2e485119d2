"""Files written whole or not at all: the content goes to a temporary file in the same folder, is flushed to disk,
then renamed over the target. A kill at any moment leaves the old file or the new one, never a torn one; a failed
write (disk full, permission denied, the folder removed) leaves no partial file and raises WriteFailed. A folder
that cannot be flushed once the file is in place is only a warning."""
import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from utils.errors import UserError

log = logging.getLogger(__name__)
TEMPORARY_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read back unchanged: a temporary file gets the mode open() would give the file, not 0600


class WriteFailed(UserError):
    """A file could not be written; `path` and `cause` (the OS's words) let callers say what was kept instead."""

    def __init__(self, path: Path, cause: str):
        super().__init__(f"cannot write {path}: {cause}")
        self.path, self.cause = path, cause


def write_atomically(path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write(file)` on a temporary file, then put it in place of `path` atomically and durably."""
    path = Path(path)
    temp_name = None
    try:
        new_folders = _make_folders(path.parent)
        handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
        with os.fdopen(handle, "wb") as file:  # opened first, so that a failing chmod still closes the handle
            os.chmod(temp_name, 0o666 & ~_UMASK)
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException as error:
        if temp_name:
            Path(temp_name).unlink(missing_ok=True)
        # the writer's own one-line error (WriteFailed, a download that failed) already says what went wrong
        cause = None if isinstance(error, UserError) else os_error_behind(error)
        if cause is None:
            raise
        raise WriteFailed(path, cause.strerror or str(cause)) from None
    _flush_folders(path, new_folders)


def write_text_atomically(path, text: str) -> None:
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def write_bytes_atomically(path, data: bytes) -> None:
    write_atomically(path, lambda file: file.write(data))


def temporary_files(folder) -> list[Path]:
    """Temporary files of writes that a kill interrupted in `folder`: never valid, safe to delete."""
    return sorted(Path(folder).glob(f".*{TEMPORARY_SUFFIX}"))


def os_error_behind(error: BaseException) -> OSError | None:
    """The OSError that caused `error`, if any: writers such as torch.save report a failed write as their own
    RuntimeError ("unexpected pos ...") with the OSError as its context."""
    while error is not None:
        if isinstance(error, OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns the folders it created."""
    missing = [new for new in (folder, *folder.parents) if not new.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _flush_folders(path: Path, new_folders: list[Path]) -> None:
    """Make the rename of `path` durable, and the entry of each new folder in its parent: otherwise a power loss may
    drop a new folder with the file in it. The file is in place already, so a folder that cannot be flushed (as on
    some network filesystems) is a warning: reporting the write as failed would be false."""
    try:
        for folder in (path.parent, *(new.parent for new in new_folders)):
            _fsync_folder(folder)
    except OSError as error:
        log.warning("%s is written, but its folder could not be flushed to disk (%s): a power loss may bring back "
                    "the previous version", path, error.strerror or error)


def _fsync_folder(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
