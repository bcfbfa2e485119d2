"""Features for users' own probes: image features, labels and file paths of an evaluation set, and the class text
embeddings, in one safetensors or npz file.

Unlabelled images (--img_dir) give image_features and paths only; captions (--captions) text_features [M, D]
float32 (as encode_text returns them, not normalised) and the strings captions [M].
Both formats hold the same names: image_features [N, D] float32 (as encode_image returns them, not normalised),
labels [N] int64, text_embeddings [C, D] float32 (the zero-shot head: each class's normalised mean over the
templates), and the strings paths [N] and class_names [C]. safetensors holds tensors only, so there the strings
are JSON lists in the file's metadata (safetensors.safe_open(...).metadata()["paths"]).
"""
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from utils.atomic_files import write_atomically, write_bytes_atomically
from utils.errors import UserError

FORMATS = (".safetensors", ".npz")


def check_output_file(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix not in FORMATS:
        raise UserError(f"--output {path}: the name must end in {' or '.join(FORMATS)} (the format to write)")
    return path


def write_feature_file(path: str | Path, tensors: dict[str, torch.Tensor], strings: dict[str, list[str]]) -> Path:
    """Written whole or not at all, so that an interrupted export never leaves a truncated file behind."""
    path = check_output_file(path)
    if path.suffix == ".safetensors":
        write_bytes_atomically(path, save({name: tensor.contiguous() for name, tensor in tensors.items()},
                                          metadata={name: json.dumps(values) for name, values in strings.items()}))
    else:
        write_atomically(path, lambda file: np.savez(
            file, **{name: tensor.numpy() for name, tensor in tensors.items()},
            **{name: np.array(values, dtype=str) for name, values in strings.items()}))
    return path


def readable_paths(all_paths: list[str], unreadable: list[str]) -> list[str]:
    """The paths of the images that have features: all of them in loader order, less the unreadable ones."""
    skipped = set(unreadable)
    return [path for path in all_paths if path not in skipped]
