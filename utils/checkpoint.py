"""Checkpoint files: written atomically, read as data only (`weights_only=True`: loading never runs code).
A checkpoint may carry a checksum beside it (<name>.sha256, in `sha256sum` format); loading verifies it, so a
file torn by a copy or changed by a flipped bit is refused instead of used."""
import hashlib
import os
import pickle
import zipfile
from pathlib import Path

import torch

from utils.atomic_files import write_atomically, write_text_atomically
from utils.errors import UserError

CHUNK_BYTES = 16 << 20
PICKLE_PROTOCOL_MARK = b"\x80"  # the first byte of every pickle of protocol 2 or later


def save_checkpoint_atomic(payload: dict, path, checksum: bool = False) -> None:
    """Write `payload` to `path` whole or not at all (utils.atomic_files); with `checksum`, its SHA-256 goes to
    <path>.sha256 first, so a checkpoint in place always has the checksum of its own content beside it."""
    def write(file):
        torch.save(payload, file)
        if checksum:
            file.flush()
            write_text_atomically(checksum_path(path), f"{sha256_of_descriptor(file.fileno())}  {Path(path).name}\n")
    write_atomically(path, write)


def checksum_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def sha256_of_descriptor(descriptor: int) -> str:
    digest, offset = hashlib.sha256(), 0
    while chunk := os.pread(descriptor, CHUNK_BYTES, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def sha256_of_file(path) -> str:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return sha256_of_descriptor(descriptor)
    finally:
        os.close(descriptor)


def checksum_problem(path) -> str | None:
    """Why `path` does not match the checksum beside it, or None when it does (or has no checksum)."""
    recorded = checksum_path(path)
    if not recorded.is_file():
        return None
    try:
        expected = recorded.read_text().split()[0]
        actual = sha256_of_file(path)
    except (OSError, IndexError) as error:
        return f"cannot read it or its checksum {recorded.name} ({getattr(error, 'strerror', None) or error})"
    if actual != expected:
        return (f"its content does not match its checksum {recorded.name}: the file changed after it was written "
                "(a copy that stopped half-way, a flipped bit)")
    return None


def format_problem(path: Path) -> str | None:
    """Why `path` cannot be a PyTorch file at all (torch.save writes a zip archive, or a pickle in older formats),
    or None: an image or a text file would otherwise be reported as a pickle refused for safety."""
    with open(path, "rb") as file:
        start = file.read(1)
    if start == PICKLE_PROTOCOL_MARK or zipfile.is_zipfile(path):
        return None
    return "not a readable PyTorch checkpoint (neither a zip archive nor a pickle: is it the right file?)"


def load_checkpoint(path, map_location="cpu"):
    """torch.load with weights_only=True; failures become one line naming the file and the reason."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    problem = checksum_problem(path) or format_problem(path)
    if problem:
        raise UserError(f"{path}: {problem}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unsupported pickle content"
        raise UserError(f"{path}: refused to load: it is not plain tensor data and loading it could run code "
                        f"({reason[:200]})") from None
    except Exception as error:  # a corrupt file can fail anywhere in the unpickler, with any exception type
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({detail})") from None
