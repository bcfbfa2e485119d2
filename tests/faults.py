"""Faults the tests inject: a full disk under chosen writes, a folder that cannot be flushed."""
import errno
import os
import stat
import tempfile


def mkstemp_on_a_full_disk(checkpoint_write: int | None = None):
    """tempfile.mkstemp, except that the temporary file of the `checkpoint_write`-th training checkpoint write (of
    every write when None) is opened on /dev/full, where the kernel answers each write with ENOSPC."""
    real_mkstemp, checkpoint_writes = tempfile.mkstemp, []

    def mkstemp(*args, **kwargs):
        handle, name = real_mkstemp(*args, **kwargs)
        if checkpoint_write is not None:
            prefix = kwargs.get("prefix", "")
            if not prefix.startswith(".step_") or ".sha256" in prefix:
                return handle, name
            checkpoint_writes.append(name)
            if len(checkpoint_writes) != checkpoint_write:
                return handle, name
        os.close(handle)
        return os.open("/dev/full", os.O_WRONLY), name
    return mkstemp


def fsync_failing_on_folders():
    """os.fsync, except that on a folder it fails as a disk error would (EIO), as it may on network filesystems."""
    real_fsync = os.fsync

    def fsync(descriptor):
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(descriptor)
    return fsync
