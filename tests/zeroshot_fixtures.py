"""Builders for zero-shot tests: tiny datasets in their real on-disk layouts, and a stub CLIP whose predictions are
known in advance (an image's colour names its class; a prompt's class name names its class)."""
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from evaluation.template_sets import fill_template
from model.preprocess import image_transform
from utils.tokenizer import tokenize

IMAGE_SIZE = 16


def colour(index: int) -> tuple[int, int, int]:
    """216 well-separated colours: a 6 x 6 x 6 grid over RGB."""
    return (index // 36 % 6 * 51, index // 6 % 6 * 51, index % 6 * 51)


def write_image(path: Path, rgb: tuple[int, int, int], size=(24, 20)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)
    return path


def write_cifar(root: Path, variant: str, images: np.ndarray, labels: list[int], names: list[str],
                split: str = "test") -> Path:
    """CIFAR's python version as torchvision downloads it: pickled dicts, `data` uint8 [N, 3072] holding the
    R, G and B planes of each 32 x 32 image one after the other. CIFAR-10's training split spreads over five
    batch files, CIFAR-100's is one file."""
    assert images.shape[1:] == (32, 32, 3)
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    filenames = [f"image_{i}.png" for i in range(len(images))]
    if variant == "cifar10":
        folder = root / "cifar-10-batches-py"
        meta = {"num_cases_per_batch": len(images), "label_names": names, "num_vis": 3072}
        files = {"batches.meta": meta}
        if split == "test":
            files["test_batch"] = {"batch_label": "testing batch 1 of 1", "labels": labels, "data": data,
                                   "filenames": filenames}
        for number, part in enumerate(np.array_split(np.arange(len(images)), 5) if split == "train" else [], 1):
            files[f"data_batch_{number}"] = {"batch_label": f"training batch {number} of 5", "data": data[part],
                                             "labels": [labels[i] for i in part],
                                             "filenames": [filenames[i] for i in part]}
    else:
        folder = root / "cifar-100-python"
        content = {"filenames": filenames, "batch_label": f"{split}ing batch 1 of 1", "fine_labels": labels,
                   "coarse_labels": [0] * len(labels), "data": data}
        meta = {"fine_label_names": names, "coarse_label_names": ["aquatic_mammals"]}
        files = {split: content, "meta": meta}
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        with open(folder / name, "wb") as file:
            pickle.dump(content, file, protocol=2)
    return folder


class ColourClassModel(torch.nn.Module):
    """Embeds an image as the one-hot vector of the palette colour nearest its mean colour, and a prompt as the
    one-hot vector of the class whose name fills it. So image i of colour(c) should be classified as class c."""

    def __init__(self, class_names: list[str], templates: list[str], context_length: int = 77):
        super().__init__()
        self.config = SimpleNamespace(context_length=context_length, image_size=IMAGE_SIZE)
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(100.0))))
        self.palette = torch.tensor([colour(i) for i in range(len(class_names))], dtype=torch.float32) / 255
        self.class_of_prompt = {}
        for index, name in enumerate(class_names):
            tokens = tokenize([fill_template(template, name) for template in templates], context_length)
            for row in tokens:
                self.class_of_prompt[tuple(row.tolist())] = index
        self.images_seen = 0

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.images_seen += len(images)
        mean_colours = images.float().mean(dim=(2, 3))
        nearest = torch.cdist(mean_colours, self.palette).argmin(dim=1)
        return torch.nn.functional.one_hot(nearest, len(self.palette)).float()

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        classes = torch.tensor([self.class_of_prompt[tuple(row.tolist())] for row in tokens.cpu()])
        return torch.nn.functional.one_hot(classes, len(self.palette)).float() * 3.0  # length must not matter


def plain_transform():
    """Resize, crop, to [0, 1]: no normalisation, so the stub sees the true colours."""
    return image_transform(IMAGE_SIZE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
