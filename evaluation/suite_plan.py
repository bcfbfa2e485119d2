"""What the suite scores: checkpoints x datasets (each a row of domains) x tasks, planned as cells.

A data root whose sub-folders each hold class folders (PACS/art_painting/dog/...) is read as one domain per
sub-folder; any other root is one domain. Zero-shot and the linear probe score such labelled folders; retrieval
scores caption sets (COCO/Karpathy JSON, CSV/TSV, JSONL, shards), all of them one table with a column each.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from dataloader.coco import CaptionedImages
from dataloader.eval.caption_sets import read_caption_set
from dataloader.train.train_data import infer_format
from evaluation.retrieval import DEFAULT_KS
from utils.errors import UserError

FOLDER_TASKS = ("zeroshot", "linear_probe")  # score labelled image folders (data roots)
CAPTION_TASKS = ("retrieval",)  # score caption sets
TASKS = FOLDER_TASKS + CAPTION_TASKS
CAPTIONS_TABLE = "captions"  # the dataset name of the caption sets' table


class Headline(NamedTuple):
    """A cell's value in the tables."""
    metric: str  # its key in CellResult.metrics
    name: str  # as the tables say it


TOP1 = Headline("top1", "top-1")
HEADLINES = {"zeroshot": TOP1, "linear_probe": TOP1, "retrieval": Headline("mean_recall", "mean recall")}


@dataclass(frozen=True)
class Checkpoint:
    label: str  # the table's row name
    path: str  # anything load_model reads


@dataclass(frozen=True)
class DataRoot:
    dataset: str  # the table's name (the root folder's name)
    dataset_type: str  # a dataloader.eval.eval_datasets reader
    domains: tuple[tuple[str, Path], ...]  # (column name, folder), in column order


@dataclass(frozen=True)
class CaptionSet:
    name: str  # the table's column name
    source: Path  # the captions file or shards
    image_dir: Path | None  # where its images are (COCO); None: a table's folder, or the shards themselves
    data_format: str  # coco | csv | jsonl | webdataset


@dataclass(frozen=True)
class Cell:
    checkpoint: Checkpoint
    dataset: str
    dataset_type: str  # a dataloader.eval.eval_datasets reader, or a caption set's format
    domain: str
    source: Path  # the domain's folder, or the caption set's file
    task: str
    image_dir: Path | None = None  # a caption set's images


@dataclass(frozen=True)
class SuiteSettings:
    device: torch.device
    precision: str  # auto | fp32 | bf16 | fp16
    batch_size: int
    num_workers: int
    cache_dir: Path
    templates: str | None = None  # default: each dataset's own set
    test_fraction: float = 0.2  # the linear probe's held-out share of a folder without a test split
    split_seed: int = 0
    recall_k: tuple[int, ...] = DEFAULT_KS
    image_key: str = "filepath"  # a caption table's columns / keys
    caption_key: str = "caption"
    karpathy_split: str = "test"


@dataclass
class CellResult:
    cell: Cell
    # top1, top5, mean_per_class_recall (%) ...; retrieval: mean_recall, image_to_text_R@1 ... (%), ranks, counts
    metrics: dict[str, float] = field(default_factory=dict)
    n_images: int = 0  # the images the metrics count
    num_unreadable: int = 0
    num_nonfinite: int = 0
    # per class and over all images: top-1 % by column ("zeroshot", and for the linear probe's cell "linear_probe":
    # the probe beside zero-shot on the same test images); per_class rows also carry the "class" name
    per_class: list[dict] = field(default_factory=list)
    overall: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    from_cache: bool = False


def named_path(text: str) -> tuple[str, str]:
    """(name, path) of `NAME=PATH`; a bare path is named by its file name without suffix."""
    name, sep, path = text.partition("=")
    if sep and name and path:
        return name, path
    return Path(text).stem or text, text


def parse_checkpoint(text: str) -> Checkpoint:
    """`NAME=PATH` labels a row; a bare path is labelled by its file name without suffix."""
    return Checkpoint(*named_path(text))


def data_root(root: str | Path, dataset_type: str) -> DataRoot:
    """A folder set whose sub-folders each hold class folders is one domain per sub-folder; else one domain."""
    root = Path(root)
    name = root.name or str(root)
    if root.is_file():
        raise UserError(f"data_dir {root} is a file, not a folder of labelled images: a caption set goes to "
                        "annotation_file, for the retrieval task")
    if dataset_type == "folder" and root.is_dir():
        subfolders = [path for path in sorted(root.iterdir()) if path.is_dir() and not path.name.startswith(".")]
        if subfolders and all(holds_class_folders(path) for path in subfolders):
            return DataRoot(name, dataset_type, tuple((path.name, path) for path in subfolders))
    return DataRoot(name, dataset_type, ((name, root),))


def caption_sets(entries: list[str], image_dirs: list[str], data_format: str = "auto") -> list[CaptionSet]:
    """`[NAME=]FILE` each (NAME: default the file's name), with its image folder: none, one for all, or one each."""
    if len(image_dirs) not in (0, 1, len(entries)):
        raise UserError(f"{len(image_dirs)} img_dir for {len(entries)} annotation_file: give one for all, or one "
                        "each in order")
    sets = []
    for index, entry in enumerate(entries):
        name, source = named_path(entry)
        if Path(source).is_dir() and holds_class_folders(Path(source)):
            raise UserError(f"annotation_file {source} holds class folders, not captions: labelled images go to "
                            "data_dir, for the zeroshot and linear_probe tasks")
        image_dir = image_dirs[index if len(image_dirs) > 1 else 0] if image_dirs else None
        sets.append(CaptionSet(name, Path(source), None if image_dir is None else Path(image_dir),
                               infer_format(source, "format") if data_format == "auto" else data_format))
    return sets


def holds_class_folders(folder: Path) -> bool:
    """True for a domain folder (art_painting/dog/*.jpg), False for a class folder (dog/*.jpg)."""
    entries = [path for path in folder.iterdir() if not path.name.startswith(".")]
    return any(path.is_dir() for path in entries) and not any(path.is_file() for path in entries)


def plan_cells(checkpoints: list[Checkpoint], roots: list[DataRoot], tasks: list[str],
               captions: list[CaptionSet] = ()) -> list[Cell]:
    """Checkpoint by checkpoint: each folder task on every domain, then each caption task on every caption set."""
    labels = [checkpoint.label for checkpoint in checkpoints]
    if len(set(labels)) < len(labels):
        raise UserError(f"two checkpoints share a row name ({', '.join(labels)}): label them NAME=PATH")
    names = [root.dataset for root in roots]
    if len(set(names)) < len(names):
        raise UserError(f"two data folders share the name {', '.join(names)}: each table is named by its folder")
    caption_names = [caption_set.name for caption_set in captions]
    if len(set(caption_names)) < len(caption_names):
        raise UserError(f"two caption sets share the column name {', '.join(caption_names)}: name them NAME=FILE")
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise UserError(f"unknown task {unknown[0]!r}: expected {' or '.join(TASKS)}")
    check_data_kinds(tasks, roots, captions)
    folder_tasks = [task for task in tasks if task in FOLDER_TASKS]
    caption_tasks = [task for task in tasks if task in CAPTION_TASKS]
    return [cell for checkpoint in checkpoints for cell in
            [Cell(checkpoint, root.dataset, root.dataset_type, domain, folder, task)
             for root in roots for domain, folder in root.domains for task in folder_tasks]
            + [Cell(checkpoint, CAPTIONS_TABLE, caption_set.data_format, caption_set.name, caption_set.source, task,
                    caption_set.image_dir) for caption_set in captions for task in caption_tasks]]


def check_data_kinds(tasks: list[str], roots: list[DataRoot], captions: list[CaptionSet]) -> None:
    """Every task has data of its kind, and all data a task that reads it."""
    folder_tasks = [task for task in tasks if task in FOLDER_TASKS]
    caption_tasks = [task for task in tasks if task in CAPTION_TASKS]
    if folder_tasks and not roots:
        raise UserError(f"task {folder_tasks[0]} scores labelled image folders: give them as data_dir "
                        f"(caption sets are for {' and '.join(CAPTION_TASKS)})")
    if caption_tasks and not captions:
        raise UserError(f"task {caption_tasks[0]} scores caption sets: give them as annotation_file (COCO or "
                        "Karpathy JSON, CSV/TSV, JSONL, shards), not as data_dir")
    if roots and not folder_tasks:
        raise UserError(f"data_dir {roots[0].dataset} holds labelled images, which only {' and '.join(FOLDER_TASKS)} "
                        f"score, and tasks are {', '.join(tasks)}")
    if captions and not caption_tasks:
        raise UserError(f"annotation_file {captions[0].source} is a caption set, which only "
                        f"{' and '.join(CAPTION_TASKS)} scores, and tasks are {', '.join(tasks)}")


def read_cell_captions(cell: Cell, settings: SuiteSettings) -> CaptionedImages:
    """The captioned images of a retrieval cell's caption set."""
    return read_caption_set(str(cell.source), None if cell.image_dir is None else str(cell.image_dir),
                            data_format=cell.dataset_type, image_key=settings.image_key,
                            caption_key=settings.caption_key, split=settings.karpathy_split)
