"""k-shot sampling: K distinct images of every class, the same draw for the same seed."""
import pytest
import torch

from evaluation.k_shot import KShotResult, run_k_shot, sample_k_per_class
from utils.errors import UserError

LABELS = torch.tensor([0] * 7 + [1] * 5 + [2] * 9)[torch.randperm(21, generator=torch.Generator().manual_seed(3))]


@pytest.mark.parametrize("k", [1, 2, 4, 5])
def test_draw_takes_k_distinct_images_of_every_class(k):
    chosen = sample_k_per_class(LABELS, k, seed=11)
    assert len(set(chosen.tolist())) == len(chosen) == 3 * k
    assert torch.bincount(LABELS[chosen]).tolist() == [k, k, k]


def test_draw_is_deterministic_in_the_seed():
    draws = {seed: sample_k_per_class(LABELS, 3, seed) for seed in range(5)}
    assert all(torch.equal(draws[seed], sample_k_per_class(LABELS, 3, seed)) for seed in draws)
    assert len({tuple(draw.tolist()) for draw in draws.values()}) > 1


def test_class_with_fewer_than_k_images_is_an_error_naming_it():
    with pytest.raises(UserError, match=r"class 'dog' has 5 training image\(s\), fewer than k=6"):
        sample_k_per_class(LABELS, 6, seed=0, class_names=["cat", "dog", "bird"])


def test_mean_and_sample_std_over_seeds():
    result = KShotResult(k=4, accuracies=[50.0, 60.0, 70.0], seeds=[0, 1, 2])
    assert result.mean == pytest.approx(60.0)
    assert result.std == pytest.approx(10.0)  # sqrt((100 + 0 + 100) / 2)
    assert KShotResult(1, [42.0], [0]).std == 0.0


def test_k_shot_probes_on_separable_features_reach_100_percent():
    centres = torch.eye(3) * 4
    train_labels, test_labels = torch.arange(3).repeat(6), torch.arange(3).repeat(4)
    noise = torch.randn(30, 3, generator=torch.Generator().manual_seed(0)) * 0.2
    results = run_k_shot(centres[train_labels] + noise[:18], train_labels, centres[test_labels] + noise[18:],
                         test_labels, 3, ks=[1, 4], seeds=[0, 1], regularisation=1e-3)
    assert [(r.k, r.accuracies) for r in results] == [(1, [100.0, 100.0]), (4, [100.0, 100.0])]
