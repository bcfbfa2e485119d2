"""Decoding images fast: JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is small,
which skips most of the decoding work for COCO-sized photos."""
from PIL import Image


def load_rgb_image(path, min_side: int) -> Image.Image:
    """Open `path` as RGB, decoded no smaller than `min_side` pixels on its shorter side where the format allows
    reduced decoding. Raises OSError (PIL's UnidentifiedImageError included) for missing or corrupt files."""
    with Image.open(path) as image:
        if image.format == "JPEG":
            width, height = image.size
            scale = min_side / min(width, height)
            image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
        return image.convert("RGB")
