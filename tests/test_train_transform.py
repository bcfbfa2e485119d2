"""The training image transform against the evaluation preprocess, its random crops (square or stretched), flips
and colour jitter; its default keys leave samples and generator draws as they were before augmentation existed."""
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from dataloader.config import DataConfig
from dataloader.train.color_jitter import grey, jitter_colors
from dataloader.train.labelled_train_set import LabelledImageDataset
from dataloader.train.sampler import sample_rng
from dataloader.train.transforms import TrainImageTransform
from model.config import OPENAI_MEAN, OPENAI_STD
from model.preprocess import image_transform

PHOTO = "test_images/pagoda.jpg"


# a PNG decodes in full: crop-then-resize equals resize-then-crop up to rounding; the JPEG is decoded in draft
# mode at half scale (libjpeg's reduced IDCT), which differs by a few grey levels on average
@pytest.mark.parametrize("suffix, tolerance", [("png", 1e-4), ("jpg", 0.06)])
def test_centre_crop_matches_the_evaluation_preprocess(tmp_path, suffix, tolerance):
    # a 4:3 photo at twice the target size
    path = tmp_path / f"photo.{suffix}"
    Image.open(PHOTO).convert("RGB").resize((128, 96), Image.Resampling.BICUBIC).save(path, quality=95)
    ours = TrainImageTransform(48, OPENAI_MEAN, OPENAI_STD, crop="center")(path, np.random.default_rng(0))
    reference = image_transform(48, OPENAI_MEAN, OPENAI_STD)(Image.open(path))
    assert ours.shape == reference.shape == (3, 48, 48)
    assert (ours - reference).abs().mean() < tolerance  # normalised units: 0.06 is about 4 grey levels in 255
    assert np.allclose(ours.mean(dim=(1, 2)), reference.mean(dim=(1, 2)), atol=max(tolerance, 0.01))


def test_random_crops_stay_inside_cover_the_area_range_and_follow_the_generator():
    transform = TrainImageTransform(32, OPENAI_MEAN, OPENAI_STD, crop="random", min_area=0.8)
    boxes = [transform.crop_box(400, 300, np.random.default_rng(seed)) for seed in range(200)]
    for left, top, right, bottom in boxes:
        assert 0 <= left and 0 <= top and right <= 400 and bottom <= 300
        assert right - left == pytest.approx(bottom - top)
        assert 0.8 * 300**2 - 1e-6 <= (right - left) ** 2 <= 300**2
    lefts = [box[0] for box in boxes]
    assert min(lefts) < 20 and max(lefts) > 80  # the sides of a wide image are reached
    assert boxes[0] == transform.crop_box(400, 300, np.random.default_rng(0))


def square_crop_before_augmentation(image, size, min_area, rng, scale, shift):
    """The random square crop as it was before the augmentation keys: three draws (area, left, top)."""
    largest = min(image.size)
    side = largest * math.sqrt(rng.uniform(min_area, 1.0))
    left, top = rng.uniform(0, image.size[0] - side), rng.uniform(0, image.size[1] - side)
    resized = image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    return torch.from_numpy(np.array(resized)).permute(2, 0, 1).float().mul_(scale).add_(shift)


@pytest.mark.parametrize("min_area", [0.9, 0.4])
def test_the_default_augmentation_keys_leave_samples_and_draws_as_they_were(min_area):
    image = Image.open(PHOTO).convert("RGB")
    config = DataConfig(random_crop_min_area=min_area)
    transform = TrainImageTransform.from_config(config, 40, OPENAI_MEAN, OPENAI_STD)
    assert transform.decode_side == math.ceil(40 / math.sqrt(min_area))
    for seed in range(5):
        ours, before = np.random.default_rng(seed), np.random.default_rng(seed)
        pixels = transform.apply(image, ours, transform.draw_flip(ours))
        expected = square_crop_before_augmentation(image, 40, min_area, before, transform.scale, transform.shift)
        assert torch.equal(pixels, expected)
        assert ours.bit_generator.state == before.bit_generator.state  # no draw for a flip, an aspect or a jitter


@pytest.mark.parametrize("width, height", [(400, 300), (300, 400), (300, 300)])
def test_stretched_crops_fit_the_image_within_the_aspect_range(width, height):
    transform = TrainImageTransform(32, OPENAI_MEAN, OPENAI_STD, crop="random", min_area=0.5, max_aspect=2.0)
    aspects = []
    for seed in range(300):
        left, top, right, bottom = transform.crop_box(width, height, np.random.default_rng(seed))
        assert 0 <= left and 0 <= top and right <= width and bottom <= height
        drawn_area = np.random.default_rng(seed).uniform(0.5, 1.0) * min(width, height) ** 2  # the first draw
        assert (right - left) * (bottom - top) == pytest.approx(drawn_area, rel=1e-9)  # stretched, never cut
        aspects.append((right - left) / (bottom - top))
    assert 1 / 2 - 1e-9 <= min(aspects) and max(aspects) <= 2 + 1e-9
    assert min(aspects) < 1 / 1.4 and max(aspects) > 1.4  # both tall and wide crops


def test_aspects_are_log_uniform_where_the_image_does_not_limit_them():
    # a crop of at most a quarter of the square's area fits at any aspect in [1/4, 4]: as many tall as wide crops
    transform = TrainImageTransform(32, OPENAI_MEAN, OPENAI_STD, crop="random", min_area=0.05, max_aspect=4.0)
    log_aspects = []
    for seed in range(1000):
        if np.random.default_rng(seed).uniform(0.05, 1.0) <= 0.25:  # the drawn area
            left, top, right, bottom = transform.crop_box(1000, 1000, np.random.default_rng(seed))
            log_aspects.append(math.log((right - left) / (bottom - top)))
    assert len(log_aspects) > 150
    assert 0.35 < np.mean(np.array(log_aspects) > 0) < 0.65  # uniform in w/h would make 80% of them wide
    assert min(log_aspects) < -math.log(3) and max(log_aspects) > math.log(3)


def test_stretched_crops_are_decoded_large_enough_not_to_be_upsampled():
    transform = TrainImageTransform(32, OPENAI_MEAN, OPENAI_STD, crop="random", min_area=0.5, max_aspect=2.0)
    side = transform.decode_side
    assert side == 64  # 32 * sqrt(2 / 0.5)
    for seed in range(300):
        left, top, right, bottom = transform.crop_box(side, side * 2, np.random.default_rng(seed))
        assert min(right - left, bottom - top) >= 32 - 1e-9


def asymmetric_image(width=48, height=40):
    """A horizontal ramp in red and a vertical one in green: a mirror image differs from the original."""
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    return Image.fromarray(np.stack([x, y, np.full_like(x, 60)], axis=-1).astype(np.uint8))


def test_a_flip_mirrors_the_crop_the_generator_draws():
    transform = TrainImageTransform(24, OPENAI_MEAN, OPENAI_STD, crop="random", min_area=0.6, max_aspect=1.5,
                                    flip_probability=1.0)
    image = asymmetric_image()
    plain = transform.apply(image, np.random.default_rng(7), flip=False)
    mirrored = transform.apply(image, np.random.default_rng(7), flip=True)
    assert not torch.equal(plain, mirrored)
    assert torch.equal(mirrored, plain.flip(2))


def test_the_flip_is_drawn_from_the_generator_at_its_probability():
    rng = np.random.default_rng(0)
    assert all(TrainImageTransform(8, OPENAI_MEAN, OPENAI_STD, flip_probability=1.0).draw_flip(rng)
               for _ in range(20))
    half = TrainImageTransform(8, OPENAI_MEAN, OPENAI_STD, flip_probability=0.5)
    flips = [half.draw_flip(np.random.default_rng(seed)) for seed in range(400)]
    assert 150 < sum(flips) < 250
    assert flips == [half.draw_flip(np.random.default_rng(seed)) for seed in range(400)]


def unnormalised(pixels, transform):
    return (pixels - transform.shift) / transform.scale


@pytest.mark.parametrize("strength", [0.2, 0.6])
def test_colour_jitter_scales_a_grey_image_by_the_brightness_factor_alone(strength):
    # a uniform grey image has no contrast or saturation to change: only brightness moves it
    transform = TrainImageTransform(16, OPENAI_MEAN, OPENAI_STD, crop="center", color_jitter=strength)
    grey = Image.new("RGB", (16, 16), (100, 100, 100))
    values = []
    for seed in range(50):
        pixels = unnormalised(transform.apply(grey, np.random.default_rng(seed)), transform)
        assert torch.allclose(pixels, pixels.flatten()[0], atol=1e-3)
        values.append(pixels.flatten()[0].item())
    assert 100 * (1 - strength) - 1e-3 <= min(values) < 100 * (1 - strength / 2)
    assert 100 * (1 + strength / 2) < max(values) <= 100 * (1 + strength) + 1e-3


def test_colour_jitter_changes_colours_within_the_pixel_range_and_follows_the_generator():
    plain = TrainImageTransform(24, OPENAI_MEAN, OPENAI_STD, crop="center")
    jittered = TrainImageTransform(24, OPENAI_MEAN, OPENAI_STD, crop="center", color_jitter=0.5)
    image = asymmetric_image()
    before = unnormalised(plain.apply(image, np.random.default_rng(0)), plain)
    after = unnormalised(jittered.apply(image, np.random.default_rng(0)), jittered)
    assert (after - before).abs().max() > 5
    assert after.min() >= -1e-3 and after.max() <= 255 + 1e-3
    assert torch.equal(jittered.apply(image, np.random.default_rng(0)), jittered.apply(image, np.random.default_rng(0)))


class FixedFactors:
    """A generator stand-in whose draws are the given jitter factors (brightness, contrast, saturation)."""

    def __init__(self, *factors):
        self.factors = factors

    def uniform(self, low, high, size):
        return np.array(self.factors)


def test_colour_jitter_applies_contrast_and_saturation_as_torchvision_defines_them():
    pixels = torch.from_numpy(np.array(asymmetric_image())).permute(2, 0, 1).float()
    desaturated = jitter_colors(pixels.clone(), 1.0, FixedFactors(1.0, 1.0, 0.0))
    assert torch.allclose(desaturated, grey(pixels).expand(3, -1, -1), atol=1e-3)
    flat = jitter_colors(pixels.clone(), 1.0, FixedFactors(1.0, 0.0, 1.0))
    assert torch.allclose(flat, grey(pixels).mean().expand_as(pixels), atol=1e-3)
    brighter = jitter_colors(pixels.clone(), 1.0, FixedFactors(1.5, 1.0, 1.0))
    assert torch.allclose(brighter, (pixels * 1.5).clamp(0, 255), atol=1e-3)
    # each step clamps, as torchvision's do: the contrast step blends the clipped brighter image with its mean grey
    clipped = (pixels * 2).clamp(0, 255)
    softer = jitter_colors(pixels.clone(), 1.0, FixedFactors(2.0, 0.5, 1.0))
    assert torch.allclose(softer, (clipped + grey(clipped).mean()) / 2, atol=1e-3)


def test_transform_from_config_takes_every_augmentation_key():
    config = DataConfig(train_crop="random", random_crop_min_area=0.7, random_crop_max_aspect=1.5,
                        horizontal_flip=0.3, color_jitter=0.4)
    transform = TrainImageTransform.from_config(config, 32, OPENAI_MEAN, OPENAI_STD)
    assert (transform.crop, transform.min_area, transform.max_aspect) == ("random", 0.7, 1.5)
    assert (transform.flip_probability, transform.color_jitter) == (0.3, 0.4)


@pytest.mark.parametrize("key, value, message", [
    ("random_crop_max_aspect", 0.5, "random_crop_max_aspect must be at least 1, got 0.5"),
    ("horizontal_flip", 1.5, "horizontal_flip must be a probability in [0, 1], got 1.5"),
    ("horizontal_flip", -0.1, "horizontal_flip must be a probability in [0, 1], got -0.1"),
    ("color_jitter", 1.2, "color_jitter must be in [0, 1] (factors stay non-negative), got 1.2"),
    ("color_jitter", -0.2, "color_jitter must be in [0, 1] (factors stay non-negative), got -0.2"),
    ("sided_captions", "mirror", "sided_captions must be swap or no_flip, got 'mirror'"),
])
def test_augmentation_keys_out_of_range_are_rejected_by_name(key, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        DataConfig(**{key: value})


def test_labelled_images_are_flipped_plainly_with_the_drawn_crop():
    image = asymmetric_image()
    transform = TrainImageTransform(24, OPENAI_MEAN, OPENAI_STD, min_area=0.6, flip_probability=1.0)
    pixels, label = LabelledImageDataset([(image, 5)], transform, seed=2, strict=False).read(epoch=1, index=0)
    rng = sample_rng(2, 1, 0)
    assert transform.draw_flip(rng) and label == 5
    assert torch.equal(pixels, transform.apply(image, rng, flip=True))
