"""Decoding images fast: JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is small,
which skips most of the decoding work for COCO-sized photos."""
from pathlib import Path

from PIL import Image

# What PIL raises for a missing, corrupt, truncated or non-image file.
UNREADABLE_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def load_rgb_image(path, min_side: int | None) -> Image.Image:
    """Open `path` as RGB, decoded no smaller than `min_side` pixels on its shorter side where the format allows
    reduced decoding (None: full size). Raises OSError (PIL's UnidentifiedImageError included) for missing or
    corrupt files."""
    with Image.open(path) as image:
        if image.format == "JPEG" and min_side is not None:
            width, height = image.size
            scale = min_side / min(width, height)
            image.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
        return image.convert("RGB")


def load_readable_images(paths: list[Path], min_side: int):
    """Load each path as RGB; return ([(path, image)], [(path, reason)]) for the readable and the skipped ones."""
    loaded, skipped = [], []
    for path in paths:
        try:
            loaded.append((path, load_rgb_image(path, min_side)))
        except UNREADABLE_IMAGE_ERRORS as error:
            skipped.append((path, str(error) or type(error).__name__))
    return loaded, skipped
