"""The reference tables' product: checkpoints x datasets (each a row of domains) x tasks, one cell at a time.

A data root whose sub-folders each hold class folders (PACS/art_painting/dog/...) is read as one domain per
sub-folder; any other root is one domain. Zero-shot and the linear probe score such labelled folders; retrieval
scores caption sets (COCO/Karpathy JSON, CSV/TSV, JSONL, shards), all of them one table with a column each. Every
cell's result is kept in the cache folder under a name that
hashes everything that decides it (the checkpoint file, the images and captions, the task's settings), so a rerun computes
only the cells it has not seen, and loads no model whose cells are all known. A cell that fails (a missing
folder, no readable image, a checkpoint that does not load) carries its one-line error; the others still run.
"""
import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from dataloader.coco import CaptionedImages
from dataloader.eval.caption_sets import read_caption_set
from dataloader.eval.splits import plan_splits
from dataloader.train.shards import list_shards
from dataloader.train.train_data import infer_format
from evaluation.feature_sets import read_set_features, split_off_test
from evaluation.features import ImageFeatures, checkpoint_identity
from evaluation.inference_model import load_for_inference
from evaluation.linear_probe import run_probe
from evaluation.metrics import ClassificationResult, ClassTally, summarise
from evaluation.retrieval import DEFAULT_KS, cached_caption_image_features, captioned_retrieval, text_features
from evaluation.template_sets import load_templates
from evaluation.zeroshot import zero_shot_head
from utils.atomic_files import write_text_atomically
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


def run_suite(cells: list[Cell], settings: SuiteSettings, progress: bool = True,
              on_computed: Callable[[CellResult], None] = lambda result: None) -> list[CellResult]:
    """Every cell's result, in order: from the cell cache, else computed. One model is held at a time (the cells
    come checkpoint by checkpoint); a checkpoint that does not load fails each of its cells with that error."""
    results, loaded = [], (None, None)  # (checkpoint, (model, preprocess, precision) or its UserError)
    for cell in tqdm(cells, desc="cells", unit="cell", disable=not progress):
        cache_file = cell_cache_file(cell, settings)
        if cache_file is not None and cache_file.is_file():
            results.append(read_cell(cache_file, cell))
            continue
        if loaded[0] != cell.checkpoint:
            loaded = None, None  # let the previous model go before the next one loads
            try:
                loaded = cell.checkpoint, loaded_model(cell.checkpoint, settings)
            except UserError as error:
                loaded = cell.checkpoint, error
        if isinstance(loaded[1], UserError):
            result = CellResult(cell, error=str(loaded[1]))
        else:
            try:
                result = COMPUTE[cell.task](cell, *loaded[1], settings)
            except UserError as error:
                result = CellResult(cell, error=str(error))
        results.append(result)
        on_computed(result)
        if cache_file is not None and result.error is None:
            write_cell(result, cache_file)
    return results


def loaded_model(checkpoint: Checkpoint, settings: SuiteSettings):
    """(model, preprocess, precision) of a checkpoint."""
    model, preprocess, decision = load_for_inference(checkpoint.path, settings.device, settings.precision,
                                                     settings.batch_size)
    return model, preprocess, decision.precision


def domain_features(cell: Cell, model, preprocess, precision: str, settings: SuiteSettings,
                    split: str | None = None):
    """(EvalSet, ImageFeatures) of a cell's folder (`split` of a set that holds several)."""
    eval_set, cached = read_set_features(model, preprocess, cell.dataset_type, cell.source, split,
                                         checkpoint=cell.checkpoint.path, device=settings.device, precision=precision,
                                         batch_size=settings.batch_size, num_workers=settings.num_workers,
                                         cache_dir=settings.cache_dir / "features", progress=False)
    return eval_set, cached.features


def class_head(model, eval_set, settings: SuiteSettings, precision: str) -> torch.Tensor:
    _, templates = load_templates(settings.templates or eval_set.default_templates)
    return zero_shot_head(model, eval_set.class_names, templates, settings.device, precision).cpu()


def scored(features: ImageFeatures, logits: torch.Tensor, class_names: list[str]) -> ClassificationResult:
    tally = ClassTally(len(class_names))
    tally.add(logits, features.labels)
    return summarise(tally, class_names)


def zero_shot_cell(cell: Cell, model, preprocess, precision: str, settings: SuiteSettings) -> CellResult:
    """Zero-shot accuracy on every image of the folder (CIFAR, wds: its test split), as zeroshot_eval.py scores it."""
    eval_set, features = domain_features(cell, model, preprocess, precision, settings,
                                         plan_splits(cell.dataset_type, cell.source, None).test_split)
    head = class_head(model, eval_set, settings, precision)
    result = scored(features, F.normalize(features.features, dim=-1) @ head, eval_set.class_names)
    return cell_result(cell, result, features, {"zeroshot": result})


def linear_probe_cell(cell: Cell, model, preprocess, precision: str, settings: SuiteSettings) -> CellResult:
    """Linear-probe accuracy (the regularisation chosen on a validation share of the training images) on the test
    split, or on a held-out share of the folder; the zero-shot per-class accuracy of the same test images too."""
    plan = plan_splits(cell.dataset_type, cell.source, None)
    eval_set, read = domain_features(cell, model, preprocess, precision, settings, plan.train_split)
    train, test = split_off_test(plan, read, lambda folder, split: domain_features(
        cell, model, preprocess, precision, settings, split)[1], settings.test_fraction, settings.split_seed)
    run = run_probe(train, test, eval_set.class_names, settings.test_fraction, settings.split_seed)
    result = run.result
    zero_shot = scored(test, F.normalize(test.features, dim=-1) @ class_head(model, eval_set, settings, precision),
                       eval_set.class_names)
    probe_result = cell_result(cell, result, read, {"linear_probe": result, "zeroshot": zero_shot})
    probe_result.metrics["regularisation"] = run.probe.regularisation
    return probe_result


def cell_result(cell: Cell, result: ClassificationResult, features: ImageFeatures,
                per_class_columns: dict[str, ClassificationResult]) -> CellResult:
    per_class = [{"class": score.name, **{column: scores.per_class[index].top1
                                          for column, scores in per_class_columns.items()}}
                 for index, score in enumerate(result.per_class)]
    overall = {column: scores.top1 for column, scores in per_class_columns.items()}
    return CellResult(cell, {"top1": result.top1, "top5": result.top5,
                             "mean_per_class_recall": result.mean_per_class_recall},
                      result.num_images, len(features.unreadable), result.num_nonfinite, per_class, overall)


def read_cell_captions(cell: Cell, settings: SuiteSettings) -> CaptionedImages:
    """The captioned images of a retrieval cell's caption set."""
    return read_caption_set(str(cell.source), None if cell.image_dir is None else str(cell.image_dir),
                            data_format=cell.dataset_type, image_key=settings.image_key,
                            caption_key=settings.caption_key, split=settings.karpathy_split)


def retrieval_cell(cell: Cell, model, preprocess, precision: str, settings: SuiteSettings) -> CellResult:
    """Image -> text and text -> image recall@K of every listed image with all of its captions, as
    retrieval_eval.py scores them; the headline is the mean of these recalls."""
    captioned = read_cell_captions(cell, settings)
    if not captioned.image_paths:
        raise UserError(f"none of the images of {cell.source} is in {cell.image_dir or cell.source.parent}")
    features, _, _ = cached_caption_image_features(
        model, captioned, preprocess, checkpoint=cell.checkpoint.path, name=cell.domain,
        cache_dir=settings.cache_dir / "features", device=settings.device, precision=precision,
        batch_size=settings.batch_size, num_workers=settings.num_workers, progress=False)
    if not len(features.labels):
        raise UserError(f"none of the {len(captioned.image_paths)} images of {cell.source} could be read")
    result = captioned_retrieval(features, captioned.captions, lambda texts: text_features(
        model, texts, settings.device, precision, batch_size=settings.batch_size, progress=False), settings.recall_k)
    metrics = {"mean_recall": sum(result.recalls.values()) / len(result.recalls), **result.recalls, **result.ranks,
               "num_captions": result.num_captions, "num_nonfinite_captions": result.num_nonfinite_captions,
               "num_missing_images": len(captioned.missing)}
    return CellResult(cell, metrics, result.num_images, len(features.unreadable), result.num_nonfinite_images)


COMPUTE = {"zeroshot": zero_shot_cell, "linear_probe": linear_probe_cell, "retrieval": retrieval_cell}


def write_cell(result: CellResult, path: Path) -> None:
    """Written whole or not at all: an interrupted write never leaves a half cell that a rerun would trust."""
    content = {key: value for key, value in asdict(result).items() if key not in ("cell", "from_cache")}
    write_text_atomically(path, json.dumps(content, indent=1) + "\n")


def read_cell(path: Path, cell: Cell) -> CellResult:
    content = json.loads(path.read_text(encoding="utf-8"))
    return CellResult(cell, **content, from_cache=True)


def print_cell(result: CellResult) -> None:
    """A computed cell's line on stderr (the progress bar's side), with its error or non-finite warning."""
    cell = result.cell
    where = f"{cell.checkpoint.label} · {cell.dataset}/{cell.domain} · {cell.task}"
    if result.error is not None:
        print(f"failed: {where}: {result.error}", file=sys.stderr)
    else:
        headline = HEADLINES[cell.task]
        print(f"{where}: {headline.name} {result.metrics[headline.metric]:.2f} % ({result.n_images} images)",
              file=sys.stderr)
        if result.num_nonfinite:
            print(f"WARNING: {where}: {result.num_nonfinite} of {result.n_images} images had non-finite scores",
                  file=sys.stderr)
