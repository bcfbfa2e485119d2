"""Frozen features: batched extraction, and a cache read back on the second run without calling the model."""
import os
from typing import NamedTuple

import torch

from evaluation.features import cached_image_features, extract_image_features, feature_cache_file


class UnreadableImage(NamedTuple):
    path: str
    reason: str


class Batch(NamedTuple):
    images: torch.Tensor
    labels: torch.Tensor
    unreadable: list


class CountingEncoder:
    """Stands in for a CLIP model: image features are the per-channel means, and every call is counted."""

    def __init__(self):
        self.calls = 0

    def encode_image(self, images):
        self.calls += 1
        return images.mean(dim=(2, 3))


def batches():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(10, 3, 4, 4, generator=generator)
    labels = torch.arange(10) % 3
    return [Batch(images[:4], labels[:4], []),
            Batch(images[4:8], labels[4:8], [UnreadableImage("broken.jpg", "truncated")]),
            Batch(images[8:], labels[8:], [])], images, labels


def test_features_are_extracted_in_batches_and_unreadable_images_listed():
    model = CountingEncoder()
    loader, images, labels = batches()
    result = extract_image_features(model, loader, "cpu", progress=False)
    assert model.calls == 3
    torch.testing.assert_close(result.features, images.mean(dim=(2, 3)))
    assert torch.equal(result.labels, labels)
    assert result.unreadable == ["broken.jpg"]


def test_second_run_reads_the_cache_without_calling_the_model(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    dataset = {"type": "folder", "root": str(tmp_path / "images"), "split": "train"}
    preprocessing = {"image_size": 4, "mean": [0.5] * 3, "std": [0.2] * 3}
    cache_file = feature_cache_file(tmp_path / "cache", "pets-train", checkpoint, dataset, preprocessing)

    model = CountingEncoder()
    loader, _, _ = batches()
    first, from_cache = cached_image_features(cache_file, lambda: extract_image_features(model, loader, "cpu",
                                                                                        progress=False))
    assert not from_cache and model.calls == 3 and cache_file.is_file()
    second, from_cache = cached_image_features(cache_file, lambda: extract_image_features(model, loader, "cpu",
                                                                                         progress=False))
    assert from_cache and model.calls == 3
    assert torch.equal(first.features, second.features) and torch.equal(first.labels, second.labels)
    assert second.unreadable == ["broken.jpg"]


def test_cache_key_changes_with_weights_split_and_preprocessing(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    dataset = {"type": "cifar", "root": "data", "split": "train"}
    preprocessing = {"image_size": 32}
    name = feature_cache_file(tmp_path, "x", checkpoint, dataset, preprocessing)
    assert name == feature_cache_file(tmp_path, "x", checkpoint, dict(dataset), dict(preprocessing))
    assert name != feature_cache_file(tmp_path, "x", checkpoint, {**dataset, "split": "test"}, preprocessing)
    assert name != feature_cache_file(tmp_path, "x", checkpoint, dataset, {"image_size": 64})
    checkpoint.write_bytes(b"new weights")  # a training run overwrote the file
    assert name != feature_cache_file(tmp_path, "x", checkpoint, dataset, preprocessing)


def test_a_config_name_with_random_weights_is_never_cached(tmp_path):
    assert feature_cache_file(tmp_path, "x", "RN50", {}, {}) is None
    model = CountingEncoder()
    loader, _, _ = batches()
    for _ in range(2):
        cached_image_features(None, lambda: extract_image_features(model, loader, "cpu", progress=False))
    assert model.calls == 6 and not os.listdir(tmp_path)
