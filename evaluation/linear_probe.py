"""Linear probe: L2-regularised multinomial logistic regression on frozen features, the CLIP paper's protocol.

The objective is   mean cross-entropy + (lambda / 2) * ||W||^2   (the bias is not penalised), minimised with
full-batch L-BFGS on features standardised with the fitting set's mean and standard deviation, so one lambda grid
suits every model. lambda is chosen on a validation split carved from the training set: first one value per decade
from 1e-6 to 1e6 (the CLIP paper's range), then REFINE_STEPS_PER_DECADE values per decade on both sides of the best
one. The best validation accuracy wins; a tie goes to the larger lambda (the simpler model). The chosen lambda is
then refitted on train + validation and reported on the test set.
"""
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dataloader.eval.splits import stratified_split
from evaluation.features import ImageFeatures
from evaluation.metrics import ClassificationResult, ClassTally, summarise, true_class_rank
from utils.errors import UserError

COARSE_GRID = [10.0 ** exponent for exponent in range(-6, 7)]
REFINE_STEPS_PER_DECADE = 8


@dataclass(frozen=True)
class LinearProbe:
    weight: torch.Tensor  # [num_classes, D], acting on standardised features
    bias: torch.Tensor  # [num_classes]
    mean: torch.Tensor  # [D] standardisation fitted on the training features
    std: torch.Tensor  # [D]
    regularisation: float

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        standardised = (features.to(self.weight) - self.mean) / self.std
        return standardised @ self.weight.T + self.bias


def solver_dtype(device: torch.device) -> torch.dtype:
    # float64 on the CPU costs little and makes the fit exact to the tolerance; GPUs are slow in float64.
    return torch.float64 if device.type == "cpu" else torch.float32


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, regularisation: float,
                     warm_start: LinearProbe | None = None, max_iterations: int = 1000) -> LinearProbe:
    """Minimise mean cross-entropy + regularisation / 2 * ||W||^2 over (W, b) with L-BFGS."""
    dtype = solver_dtype(features.device)
    features = features.to(dtype)
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # a constant feature carries no information
    standardised = (features - mean) / std
    # Optimise scaled weights V = sqrt(1 + lambda) W: the penalty's curvature lambda then no longer dwarfs the
    # data term's, and L-BFGS converges in few steps for every lambda of the grid.
    scale = (1.0 + regularisation) ** 0.5
    scaled_weight = torch.zeros(num_classes, features.shape[1], dtype=dtype, device=features.device)
    bias = torch.zeros(num_classes, dtype=dtype, device=features.device)
    if warm_start is not None:
        scaled_weight.copy_(warm_start.weight * scale)
        bias.copy_(warm_start.bias)
    scaled_weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimiser = torch.optim.LBFGS([scaled_weight, bias], lr=1, max_iter=max_iterations, tolerance_grad=1e-7,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def objective():
        optimiser.zero_grad()
        weight = scaled_weight / scale
        loss = F.cross_entropy(standardised @ weight.T + bias, labels) + 0.5 * regularisation * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(objective)
    weight = scaled_weight.detach() / scale
    return LinearProbe(weight, bias.detach(), mean, std, regularisation)


def accuracy(probe: LinearProbe, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 as evaluation.metrics counts it: argmax would call an all-NaN row a hit for class 0."""
    return (true_class_rank(probe.logits(features), labels.to(probe.weight.device)) < 1).double().mean().item()


@dataclass(frozen=True)
class SweepResult:
    regularisation: float  # the chosen lambda
    validation_accuracy: float  # its accuracy on the validation split (fraction)
    history: list[tuple[float, float]]  # (lambda, validation accuracy) in the order they were fitted


def refined_grid(best: float) -> list[float]:
    """REFINE_STEPS_PER_DECADE values per decade within one decade of `best`, `best` itself excluded."""
    steps = range(-REFINE_STEPS_PER_DECADE + 1, REFINE_STEPS_PER_DECADE)
    return [best * 10.0 ** (step / REFINE_STEPS_PER_DECADE) for step in steps if step != 0]


def best_of(history: list[tuple[float, float]]) -> tuple[float, float]:
    """Highest validation accuracy; on a tie the larger lambda."""
    return max(history, key=lambda entry: (entry[1], entry[0]))


def sweep_regularisation(train_features: torch.Tensor, train_labels: torch.Tensor, val_features: torch.Tensor,
                         val_labels: torch.Tensor, num_classes: int) -> SweepResult:
    history = []
    previous = None

    def evaluate(grid: list[float]) -> None:
        nonlocal previous
        # From strong to weak regularisation, each fit starting from the last: the weights grow gradually.
        for regularisation in sorted(grid, reverse=True):
            previous = fit_linear_probe(train_features, train_labels, num_classes, regularisation, previous)
            history.append((regularisation, accuracy(previous, val_features, val_labels)))

    evaluate(COARSE_GRID)
    coarse_best, _ = best_of(history)
    previous = None
    evaluate(refined_grid(coarse_best))
    chosen, chosen_accuracy = best_of(history)
    return SweepResult(chosen, chosen_accuracy, history)


@dataclass(frozen=True)
class ProbeRun:
    probe: LinearProbe
    result: ClassificationResult  # on the test features
    sweep: SweepResult | None  # None: the regularisation was given
    fit_seconds: float  # the sweep and the final fit


def run_probe(train: ImageFeatures, test: ImageFeatures, class_names: list[str], validation_fraction: float,
              split_seed: int, regularisation: float | None = None) -> ProbeRun:
    """The CLIP paper's protocol: lambda chosen on a seeded stratified validation share of the training features
    (unless given), refitted on all of them, scored on the test features."""
    start, sweep, num_classes = time.perf_counter(), None, len(class_names)
    if regularisation is None:
        fit, validation = stratified_split(train.labels, validation_fraction, split_seed)
        if not len(validation) or not len(test.labels):
            raise UserError("too few images per class for a linear probe's train, validation and test shares (at "
                            "least three per class)")
        sweep = sweep_regularisation(train.features[fit], train.labels[fit], train.features[validation],
                                     train.labels[validation], num_classes)
        regularisation = sweep.regularisation
    probe = fit_linear_probe(train.features, train.labels, num_classes, regularisation)
    fit_seconds = time.perf_counter() - start
    tally = ClassTally(num_classes)
    tally.add(probe.logits(test.features), test.labels)
    return ProbeRun(probe, summarise(tally, class_names), sweep, fit_seconds)
