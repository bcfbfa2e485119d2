"""The training image transform against the evaluation preprocess, and its random crops."""
import numpy as np
import pytest
from PIL import Image

from dataloader.transforms import TrainImageTransform
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
