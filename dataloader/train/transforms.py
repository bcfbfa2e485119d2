"""The training image transform: decode (JPEG at reduced scale when the target is small), crop, resize it with
bicubic filtering, mirror and colour-jitter it as configured, and normalise. Crop and resize are one PIL call
(`resize(box=...)`), which filters only the pixels that are kept.

All randomness comes from the caller's per-sample generator, never from global RNG state, drawn in this order
(after the caption draw of a captioned sample): the flip (`draw_flip`, only when horizontal_flip > 0), the crop's
area, its aspect (only when random_crop_max_aspect > 1), its left and top, then the jitter's brightness, contrast
and saturation (only when color_jitter > 0). Options at their defaults draw nothing, so a run's samples stay the
same as before they existed."""
import math

import numpy as np
import torch
from PIL import Image

from dataloader.config import LoaderConfig
from dataloader.image_io import load_rgb_image
from dataloader.train.color_jitter import jitter_colors


class TrainImageTransform:
    def __init__(self, image_size: int, mean, std, crop: str = "random", min_area: float = 0.9, *,
                 max_aspect: float = 1.0, flip_probability: float = 0.0, color_jitter: float = 0.0):
        self.image_size, self.crop, self.min_area, self.max_aspect = image_size, crop, min_area, max_aspect
        self.flip_probability, self.color_jitter = flip_probability, color_jitter
        # decode large enough that even the narrowest side of the smallest random crop is not upsampled
        self.decode_side = (image_size if crop == "center"
                            else math.ceil(image_size * math.sqrt(max_aspect) / math.sqrt(min_area)))
        std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        # (pixel / 255 - mean) / std as one multiply-add
        self.scale = 1.0 / (255.0 * std)
        self.shift = -torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) / std

    @classmethod
    def from_config(cls, config: LoaderConfig, image_size: int, mean, std) -> "TrainImageTransform":
        return cls(image_size, mean, std, config.train_crop, config.random_crop_min_area,
                   max_aspect=config.random_crop_max_aspect, flip_probability=config.horizontal_flip,
                   color_jitter=config.color_jitter)

    def __call__(self, path, rng: np.random.Generator, flip: bool = False) -> torch.Tensor:
        """FloatTensor [3, image_size, image_size]. Raises OSError (or PIL's decoding errors) for unreadable files."""
        return self.apply(load_rgb_image(path, min_side=self.decode_side), rng, flip)

    def draw_flip(self, rng: np.random.Generator) -> bool:
        """Whether to mirror the sample; the caller draws it first, as a caption may have to follow it. Drawn
        whenever horizontal_flip > 0, also for a sample that sided_captions: no_flip then keeps unflipped."""
        return self.flip_probability > 0 and rng.random() < self.flip_probability

    def apply(self, image: Image.Image, rng: np.random.Generator, flip: bool = False) -> torch.Tensor:
        """The transform of an image already decoded (RGB, ideally at least `decode_side` on its shorter side),
        mirrored left to right when `flip`."""
        size = (self.image_size, self.image_size)
        image = image.resize(size, Image.Resampling.BICUBIC, box=self.crop_box(*image.size, rng))
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()
        if self.color_jitter > 0:
            jitter_colors(pixels, self.color_jitter, rng)
        return pixels.mul_(self.scale).add_(self.shift)

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of the region to keep: the centre square, or a random one whose area is
        min_area..1 of the centre square's, stretched to a random aspect when max_aspect > 1, at a random position
        (so the sides of wide images are seen too)."""
        largest = min(width, height)
        if self.crop == "center":
            side, left, top = largest, (width - largest) / 2, (height - largest) / 2
            return left, top, left + side, top + side
        side = largest * math.sqrt(rng.uniform(self.min_area, 1.0))  # of the square with the crop's area
        stretch = math.sqrt(self._aspect(side, width, height, rng)) if self.max_aspect > 1 else 1.0
        # min(): a stretched crop that just fits may overshoot the image by a rounding error
        crop_width, crop_height = min(side * stretch, width), min(side / stretch, height)
        left, top = rng.uniform(0, width - crop_width), rng.uniform(0, height - crop_height)
        return left, top, left + crop_width, top + crop_height

    def _aspect(self, side: float, width: int, height: int, rng: np.random.Generator) -> float:
        """Width / height of a crop with area side²: log-uniform in [1 / max_aspect, max_aspect], narrowed to the
        ratios at which it fits in the image (a range that always holds 1, so no draw is rejected)."""
        lowest = max(1 / self.max_aspect, (side / height) ** 2)
        highest = min(self.max_aspect, (width / side) ** 2)
        return math.exp(rng.uniform(math.log(lowest), math.log(highest)))
