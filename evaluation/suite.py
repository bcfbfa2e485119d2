"""The reference tables' product: checkpoints x datasets (each a row of domains) x tasks, one cell at a time.

The cells are planned in evaluation.suite_plan; each is read from the cell cache (evaluation.suite_cache) or
computed here. A cell that fails (a missing folder, no readable image, a checkpoint that does not load) carries its
one-line error; the others still run.
"""
import sys
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from dataloader.eval.splits import plan_splits
from evaluation.feature_sets import read_set_features, split_off_test
from evaluation.features import ImageFeatures
from evaluation.inference_model import load_for_inference
from evaluation.linear_probe import run_probe
from evaluation.metrics import ClassificationResult, ClassTally, summarise
from evaluation.retrieval import cached_caption_image_features, captioned_retrieval, text_features
from evaluation.suite_cache import cell_cache_file, read_cell, write_cell
from evaluation.suite_plan import HEADLINES, Cell, CellResult, Checkpoint, SuiteSettings, read_cell_captions
from evaluation.template_sets import load_templates
from evaluation.zeroshot import zero_shot_head
from utils.errors import UserError


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
