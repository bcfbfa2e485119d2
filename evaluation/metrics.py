"""Classification accuracy: overall top-1/top-5, per class, and mean per-class recall.

Ties count against the prediction: the true class is in the top k only if fewer than k other classes score at
least as high. So a model that gives every class the same score scores 0, not 1/num_classes by luck of label order.
"""
from dataclasses import dataclass

import torch


def true_class_rank(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """For each row, how many other classes score at least as high as the true class (0 = a clear top-1)."""
    true_scores = logits.gather(1, labels[:, None])
    return (logits >= true_scores).sum(dim=1) - 1


class ClassTally:
    """Running per-class counts of images and of top-1 / top-5 hits."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.images = torch.zeros(num_classes, dtype=torch.long)
        self.top1_hits = torch.zeros(num_classes, dtype=torch.long)
        self.top5_hits = torch.zeros(num_classes, dtype=torch.long)

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits, labels = logits.float().cpu(), labels.cpu()
        rank = true_class_rank(logits, labels)
        self.images += torch.bincount(labels, minlength=self.num_classes)
        self.top1_hits += torch.bincount(labels[rank < 1], minlength=self.num_classes)
        self.top5_hits += torch.bincount(labels[rank < 5], minlength=self.num_classes)

    def summed_over(self, sum_over_ranks) -> "ClassTally":
        """This tally with every rank's counts added (evaluation.shard.Shard.sum), in one collective."""
        counts = sum_over_ranks(torch.stack([self.images, self.top1_hits, self.top5_hits]))
        total = ClassTally(self.num_classes)
        total.images, total.top1_hits, total.top5_hits = counts.clone()
        return total


@dataclass(frozen=True)
class ClassScore:
    name: str
    images: int
    top1: float | None  # percent; None for a class without images
    top5: float | None


@dataclass(frozen=True)
class ClassificationResult:
    top1: float  # percent of all images
    top5: float
    mean_per_class_recall: float  # mean over the classes that have images of their top-1 percent
    num_images: int
    per_class: list[ClassScore]


def summarise(tally: ClassTally, class_names: list[str]) -> ClassificationResult:
    total = int(tally.images.sum())
    if total == 0:
        raise ValueError("no images were scored")
    per_class = [
        ClassScore(name, int(count), percent(top1, count), percent(top5, count))
        for name, count, top1, top5 in zip(class_names, tally.images, tally.top1_hits, tally.top5_hits)
    ]
    recalls = [score.top1 for score in per_class if score.top1 is not None]
    return ClassificationResult(
        top1=percent(tally.top1_hits.sum(), total),
        top5=percent(tally.top5_hits.sum(), total),
        mean_per_class_recall=sum(recalls) / len(recalls),
        num_images=total,
        per_class=per_class,
    )


def percent(hits: torch.Tensor | int, count: torch.Tensor | int) -> float | None:
    return 100.0 * int(hits) / int(count) if int(count) else None
