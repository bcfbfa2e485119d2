"""The training image transform: decode (JPEG at reduced scale when the target is small), crop a square, resize it
with bicubic filtering and normalise. Crop and resize are one PIL call (`resize(box=...)`), which filters only the
pixels that are kept; the crop position comes from the caller's generator, never from global RNG state."""
import math

import numpy as np
import torch
from PIL import Image

from dataloader.image_io import load_rgb_image


class TrainImageTransform:
    def __init__(self, image_size: int, mean, std, crop: str = "random", min_area: float = 0.9):
        self.image_size, self.crop, self.min_area = image_size, crop, min_area
        # decode large enough that even the smallest random crop is not upsampled
        self.decode_side = image_size if crop == "center" else math.ceil(image_size / math.sqrt(min_area))
        std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        # (pixel / 255 - mean) / std as one multiply-add
        self.scale = 1.0 / (255.0 * std)
        self.shift = -torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) / std

    def __call__(self, path, rng: np.random.Generator) -> torch.Tensor:
        """FloatTensor [3, image_size, image_size]. Raises OSError (or PIL's decoding errors) for unreadable files."""
        return self.apply(load_rgb_image(path, min_side=self.decode_side), rng)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        """The transform of an image already decoded (RGB, ideally at least `decode_side` on its shorter side)."""
        size = (self.image_size, self.image_size)
        image = image.resize(size, Image.Resampling.BICUBIC, box=self.crop_box(*image.size, rng))
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
        return pixels.float().mul_(self.scale).add_(self.shift)

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the square to keep: the centre square, or a random one whose area is
        min_area..1 of the centre square's, at a random position (so the sides of wide images are seen too)."""
        largest = min(width, height)
        if self.crop == "center":
            side, left, top = largest, (width - largest) / 2, (height - largest) / 2
        else:
            side = largest * math.sqrt(rng.uniform(self.min_area, 1.0))
            left, top = rng.uniform(0, width - side), rng.uniform(0, height - side)
        return left, top, left + side, top + side
