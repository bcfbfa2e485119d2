"""Frozen image features: extracted once in batches, cached on disk, and read back from the cache on every rerun.

A cache file is named by a hash of everything that decides its content: the checkpoint file (path, size and
modification time), the dataset (type, folder, split) and the preprocessing. Change any of them and the name
changes, so a stale file is never read. A model given by config name has random weights that differ on every
load: its features are never cached.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm import tqdm

from utils.checkpoint import load_checkpoint, save_checkpoint_atomic
from utils.precision import autocast
from utils.tokenizer import tokenize


@dataclass(frozen=True)
class ImageFeatures:
    features: torch.Tensor  # [N, D] fp32 on the CPU, as encode_image returns them (not normalised)
    labels: torch.Tensor  # [N] long
    unreadable: list[str]  # images that could not be read, left out of `features`

    def subset(self, indices: torch.Tensor) -> "ImageFeatures":
        return ImageFeatures(self.features[indices], self.labels[indices], [])


@torch.no_grad()  # not inference_mode: the features go on to train a probe, and inference tensors cannot
def extract_image_features(model, batches: Iterable, device: torch.device | str, precision: str = "fp32",
                           progress: bool = True) -> ImageFeatures:
    """Encode every batch (anything with .images, .labels and .unreadable, e.g. dataloader.eval.eval_datasets.Batch)."""
    features, labels, unreadable = [], [], []
    for batch in tqdm(batches, desc="image features", unit="batch", disable=not progress):
        unreadable += [image.path for image in batch.unreadable]
        if not len(batch.labels):
            continue
        with autocast(device, precision):
            encoded = model.encode_image(batch.images.to(device, non_blocking=True))
        features.append(encoded.float().cpu())
        labels.append(batch.labels.cpu())
    if not features:
        return ImageFeatures(torch.empty(0, 0), torch.empty(0, dtype=torch.long), unreadable)
    return ImageFeatures(torch.cat(features), torch.cat(labels), unreadable)


def checkpoint_identity(checkpoint: str | Path) -> dict | None:
    """What identifies a checkpoint file's weights without reading it all; None for a config name."""
    path = Path(checkpoint)
    if not path.is_file():
        return None
    status = path.stat()
    return {"path": str(path.resolve()), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def feature_cache_file(cache_dir: str | Path, name: str, checkpoint: str | Path, dataset: dict,
                       preprocessing: dict) -> Path | None:
    """<cache_dir>/<name>-<hash>.pt for these weights, images and preprocessing; None when not cacheable."""
    identity = checkpoint_identity(checkpoint)
    if identity is None:
        return None
    key = json.dumps({"checkpoint": identity, "dataset": dataset, "preprocessing": preprocessing}, sort_keys=True)
    return Path(cache_dir) / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def cached_image_features(cache_file: Path | None, compute: Callable[[], ImageFeatures]) -> tuple[ImageFeatures, bool]:
    """(features, whether they came from the cache): read `cache_file` if it exists, else compute and write it."""
    if cache_file is not None and cache_file.is_file():
        stored = load_checkpoint(cache_file)
        return ImageFeatures(stored["features"], stored["labels"], list(stored["unreadable"])), True
    result = compute()
    if cache_file is not None:
        save_checkpoint_atomic({"features": result.features, "labels": result.labels,
                                "unreadable": result.unreadable}, cache_file)
    return result, False


@torch.no_grad()
def extract_text_features(model, texts: list[str], device: torch.device | str, precision: str = "fp32",
                          batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """[len(texts), D] fp32 on the CPU, as encode_text returns them (not normalised)."""
    features = []
    for start in tqdm(range(0, len(texts), batch_size), desc="text features", unit="batch", disable=not progress):
        tokens = tokenize(texts[start:start + batch_size], context_length=model.config.context_length)
        with autocast(device, precision):
            features.append(model.encode_text(tokens.to(device)).float().cpu())
    return torch.cat(features) if features else torch.empty(0, 0)
