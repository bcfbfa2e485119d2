"""Image features of a whole evaluation set (any reader's), through the feature cache: what linear_probe.py,
eval_suite.py and extract_features.py read their images with."""
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from dataloader.eval.eval_datasets import (IMAGE_SUFFIXES, SPLITS, EvalSet, ImageFiles, collate_readable, image_files,
                                           read_eval_set)
from dataloader.eval.splits import SplitPlan, stratified_split
from evaluation.feature_export import readable_paths
from evaluation.features import (ImageFeatures, cached_image_features, extract_image_features, extract_text_features,
                                 feature_cache_file)
from evaluation.report import warn_unreadable
from utils.errors import UserError


@dataclass(frozen=True)
class CachedFeatures:
    features: ImageFeatures
    cache_file: Path | None  # None: not cacheable (a model given by config name has random weights)
    from_cache: bool

    def describe(self) -> str:
        if self.from_cache:
            return f"features read from {self.cache_file}"
        return "features extracted" + (f" (written to {self.cache_file})" if self.cache_file else "")


def eval_set_features(model, eval_set: EvalSet, *, checkpoint: str, dataset_type: str, data_dir: str | Path,
                      split: str | None, device: torch.device, precision: str, batch_size: int, num_workers: int,
                      cache_dir: str | Path, progress: bool = True) -> CachedFeatures:
    """The features of every readable image of `eval_set` (read from `data_dir`, `split`), from the cache when
    these weights have seen these images with this preprocessing and precision."""
    dataset_key = {"type": dataset_type, "root": str(Path(data_dir).resolve()), "dataset": eval_set.name,
                   "split": split, "images": len(eval_set.dataset)}
    preprocessing = {"image_size": model.config.image_size, "mean": list(model.config.image_mean),
                     "std": list(model.config.image_std), "precision": precision}
    cache_file = feature_cache_file(cache_dir, f"{eval_set.name}-{split or Path(data_dir).name}", checkpoint,
                                    dataset_key, preprocessing)

    def compute() -> ImageFeatures:
        loader = DataLoader(eval_set.dataset, batch_size=batch_size, num_workers=num_workers,
                            collate_fn=collate_readable, pin_memory=device.type == "cuda")
        return extract_image_features(model, loader, device, precision, progress)

    features, from_cache = cached_image_features(cache_file, compute)
    return CachedFeatures(features, cache_file, from_cache)


def read_set_features(model, preprocess, dataset_type: str, data_dir: str | Path, split: str | None, *,
                      checkpoint: str, device: torch.device, precision: str, batch_size: int, num_workers: int,
                      cache_dir: str | Path, dataset_name: str | None = None, class_names_file: str | None = None,
                      progress: bool = True) -> tuple[EvalSet, CachedFeatures]:
    """(EvalSet, its features) of one folder or `split` (default: a several-split set's test split); an error
    when no image could be read."""
    split = split or ("test" if dataset_type in SPLITS else None)
    eval_set = read_eval_set(dataset_type, data_dir, preprocess, dataset_name=dataset_name,
                             min_side=model.config.image_size, class_names_file=class_names_file, split=split)
    cached = eval_set_features(model, eval_set, checkpoint=checkpoint, dataset_type=dataset_type, data_dir=data_dir,
                               split=split, device=device, precision=precision, batch_size=batch_size,
                               num_workers=num_workers, cache_dir=cache_dir, progress=progress)
    require_readable(cached.features, len(eval_set.dataset), data_dir)
    return eval_set, cached


def require_readable(features: ImageFeatures, images: int, where) -> None:
    """One line when none of the `images` images in `where` could be read: there is nothing to score."""
    if not len(features.labels):
        raise UserError(f"none of the {images} images in {where} could be read")


def split_off_test(plan: SplitPlan, train: ImageFeatures, read_test, test_fraction: float,
                   split_seed: int) -> tuple[ImageFeatures, ImageFeatures]:
    """(train, test): `read_test(folder, split)` of the plan's test folder or split, or else a seeded stratified
    `test_fraction` of each class of the training features held out."""
    if not plan.held_out:
        return train, read_test(plan.test_dir, plan.test_split)
    kept, held_out = stratified_split(train.labels, test_fraction, split_seed)
    return train.subset(kept), train.subset(held_out)


def folder_image_features(model, preprocess, img_dir: str, *, device: torch.device, precision: str,
                          batch_size: int, num_workers: int) -> tuple[ImageFeatures, list[str]]:
    """(features of every readable image under `img_dir`, unlabelled: labels are positions in the paths; the
    image paths, sorted, unreadable ones included)."""
    folder = Path(img_dir)
    if not folder.is_dir():
        raise UserError(f"image folder not found: {folder}")
    paths = image_files(folder)
    if not paths:
        raise UserError(f"{folder}: no image files (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
    loader = DataLoader(ImageFiles(paths, list(range(len(paths))), preprocess, model.config.image_size),
                        batch_size=batch_size, num_workers=num_workers, collate_fn=collate_readable,
                        pin_memory=device.type == "cuda")
    features = extract_image_features(model, loader, device, precision)
    require_readable(features, len(paths), folder)
    return features, [str(path) for path in paths]


def own_data_features(model, preprocess, img_dir: str | None, texts: list[str] | None, *, device: torch.device,
                      precision: str, batch_size: int,
                      num_workers: int) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """(tensors, strings) to export for an unlabelled image folder and/or captions: image_features with their
    paths (unreadable images skipped and reported), text_features with their captions."""
    tensors, strings = {}, {}
    if img_dir is not None:
        features, paths = folder_image_features(model, preprocess, img_dir, device=device, precision=precision,
                                                batch_size=batch_size, num_workers=num_workers)
        warn_unreadable(features.unreadable)
        tensors["image_features"], strings["paths"] = features.features, readable_paths(paths, features.unreadable)
    if texts is not None:
        if not texts:
            raise UserError("the captions file holds no caption")
        tensors["text_features"] = extract_text_features(model, texts, device, precision, batch_size)
        strings["captions"] = texts
    return tensors, strings
