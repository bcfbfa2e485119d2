"""Small training sets decoded once into memory give exactly the samples read from disk, augmented or not (a
flipped caption's swapped sides tokenized on the fly), and large ones are refused before anything is decoded."""
import copy
import dataclasses

import pytest
import torch

import dataloader.train.memory_cache as memory_cache
from dataloader.coco import read_coco_captions
from dataloader.train.caption_sides import swap_sides
from dataloader.train.sampler import sample_rng
from dataloader.train.synthetic import SyntheticDataConfig, write_train_set
from dataloader.train.train_loader import CaptionedImageDataset
from dataloader.train.transforms import TrainImageTransform
from utils.tokenizer import tokenize

IMAGE_SIZE, CONTEXT = 16, 16  # the 32 px images decode larger than the 23 px the crop needs
EVERY_AUGMENTATION = {"max_aspect": 1.5, "flip_probability": 0.5, "color_jitter": 0.4}
SIDED, UNSIDED = "a dog on the left of a man", "a dog beside a man"


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    config = SyntheticDataConfig(root=str(tmp_path_factory.mktemp("coco")), train_images=20, image_size=32)
    write_train_set(config)
    (config.train_img_dir / "000003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return read_coco_captions(config.train_annotation_file, config.train_img_dir)


@pytest.fixture(scope="module")
def sided(captioned):
    """The captioned images, every other caption naming a side."""
    captions = [[f"{caption} on the {'left' if k % 2 else 'Right'}" for k, caption in enumerate(image_captions)]
                for image_captions in captioned.captions]
    return dataclasses.replace(captioned, captions=captions)


def dataset(captioned, memory_cache_mb, strict=False, all_captions=False, sided_captions="swap", captions_per_image=1,
            **augmentation):
    transform = TrainImageTransform(IMAGE_SIZE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "random", 0.5, **augmentation)
    return CaptionedImageDataset(captioned, transform, context_length=CONTEXT, seed=3, all_captions=all_captions,
                                 strict=strict, memory_cache_mb=memory_cache_mb, sided_captions=sided_captions,
                                 captions_per_image=captions_per_image)


@pytest.mark.parametrize("all_captions", [False, True])
def test_samples_from_memory_equal_samples_from_disk(captioned, all_captions):
    from_disk, in_memory = dataset(captioned, 0, all_captions=all_captions), \
        dataset(captioned, 64, all_captions=all_captions)
    assert_same_samples(from_disk, in_memory)


@pytest.mark.parametrize("all_captions", [False, True])
def test_augmented_samples_from_memory_equal_samples_from_disk(sided, all_captions):
    from_disk = dataset(sided, 0, all_captions=all_captions, **EVERY_AUGMENTATION)
    in_memory = dataset(sided, 64, all_captions=all_captions, **EVERY_AUGMENTATION)
    assert_same_samples(from_disk, in_memory)
    cached_tokens = in_memory.in_memory.tokens.long()
    swapped = [index for index in range(len(in_memory))
               if not (cached_tokens == in_memory[0, index][1]).all(dim=1).any()]
    assert swapped  # some flipped captions were tokenized with their sides swapped


def test_several_augmented_captions_per_sample_from_memory_equal_those_from_disk(sided):
    from_disk = dataset(sided, 0, captions_per_image=3, **EVERY_AUGMENTATION)
    in_memory = dataset(sided, 64, captions_per_image=3, **EVERY_AUGMENTATION)
    assert_same_samples(from_disk, in_memory)
    assert in_memory[0, 0][1].shape == (3, CONTEXT)


def assert_same_samples(from_disk, in_memory):
    assert from_disk.in_memory is None and in_memory.in_memory is not None
    for epoch in (0, 1):
        for index in range(len(from_disk)):
            image, tokens, unreadable = from_disk[epoch, index]
            cached_image, cached_tokens, cached_unreadable = in_memory[epoch, index]
            assert torch.equal(image, cached_image) and torch.equal(tokens, cached_tokens)
            assert tokens.dtype == cached_tokens.dtype == torch.long and unreadable == cached_unreadable
    assert any(in_memory[0, index][2] for index in range(len(in_memory)))  # the corrupt image is still reported


@pytest.mark.parametrize("memory_cache_mb", [0, 64])
@pytest.mark.parametrize("sided_captions", ["swap", "no_flip"])
def test_flipped_samples_follow_the_sided_captions_policy(captioned, memory_cache_mb, sided_captions):
    readable = [path for path in captioned.image_paths if not path.endswith("000003.jpg")][:4]
    images = dataclasses.replace(captioned, image_paths=readable, captions=[[SIDED], [UNSIDED]] * 2)
    flipping = dataset(images, memory_cache_mb, all_captions=True, sided_captions=sided_captions,
                       flip_probability=1.0)
    transform = flipping.transform
    for index, path in enumerate(readable):
        image, tokens, _ = flipping[0, index]
        caption = SIDED if index % 2 == 0 else UNSIDED
        flipped = caption == UNSIDED or sided_captions == "swap"
        expected_caption = swap_sides(caption) if flipped else caption
        assert torch.equal(tokens, tokenize(expected_caption, CONTEXT)[0])
        rng = sample_rng(3, 0, index)
        assert transform.draw_flip(rng)  # all_captions draws no caption: the flip comes first
        expected, mirror = (transform(path, copy.deepcopy(rng), flip=flip) for flip in (flipped, not flipped))
        assert torch.equal(image, expected) and not torch.equal(image, mirror)


def test_memory_samples_read_no_file(captioned, monkeypatch):
    in_memory = dataset(captioned, 64)

    def no_disk(*args, **kwargs):
        raise AssertionError("an image was read from disk")
    monkeypatch.setattr("dataloader.train.train_loader.TrainImageTransform.__call__", no_disk)
    assert all(in_memory[1, index][0].shape == (3, IMAGE_SIZE, IMAGE_SIZE) for index in range(len(in_memory)))


def test_strict_mode_still_reports_the_corrupt_image(captioned):
    strict = dataset(captioned, 64, strict=True)
    corrupt = next(i for i, path in enumerate(captioned.image_paths) if path.endswith("000003.jpg"))
    image, _, unreadable = strict[0, corrupt]
    assert unreadable == [captioned.image_paths[corrupt]] and not image.any()


def test_a_set_too_large_is_refused_before_decoding(captioned, monkeypatch):
    decoded = []
    real_load = memory_cache.load_rgb_image
    monkeypatch.setattr(memory_cache, "load_rgb_image", lambda *args, **kwargs: decoded.append(1) or
                        real_load(*args, **kwargs))
    token_bytes = sum(map(len, captioned.captions)) * CONTEXT * 4
    decode_side = TrainImageTransform(IMAGE_SIZE, (0,) * 3, (1,) * 3, "random", 0.5).decode_side
    smallest = 20 * 3 * decode_side ** 2 + token_bytes
    decoded_size = 19 * 3 * 32 ** 2 + token_bytes  # 19 readable 32 px images
    assert dataset(captioned, 0.9 * smallest / 2 ** 20).in_memory is None and not decoded
    # room for the smallest decoded size, not for the 32 px images actually decoded: refused while decoding
    assert dataset(captioned, (smallest + decoded_size) / 2 / 2 ** 20).in_memory is None and decoded
    assert dataset(captioned, 1.01 * decoded_size / 2 ** 20).in_memory is not None


def test_negative_limit_is_rejected():
    from dataloader.config import DataConfig
    with pytest.raises(ValueError, match="memory_cache_mb"):
        DataConfig(memory_cache_mb=-1)
