"""Small training sets kept in memory: every image decoded once (uint8 pixels at the size the transform decodes
to) and every caption tokenized once, so that each epoch pays only for the random crop. A sample read from
memory is identical to one read from disk: the same pixels go through the same crop and resize."""
import logging

import numpy as np
import torch
from tqdm import tqdm

from dataloader.image_io import UNREADABLE_IMAGE_ERRORS, load_rgb_image
from dataloader.train.packed_strings import PackedStrings
from dataloader.train.transforms import TrainImageTransform
from utils.tokenizer import tokenize

log = logging.getLogger(__name__)
MB = 2 ** 20


class DecodedSamples:
    """Pixels per image ([H, W, 3] uint8, or None where the file cannot be read) and token rows per caption."""

    def __init__(self, pixels: list[np.ndarray | None], tokens: torch.Tensor):
        self.pixels, self.tokens = pixels, tokens


def decode_into_memory(image_paths: PackedStrings, captions: PackedStrings, transform: TrainImageTransform,
                       context_length: int, limit_mb: float) -> DecodedSamples | None:
    """Every image decoded and every caption tokenized, or None when they would take more than `limit_mb`:
    judged first from the smallest size each image can decode to (so a large set is refused without decoding
    anything), then counted while decoding."""
    limit, token_bytes = limit_mb * MB, len(captions) * context_length * 4
    if len(image_paths) * 3 * transform.decode_side ** 2 + token_bytes > limit:
        return None
    pixels, total = [], token_bytes
    for index in tqdm(range(len(image_paths)), desc="decoding the training images into memory", unit="image",
                      disable=len(image_paths) < 10_000, leave=False):
        try:
            array = np.asarray(load_rgb_image(image_paths[index], min_side=transform.decode_side))
        except UNREADABLE_IMAGE_ERRORS:
            array = None
        total += 0 if array is None else array.nbytes
        if total > limit:
            log.warning("the training images decode to more than data.memory_cache_mb=%s MB: read from disk instead",
                        limit_mb)
            return None
        pixels.append(array)
    tokens = tokenize([captions[index] for index in range(len(captions))], context_length).to(torch.int32)
    return DecodedSamples(pixels, tokens)
