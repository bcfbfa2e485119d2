"""Linear probe: separable features reach 100%, and the lambda sweep picks what an independent solver predicts."""
import numpy as np
import pytest
import torch

from dataloader.eval.splits import stratified_split
from evaluation.linear_probe import COARSE_GRID, accuracy, best_of, fit_linear_probe, refined_grid, sweep_regularisation


def clustered_features(num_classes, per_class, dim, seed, spread=0.3):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(0)) * 3
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=generator), labels


def test_separable_features_reach_100_percent_on_test():
    train_x, train_y = clustered_features(6, 20, 12, seed=1)
    test_x, test_y = clustered_features(6, 15, 12, seed=2)
    kept, held_out = stratified_split(train_y, 0.25, seed=0)
    sweep = sweep_regularisation(train_x[kept], train_y[kept], train_x[held_out], train_y[held_out], 6)
    assert sweep.validation_accuracy == 1.0
    probe = fit_linear_probe(train_x, train_y, 6, sweep.regularisation)
    assert accuracy(probe, test_x, test_y) == 1.0


def test_strong_regularisation_predicts_the_majority_class():
    # lambda -> infinity leaves only the unpenalised bias: every sample goes to the most frequent class.
    train_x, train_y = clustered_features(3, 10, 4, seed=3)
    train_x, train_y = train_x[5:], train_y[5:]  # class 0 now has 5 samples, classes 1 and 2 have 10
    probe = fit_linear_probe(train_x, train_y, 3, 1e9)
    predictions = probe.logits(train_x).argmax(dim=1)
    assert set(predictions.tolist()) <= {1, 2}


# A 1-D, two-class problem whose validation accuracy peaks for a window of lambda inside the grid: the decision
# threshold moves from the data towards the minority side as lambda grows. Class 0 at 2.2 needs a threshold above
# it (lambda large enough); class 1 at 3.0 and at 25 need it below them (lambda small enough).
TRAIN_CLASS0 = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 1.2, 1.5, 1.8, 2.4]
TRAIN_CLASS1 = [1.6, 2.2, 2.8, 3.4]
VALIDATION = [(0.5, 0), (2.2, 0), (3.0, 1), (25.0, 1)]


def hand_threshold(regularisation):
    """Newton's method on the binary form of the same objective. Two-class softmax with weights w1, w0 depends on
    w = w1 - w0 only, and ||W||^2 is smallest at w1 = -w0 = w/2: mean log(1 + exp(-t (w z + b))) + lambda/4 w^2,
    z the standardised feature. Returns the threshold on the raw feature above which class 1 is predicted."""
    x = np.array(TRAIN_CLASS0 + TRAIN_CLASS1)
    t = np.array([-1.0] * len(TRAIN_CLASS0) + [1.0] * len(TRAIN_CLASS1))
    mean, std = x.mean(), x.std()
    z = (x - mean) / std
    w = b = 0.0
    for _ in range(200):
        p = 1 / (1 + np.exp(t * (w * z + b)))
        gradient = [np.mean(-t * z * p) + regularisation / 2 * w, np.mean(-t * p)]
        h = p * (1 - p)
        hessian = [[np.mean(h * z * z) + regularisation / 2, np.mean(h * z)], [np.mean(h * z), np.mean(h)]]
        w, b = np.array([w, b]) - np.linalg.solve(hessian, gradient)
    return mean - b / w * std


def hand_validation_accuracy(regularisation):
    threshold = hand_threshold(regularisation)
    assert all(abs(threshold - x) > 1e-3 for x, _ in VALIDATION), "the fixture puts a point on the threshold"
    return sum((x > threshold) == bool(label) for x, label in VALIDATION) / len(VALIDATION)


def test_sweep_picks_the_lambda_a_hand_computation_expects():
    to_tensor = lambda values: torch.tensor(values, dtype=torch.float64)[:, None]  # noqa: E731
    train_x = to_tensor(TRAIN_CLASS0 + TRAIN_CLASS1)
    train_y = torch.tensor([0] * len(TRAIN_CLASS0) + [1] * len(TRAIN_CLASS1))
    val_x = to_tensor([x for x, _ in VALIDATION])
    val_y = torch.tensor([label for _, label in VALIDATION])
    sweep = sweep_regularisation(train_x, train_y, val_x, val_y, 2)

    # The procedure by hand: the coarse decades, then the refinement around the best of them.
    coarse = [(value, hand_validation_accuracy(value)) for value in COARSE_GRID]
    refined = [(value, hand_validation_accuracy(value)) for value in refined_grid(best_of(coarse)[0])]
    expected, expected_accuracy = best_of(coarse + refined)
    fitted, by_hand = sorted(sweep.history), sorted(coarse + refined)
    assert [value for value, _ in fitted] == pytest.approx([value for value, _ in by_hand])
    assert [score for _, score in fitted] == [score for _, score in by_hand]
    assert sweep.regularisation == pytest.approx(expected)
    assert sweep.validation_accuracy == expected_accuracy == 1.0
    # The fixture does what it claims: both ends of the grid are worse, and refinement moved the choice.
    assert coarse[0][1] < 1.0 and coarse[-1][1] < 1.0
    assert expected not in COARSE_GRID


def test_stratified_split_is_seeded_disjoint_and_per_class():
    labels = torch.tensor([0] * 10 + [1] * 4 + [2] * 2)
    kept, held_out = stratified_split(labels, 0.25, seed=7)
    again = stratified_split(labels, 0.25, seed=7)
    assert torch.equal(kept, again[0]) and torch.equal(held_out, again[1])
    assert sorted(kept.tolist() + held_out.tolist()) == list(range(16))
    assert torch.bincount(labels[held_out]).tolist() == [2, 1, 1]
    other_seed = stratified_split(labels, 0.25, seed=8)[1]
    assert not torch.equal(held_out, other_seed)


def test_validation_accuracy_of_nan_features_is_zero_not_a_lucky_class_0():
    features, labels = torch.randn(6, 4), torch.tensor([0, 0, 1, 1, 2, 2])
    probe = fit_linear_probe(features, labels, 3, regularisation=1.0)
    assert accuracy(probe, torch.full((6, 4), float("nan")), torch.zeros(6, dtype=torch.long)) == 0.0
