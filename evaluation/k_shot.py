"""k-shot linear probes: K training images per class, drawn with a seed, over several seeds."""
import statistics
from dataclasses import dataclass

import torch

from evaluation.linear_probe import accuracy, fit_linear_probe
from utils.errors import UserError


def sample_k_per_class(labels: torch.Tensor, k: int, seed: int, class_names: list[str] | None = None) -> torch.Tensor:
    """Sorted indices of K distinct samples of every class present in `labels`, the same for the same seed.
    A class with fewer than K samples is an error: taking all of them would silently make the probe not K-shot."""
    if k < 1:
        raise UserError(f"k-shot K must be at least 1, got {k}")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        if len(members) < k:
            name = class_names[label] if class_names else f"label {label}"
            raise UserError(f"class '{name}' has {len(members)} training image(s), fewer than k={k}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.cat(chosen).sort().values


@dataclass(frozen=True)
class KShotResult:
    k: int
    accuracies: list[float]  # percent, one per seed, in seed order
    seeds: list[int]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


def run_k_shot(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
               test_labels: torch.Tensor, num_classes: int, ks: list[int], seeds: list[int], regularisation: float,
               class_names: list[str] | None = None) -> list[KShotResult]:
    """Top-1 test accuracy of a probe fitted on K images per class, for every K and seed."""
    results = []
    for k in ks:
        accuracies = []
        for seed in seeds:
            chosen = sample_k_per_class(train_labels, k, seed, class_names)
            probe = fit_linear_probe(train_features[chosen], train_labels[chosen], num_classes, regularisation)
            accuracies.append(100.0 * accuracy(probe, test_features, test_labels))
        results.append(KShotResult(k, accuracies, list(seeds)))
    return results
