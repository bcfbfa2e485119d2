"""The evaluation-time image transform that matches a model: resize the shorter side, centre crop, normalise."""
from torchvision import transforms
from torchvision.transforms import InterpolationMode


def _to_rgb(image):
    return image.convert("RGB")


def image_transform(image_size: int, mean, std):
    return transforms.Compose([
        _to_rgb,
        transforms.Resize(image_size, interpolation=InterpolationMode.BICUBIC),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
