"""Train/test splits of a labelled set: the held-out share of every class, and where test images come from."""
from dataclasses import dataclass
from pathlib import Path

import torch

from dataloader.eval.eval_datasets import SPLITS


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept indices, held-out indices): from every class round(fraction * count) samples, at least one when
    the class has two or more, drawn with `seed`. Both sorted."""
    generator = torch.Generator().manual_seed(seed)
    kept, held_out = [], []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = round(fraction * len(members))
        count = min(max(count, 1), len(members) - 1) if len(members) > 1 else 0
        held_out.append(members[:count])
        kept.append(members[count:])
    return torch.cat(kept).sort().values, torch.cat(held_out).sort().values


@dataclass(frozen=True)
class SplitPlan:
    """Where a probe's or a fine-tuning's test images come from, given its training folder."""
    train_split: str | None  # the split of the training folder to train on (CIFAR: "train"), None: the whole folder
    test_dir: Path  # the folder to read test images from
    test_split: str | None  # its split (CIFAR: "test")
    held_out: bool  # the test images are a stratified share of the training images (stratified_split)


def plan_splits(dataset_type: str, data_dir: str | Path, test_dir: str | Path | None) -> SplitPlan:
    """The test folder when given, else the folder's own test split (CIFAR), else a held-out share of it."""
    has_splits = dataset_type in SPLITS
    train_split = "train" if has_splits else None
    if test_dir:
        return SplitPlan(train_split, Path(test_dir), None, False)
    if has_splits:
        return SplitPlan(train_split, Path(data_dir), "test", False)
    return SplitPlan(None, Path(data_dir), None, True)


def spread_over_classes(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Up to `count` indices drawn with `seed`, taking classes in turn (one image of each class, then a second of
    each ...), so that a few examples show as many classes as they can. Sorted by class, then index."""
    generator = torch.Generator().manual_seed(seed)
    queues = [members[torch.randperm(len(members), generator=generator)].tolist()
              for members in (torch.nonzero(labels == label).flatten() for label in torch.unique(labels))]
    chosen = []
    for turn in range(max(map(len, queues), default=0)):
        chosen += [queue[turn] for queue in queues if turn < len(queue)]
    chosen = chosen[:count]
    return torch.tensor(sorted(chosen, key=lambda index: (int(labels[index]), index)), dtype=torch.long)
