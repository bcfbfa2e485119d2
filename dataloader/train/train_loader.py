"""The training loader: samples decoded (and captions tokenized) in worker processes, in batches that depend on
(seed, epoch, batch index) alone. Listed (image, captions) samples (COCO, CSV, JSONL) here; shards in
dataloader.train.shard_loader, labelled images for fine-tuning in dataloader.train.labelled_train_set, and the choice of
source in dataloader.train.train_data."""
import dataclasses
import functools
import logging
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate

from dataloader.coco import CaptionedImages
from dataloader.config import DataConfig, SidedCaptions
from dataloader.image_io import UNREADABLE_IMAGE_ERRORS
from dataloader.train.caption_sides import flip_with_captions
from dataloader.train.memory_cache import decode_into_memory
from dataloader.train.packed_strings import PackedStrings
from dataloader.train.sampler import ShardedOrder, sample_rng
from dataloader.train.transforms import TrainImageTransform
from utils.errors import UserError
from utils.tokenizer import tokenize, trim_padding

log = logging.getLogger(__name__)
NAMES_SHOWN = 5
TOKEN_LENGTH_MULTIPLE = 8  # caption batches are cut to a multiple of 8 tokens: few shapes for a compiled model


class TrainSamples(Dataset):
    """Training items keyed by (epoch, sample index), so workers need no epoch state: (image, target, paths of the
    unreadable images passed over). An unreadable image is replaced by the next sample that reads; in strict mode
    a placeholder comes back instead, and the training process raises on the reported path."""

    def __init__(self, strict: bool):
        self.strict = strict

    def read(self, epoch: int, index: int) -> tuple[torch.Tensor, object] | str:
        """(image, target) of a sample, or the path of its image when that cannot be read."""
        raise NotImplementedError

    def placeholder(self) -> tuple[torch.Tensor, object]:
        raise NotImplementedError

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, object, list[str]]:
        epoch, index = key
        unreadable = []
        for offset in range(len(self)):
            sample = self.read(epoch, (index + offset) % len(self))
            if not isinstance(sample, str):
                return *sample, unreadable
            unreadable.append(sample)
            if self.strict:  # the training process raises: a worker's exception would arrive as a traceback
                return *self.placeholder(), unreadable
        raise UserError(f"none of the {len(self)} training images could be read (first: {unreadable[0]})")


class CaptionedImageDataset(TrainSamples):
    """Sample i is an image with a caption drawn by its own generator (or, with all_captions, one fixed pair;
    with captions_per_image m > 1, m captions: [m, context] tokens), mirrored as its generator draws, with the
    captions following the flip as `sided_captions` says."""

    def __init__(self, data: CaptionedImages, transform: TrainImageTransform, *, context_length: int,
                 seed: int, all_captions: bool, strict: bool, memory_cache_mb: float = 0,
                 sided_captions: SidedCaptions = "swap", captions_per_image: int = 1):
        super().__init__(strict)
        self.transform, self.context_length, self.seed = transform, context_length, seed
        self.sided_captions, self.captions_per_image = sided_captions, captions_per_image
        self.image_paths = PackedStrings(data.image_paths)
        self.captions = PackedStrings(caption for captions in data.captions for caption in captions)
        self.caption_count = np.array([len(captions) for captions in data.captions], dtype=np.int64)
        self.first_caption = np.cumsum(self.caption_count) - self.caption_count
        self.all_captions = all_captions
        if all_captions:  # sample i is caption i
            self.sample_image = np.repeat(np.arange(len(self.caption_count)), self.caption_count)
        else:
            self.sample_image = np.arange(len(self.caption_count))
        self._unreadable = set()  # per process: files already known to fail, not decoded again
        self.in_memory = decode_into_memory(self.image_paths, self.captions, transform, context_length,
                                            memory_cache_mb) if memory_cache_mb > 0 else None

    def __len__(self) -> int:
        return len(self.sample_image)

    def read(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor] | str:
        rng = sample_rng(self.seed, epoch, index)
        image_index = self.sample_image[index]
        caption_indices = [index] if self.all_captions else self._draw_captions(image_index, rng)
        written = [self.captions[caption_index] for caption_index in caption_indices]
        flip, captions = flip_with_captions(written, self.transform.draw_flip(rng), self.sided_captions)
        image = self._read(image_index, rng, flip)
        if image is None:
            return self.image_paths[image_index]
        tokens = torch.stack([self._tokens(*caption) for caption in zip(caption_indices, written, captions)])
        return image, tokens[0] if self.captions_per_image == 1 else tokens

    def _draw_captions(self, image_index: int, rng: np.random.Generator) -> np.ndarray:
        """Indices of the sample's captions: one at random, or captions_per_image of them, each of the image's
        captions once before any is drawn again."""
        count = self.caption_count[image_index]
        if self.captions_per_image == 1:
            drawn = rng.integers(count, size=1)
        else:
            drawn = np.resize(rng.permutation(count), self.captions_per_image)
        return self.first_caption[image_index] + drawn

    def _tokens(self, caption_index: int, written: str, caption: str) -> torch.Tensor:
        if self.in_memory is not None and caption == written:  # tokenized at start-up unless its sides were swapped
            return self.in_memory.tokens[caption_index].long()
        return tokenize(caption, self.context_length)[0]

    def placeholder(self) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.transform.image_size
        tokens = torch.zeros(self.captions_per_image, self.context_length, dtype=torch.long)
        return torch.zeros(3, size, size), tokens[0] if self.captions_per_image == 1 else tokens

    def _read(self, image_index: int, rng: np.random.Generator, flip: bool) -> torch.Tensor | None:
        if self.in_memory is not None:
            pixels = self.in_memory.pixels[image_index]
            return None if pixels is None else self.transform.apply(Image.fromarray(pixels), rng, flip)
        path = self.image_paths[image_index]
        if path in self._unreadable:
            return None
        try:
            return self.transform(path, rng, flip)
        except UNREADABLE_IMAGE_ERRORS:
            self._unreadable.add(path)
            return None


def collate_samples(samples, target_key: str) -> dict:
    images, targets, unreadable = zip(*samples)
    targets = default_collate(targets)
    if target_key == "tokens":  # cut the padding here, in the worker: the copy to the device then needs no sync
        # several captions per image: [B, m, L] -> [B·m, L], each image's captions together
        targets = trim_padding(targets.flatten(0, -2), multiple=TOKEN_LENGTH_MULTIPLE)
    return {  # default_collate stacks into shared memory in a worker, which saves a copy on the way out
        "images": default_collate(images),
        target_key: targets,
        "skipped": sum(len(paths) for paths in unreadable),  # a count on the host: reading it never syncs
        "unreadable": [path for paths in unreadable for path in paths],
    }


class _EpochBatches:
    """The DataLoader's batch sampler: the batches of the epoch chosen last, as (epoch, index) keys. The DataLoader
    (and its persistent workers) is built once, so the epoch is set here before each pass."""

    def __init__(self, order: ShardedOrder):
        self.order, self.epoch, self.start_batch = order, 0, 0

    def __iter__(self):
        for batch_index in range(self.start_batch, len(self.order)):
            yield [(self.epoch, index) for index in self.order.batch(self.epoch, batch_index)]

    def __len__(self) -> int:
        return len(self.order) - self.start_batch


class TrainLoader:
    """Batches of a TrainSamples dataset in the order of a ShardedOrder, as dicts: "images", `target_key` (the
    dataset's targets: "tokens" for captions, "labels" for classes) and "skipped"."""
    order_depends_on_workers = False  # batch b of epoch e is the same whatever data.num_workers is

    def __init__(self, dataset: TrainSamples, order: ShardedOrder, *, target_key: str, num_workers: int,
                 prefetch_factor: int, pin_memory: bool, skipped_at_start: list[str]):
        self.num_samples = order.num_samples
        self.skipped_at_start = skipped_at_start
        self._strict = dataset.strict
        self._batches = _EpochBatches(order)
        self._reported = set()
        self._loader = DataLoader(
            dataset, batch_sampler=self._batches, collate_fn=functools.partial(collate_samples, target_key=target_key),
            num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            # the loader draws its workers' base seed from this generator, not from the global torch RNG
            generator=torch.Generator().manual_seed(order.seed),
        )

    def __len__(self) -> int:
        return len(self._batches.order)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[dict]:
        """Batches `start_batch`.. of `epoch`: {"images" [B,3,H,W] float, target_key: [B, ...] (tokens cut after
        the longest caption, to a multiple of 8), "skipped" int (unreadable images replaced in this batch)}.
        Batches before start_batch are not decoded.
        One pass at a time: starting another pass (or this one again) ends the previous one."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch {start_batch} is outside 0..{len(self)}")
        self._batches.epoch, self._batches.start_batch = epoch, start_batch
        for batch in self._loader:
            self._report(batch.pop("unreadable"))
            yield batch

    def _report(self, unreadable: list[str]):
        if unreadable and self._strict:
            raise UserError(f"{unreadable[0]}: cannot read this image (set strict_images: false to skip it)")
        for path in unreadable:
            if path not in self._reported:
                self._reported.add(path)
                log.warning("cannot read %s: replaced by the next readable sample", path)


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """What the model and the run ask of every training source's batches."""
    image_size: int
    mean: tuple
    std: tuple
    context_length: int
    batch_size: int
    rank: int
    world_size: int
    seed: int
    pin_memory: bool

    def transform(self, config: DataConfig) -> TrainImageTransform:
        return TrainImageTransform.from_config(config, self.image_size, self.mean, self.std)


def captioned_images_loader(data: CaptionedImages, source: str, config: DataConfig,
                            settings: BatchSettings) -> TrainLoader:
    """The loader of images listed with their captions (COCO, CSV, JSONL); `source` names the list in messages."""
    if not data.image_paths:
        problem = (f"none of its {len(data.missing)} captioned images is on disk "
                   f"(first expected: {data.missing[0]})" if data.missing else "no image has a caption")
        raise UserError(f"{source}: {problem}")
    if data.missing:
        if config.strict_images:
            raise UserError(f"{data.missing[0]}: image listed in {source} is missing "
                            f"({len(data.missing)} missing in all; set strict_images: false to skip them)")
        log.warning("%d images listed in %s are missing and left out: %s%s", len(data.missing), source,
                    ", ".join(data.missing[:NAMES_SHOWN]), ", ..." if len(data.missing) > NAMES_SHOWN else "")
    dataset = CaptionedImageDataset(data, settings.transform(config), context_length=settings.context_length,
                                    seed=settings.seed, all_captions=config.all_captions, strict=config.strict_images,
                                    memory_cache_mb=config.memory_cache_mb, sided_captions=config.sided_captions,
                                    captions_per_image=config.captions_per_image)
    order = ShardedOrder(len(dataset), settings.batch_size, settings.rank, settings.world_size, settings.seed)
    if len(order) == 0:
        raise UserError(f"{source}: {len(dataset)} samples make no full batch of {settings.batch_size} "
                        f"on each of {settings.world_size} ranks")
    return TrainLoader(dataset, order, target_key="tokens", num_workers=config.num_workers,
                       prefetch_factor=config.prefetch_factor, pin_memory=settings.pin_memory,
                       skipped_at_start=data.missing)
