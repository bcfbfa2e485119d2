"""Checkpoint files: written atomically, read as data only (`weights_only=True`: loading never runs code)."""
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from utils.errors import UserError


def save_checkpoint_atomic(payload: dict, path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a kill at any moment leaves
    either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def is_torchscript_archive(path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_checkpoint(path, map_location="cpu"):
    """torch.load with weights_only=True; failures become one line naming the file and the reason."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unsupported pickle content"
        raise UserError(f"{path}: refused to load: it is not plain tensor data and loading it could run code "
                        f"({reason[:200]})") from None
    except Exception as error:  # a corrupt file can fail anywhere in the unpickler, with any exception type
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({detail})") from None
