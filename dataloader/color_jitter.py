"""Colour jitter of training pixels, as torchvision's ColorJitter without hue: brightness, contrast and saturation,
in that order, each scaled by a factor drawn uniformly in [1 - strength, 1 + strength] from the sample's generator.
Float operations on the small [3, H, W] image before normalisation cost far less than PIL's 8-bit enhancers."""
import numpy as np
import torch

# ITU-R 601-2 luma, the grey of PIL's convert("L") and of torchvision's rgb_to_grayscale
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)


def jitter_colors(pixels: torch.Tensor, strength: float, rng: np.random.Generator) -> torch.Tensor:
    """`pixels` ([3, H, W] float in 0..255) jittered in place; three draws from `rng`: brightness, contrast,
    saturation. Each step is clamped to 0..255, as torchvision clamps its uint8-range images."""
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3).tolist()
    pixels.mul_(brightness).clamp_(0, 255)
    mean_grey = grey(pixels).mean()
    pixels.sub_(mean_grey).mul_(contrast).add_(mean_grey).clamp_(0, 255)
    image_grey = grey(pixels)
    return pixels.sub_(image_grey).mul_(saturation).add_(image_grey).clamp_(0, 255)


def grey(pixels: torch.Tensor) -> torch.Tensor:
    """[1, H, W]: the luma of [3, H, W] pixels."""
    return (pixels * LUMA).sum(0, keepdim=True)
