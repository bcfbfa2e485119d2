"""Classification accuracy: overall top-1/top-5, per class, and mean per-class recall.

Ties count against the prediction: the true class is in the top k only if fewer than k other classes score at
least as high. So a model that gives every class the same score scores 0, not 1/num_classes by luck of label order.
Scores that cannot be compared count against it too: a non-finite score of the true class is a miss at every k,
and a NaN score of another class counts as at least as high. A broken model scores 0, never 100%.
"""
from dataclasses import dataclass

import torch

NOT_RANKED = torch.iinfo(torch.long).max  # the rank of an item whose own score is not finite: beyond every k


def true_class_rank(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """For each row, how many other classes score at least as high as the true class (0 = a clear top-1);
    NOT_RANKED when the true class's score is not finite."""
    true_scores = logits.gather(1, labels[:, None])
    # `not below` rather than `>=`: a NaN compares False both ways, and must not make the true class look best
    rank = (~(logits < true_scores)).sum(dim=1) - 1
    return torch.where(torch.isfinite(true_scores[:, 0]), rank, NOT_RANKED)


def nonfinite_rows(values: torch.Tensor) -> int:
    """How many rows (images, captions) hold a NaN or infinite value."""
    return int((~torch.isfinite(values)).flatten(1).any(dim=1).sum()) if values.numel() else 0


class ClassTally:
    """Running per-class counts of images and of top-1 / top-5 hits."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.images = torch.zeros(num_classes, dtype=torch.long)
        self.top1_hits = torch.zeros(num_classes, dtype=torch.long)
        self.top5_hits = torch.zeros(num_classes, dtype=torch.long)
        self.nonfinite = torch.zeros(1, dtype=torch.long)  # images whose scores hold a NaN or an infinity

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits, labels = logits.float().cpu(), labels.cpu()
        rank = true_class_rank(logits, labels)
        self.images += torch.bincount(labels, minlength=self.num_classes)
        self.top1_hits += torch.bincount(labels[rank < 1], minlength=self.num_classes)
        self.top5_hits += torch.bincount(labels[rank < 5], minlength=self.num_classes)
        self.nonfinite += nonfinite_rows(logits)

    def summed_over(self, sum_over_ranks) -> "ClassTally":
        """This tally with every rank's counts added (evaluation.shard.Shard.sum), in one collective."""
        counts = sum_over_ranks(torch.cat([self.images, self.top1_hits, self.top5_hits, self.nonfinite]))
        total = ClassTally(self.num_classes)
        total.images, total.top1_hits, total.top5_hits, total.nonfinite = counts.clone().split(
            [self.num_classes] * 3 + [1])
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
    num_nonfinite: int = 0  # images whose scores were NaN or infinite (a broken model or features): each a miss


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
        num_nonfinite=int(tally.nonfinite),
    )


def percent(hits: torch.Tensor | int, count: torch.Tensor | int) -> float | None:
    return 100.0 * int(hits) / int(count) if int(count) else None
