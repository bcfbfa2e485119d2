"""The suite's per-cell cache. Every cell's result is kept in the cache folder under a name that hashes everything
that decides it (the checkpoint file, the images and captions, the task's settings), so a rerun computes only the
cells it has not seen, and loads no model whose cells are all known.
"""
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from dataloader.train.shards import list_shards
from evaluation.features import checkpoint_identity
from evaluation.suite_plan import CAPTION_TASKS, Cell, CellResult, SuiteSettings, read_cell_captions
from utils.atomic_files import write_text_atomically
from utils.errors import UserError


def files_fingerprint(files: list[tuple[str, Path]]) -> str:
    """A hash of each (name, file)'s name, size and modification time."""
    digest = hashlib.sha256()
    for name, path in files:
        status = path.stat()
        digest.update(f"{name}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def folder_fingerprint(folder: Path) -> str | None:
    """A hash of every file's relative path, size and modification time under `folder`: adding, removing or
    replacing an image changes it, so a cached cell is never read for images it did not see. None: no folder."""
    if not folder.is_dir():
        return None
    return files_fingerprint([(str(path.relative_to(folder)), path) for path in sorted(folder.rglob("*"))
                              if path.is_file()])


def caption_set_fingerprint(cell: Cell, settings: SuiteSettings) -> str | None:
    """A hash of the files a caption set reads: its captions file and the images it lists, or its shards. None
    when it cannot be read (the cell fails anew on every run) or names a `pipe:` command."""
    try:
        if cell.dataset_type == "webdataset":
            files = list_shards(str(cell.source))
        else:
            files = [str(cell.source), *read_cell_captions(cell, settings).image_paths]
    except UserError:
        return None
    if not all(Path(path).is_file() for path in files):
        return None
    return files_fingerprint([(os.path.abspath(path), Path(path)) for path in files])


def task_settings(cell: Cell, settings: SuiteSettings) -> dict:
    """The settings that decide a task's result, beside the checkpoint, its data and the precision."""
    if cell.task in CAPTION_TASKS:
        return {"image_dir": None if cell.image_dir is None else str(cell.image_dir.resolve()),
                "recall_k": list(settings.recall_k), "image_key": settings.image_key,
                "caption_key": settings.caption_key, "karpathy_split": settings.karpathy_split}
    return {"templates": settings.templates, "test_fraction": settings.test_fraction,
            "split_seed": settings.split_seed}


def cell_cache_file(cell: Cell, settings: SuiteSettings) -> Path | None:
    """<cache_dir>/cells/<task>-<hash>.json for this cell's inputs; None when they cannot be identified (a model
    given by config name has random weights; a missing folder fails anew on every run)."""
    identity = checkpoint_identity(cell.checkpoint.path)
    if identity is None:
        return None
    images = (caption_set_fingerprint(cell, settings) if cell.task in CAPTION_TASKS
              else folder_fingerprint(cell.source))
    if images is None:
        return None
    key = {"checkpoint": identity, "dataset_type": cell.dataset_type, "data_dir": str(cell.source.resolve()),
           "images": images, "task": cell.task, "precision": settings.precision, **task_settings(cell, settings)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return settings.cache_dir / "cells" / f"{cell.task}-{digest}.json"


def write_cell(result: CellResult, path: Path) -> None:
    """Written whole or not at all: an interrupted write never leaves a half cell that a rerun would trust."""
    content = {key: value for key, value in asdict(result).items() if key not in ("cell", "from_cache")}
    write_text_atomically(path, json.dumps(content, indent=1) + "\n")


def read_cell(path: Path, cell: Cell) -> CellResult:
    content = json.loads(path.read_text(encoding="utf-8"))
    return CellResult(cell, **content, from_cache=True)
