"""Shards as training batches that are a pure function of (seed, epoch, batch index, rank), so that a run killed
mid-epoch resumes exactly, as on the listed formats.

Each rank's epoch is split into `slots`, one per loader worker: slot s reads its own shards (every (rank, slot) a
disjoint share of a seeded per-epoch shard order, or seeded draws with replacement in resampled mode) through a
seeded shuffle buffer, and supplies the rank's batches s, s + slots, s + 2 slots ... A sample is addressed by its
position in the rank's epoch. A worker keeps its slot's stream open while the positions asked for follow one
another; otherwise (another epoch, a resumed run) it opens the stream again and passes over the samples before the
position without decoding them.

Why not webdataset's WebDataset pipeline: its shard shuffle, sample shuffle and worker split keep their randomness
in iterator state that cannot be set to batch k of an epoch, so its runs resume at epoch boundaries only.
webdataset still opens and reads the tars (dataloader.train.shards)."""
import collections
import dataclasses
import io
import itertools
from typing import Iterable, Iterator, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from dataloader.config import DataConfig, SidedCaptions
from dataloader.image_io import UNREADABLE_IMAGE_ERRORS, load_rgb_image
from dataloader.train.caption_sides import flip_with_captions
from dataloader.train.sampler import sample_rng
from dataloader.train.shards import (IMG2DATASET_STATS, SIZES_FILE, check_shard, image_and_captions, list_shards,
                                     raw_samples, total_samples)
from dataloader.train.train_loader import BatchSettings, TrainLoader
from dataloader.train.transforms import TrainImageTransform
from utils.errors import UserError
from utils.tokenizer import tokenize

# Stream ids of the shards' random generators, apart from dataloader.train.sampler's (0 and 1).
SHARD_ORDER_STREAM, BUFFER_STREAM, RESAMPLE_STREAM = 10, 11, 12
# How many samples past an unreadable image its replacement is looked for. A stream repeats its shards without end,
# so the search needs a bound; a longer run of unreadable images is broken data, not the odd bad file.
REPLACEMENT_SEARCH = 1000


def stream_rng(seed: int, epoch: int, stream: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch, stream, *key)))


def shuffled(samples: Iterable, buffer_size: int, rng: np.random.Generator) -> Iterator:
    """`samples` through a shuffle buffer: each sample read takes the place of one drawn at random from the
    buffer; the buffer is emptied in random order at the end. A buffer of 1 keeps the order."""
    buffer = []
    for sample in samples:
        if len(buffer) < buffer_size:
            buffer.append(sample)
            continue
        index = rng.integers(buffer_size)
        buffer[index], sample = sample, buffer[index]
        yield sample
    while buffer:
        index = rng.integers(len(buffer))
        buffer[index], buffer[-1] = buffer[-1], buffer[index]
        yield buffer.pop()


def samples_of(shards: Iterable[str]) -> Iterator[dict]:
    for shard in shards:
        yield from raw_samples(shard)


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """Which shards each (rank, slot) reads in an epoch and in which order: slot id = rank * slots + slot."""
    shards: tuple[str, ...]
    seed: int
    world_size: int
    slots: int
    buffer_size: int
    resampled: bool

    def slot_shards(self, epoch: int, slot_id: int) -> list[str]:
        """The slot's share of the epoch's seeded shard order (not resampled)."""
        order = stream_rng(self.seed, epoch, SHARD_ORDER_STREAM).permutation(len(self.shards))
        return [self.shards[index] for index in order[slot_id::self.world_size * self.slots]]

    def samples(self, epoch: int, slot_id: int) -> Iterator[dict]:
        """The slot's raw samples in the epoch's order, without end: a slot asked for more samples than its shards
        hold reads them again, through a new shuffle."""
        if self.resampled:
            draws = stream_rng(self.seed, epoch, RESAMPLE_STREAM, slot_id)
            shards = (self.shards[draws.integers(len(self.shards))] for _ in itertools.count())
            yield from shuffled(samples_of(shards), self.buffer_size, stream_rng(self.seed, epoch, BUFFER_STREAM,
                                                                                 slot_id, 0))
            return
        shards = self.slot_shards(epoch, slot_id)
        for repeat in itertools.count():
            rng = stream_rng(self.seed, epoch, BUFFER_STREAM, slot_id, repeat)
            count = 0
            for count, sample in enumerate(shuffled(samples_of(shards), self.buffer_size, rng), start=1):
                yield sample
            if count == 0:
                raise UserError(f"{', '.join(shards)}: no samples in these shards")


class StreamOrder:
    """A rank's epoch as positions 0, 1, ... of its stream, cut into batches (the interface of ShardedOrder)."""

    def __init__(self, num_samples: int, batch_size: int, world_size: int, seed: int):
        self.batch_size, self.seed = batch_size, seed
        self.num_batches = num_samples // (batch_size * world_size)
        self.num_samples = self.num_batches * batch_size * world_size  # per epoch, over all ranks

    def __len__(self) -> int:
        return self.num_batches

    def batch(self, epoch: int, batch_index: int) -> list[int]:
        return list(range(batch_index * self.batch_size, (batch_index + 1) * self.batch_size))


class SampleProblem(NamedTuple):
    """What a worker reports beside a sample: an unreadable image (replaced) or a malformed shard (fatal)."""
    message: str
    fatal: bool


@dataclasses.dataclass
class _OpenStream:
    key: tuple[int, int]  # (epoch, slot)
    samples: Iterator[dict]
    offset: int = 0  # samples taken so far
    ahead: collections.deque = dataclasses.field(default_factory=collections.deque)  # read, not yet taken

    def advance(self) -> dict:
        self.offset += 1
        return self.ahead.popleft() if self.ahead else next(self.samples)

    def following(self) -> Iterator[dict]:
        """The samples after the one taken last, read ahead: taking them later finds them already read."""
        for index in itertools.count():
            if index == len(self.ahead):
                self.ahead.append(next(self.samples))
            yield self.ahead[index]


class ShardSamples(Dataset):
    """Sample (epoch, position) of one rank: (image, tokens, problems). An image that does not decode is replaced
    by the next sample of its stream that does (so the replacement, too, depends on the position alone)."""

    def __init__(self, plan: ShardPlan, rank: int, transform: TrainImageTransform, *, batch_size: int,
                 context_length: int, seed: int, caption_key: str, strict: bool,
                 sided_captions: SidedCaptions = "swap"):
        self.plan, self.rank, self.transform = plan, rank, transform
        self.batch_size, self.context_length, self.seed = batch_size, context_length, seed
        self.caption_key, self.strict, self.sided_captions = caption_key, strict, sided_captions
        self._stream = None  # per process: the stream read last

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, list[SampleProblem]]:
        epoch, position = key
        rng = sample_rng(self.seed, epoch, position * self.plan.world_size + self.rank)
        try:  # a malformed shard met in a worker is raised by the training process, as one line
            decoded = self._decode(self._raw(epoch, position), rng)
            if not isinstance(decoded, SampleProblem):
                return *decoded, []
            if not self.strict:  # strict: the training process stops at the problem
                return *self._replacement(decoded, rng), [decoded]
        except UserError as error:
            self._stream = None  # a generator that raised is finished: the next sample opens the stream again
            return *self.placeholder(), [SampleProblem(str(error), fatal=True)]
        return *self.placeholder(), [decoded]

    def placeholder(self) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.transform.image_size
        return torch.zeros(3, size, size), torch.zeros(self.context_length, dtype=torch.long)

    def _raw(self, epoch: int, position: int) -> dict:
        """The raw sample at `position` of the rank's epoch."""
        batch, within = divmod(position, self.batch_size)
        slot = batch % self.plan.slots
        offset = (batch // self.plan.slots) * self.batch_size + within
        stream = self._stream
        if stream is None or stream.key != (epoch, slot) or stream.offset > offset:
            stream = self._stream = _OpenStream((epoch, slot),
                                                self.plan.samples(epoch, self.rank * self.plan.slots + slot))
        while stream.offset < offset:
            stream.advance()  # passed over undecoded
        return stream.advance()

    def _replacement(self, unreadable: SampleProblem, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The next sample after the one just read (`unreadable`) in its stream whose image decodes."""
        for sample in itertools.islice(self._stream.following(), REPLACEMENT_SEARCH):
            decoded = self._decode(sample, rng)
            if not isinstance(decoded, SampleProblem):
                return decoded
        raise UserError(f"{unreadable.message}: neither this image nor the {REPLACEMENT_SEARCH} after it in its "
                        "stream can be read")

    def _decode(self, sample: dict, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor] | SampleProblem:
        image_bytes, captions = image_and_captions(sample, self.caption_key)
        try:
            image = load_rgb_image(io.BytesIO(image_bytes), min_side=self.transform.decode_side)
        except UNREADABLE_IMAGE_ERRORS:
            return SampleProblem(f"{sample['__url__']}/{sample['__key__']}", fatal=False)
        caption = captions[rng.integers(len(captions))]  # one of the image's captions, drawn anew each epoch
        flip, (caption,) = flip_with_captions([caption], self.transform.draw_flip(rng), self.sided_captions)
        return self.transform.apply(image, rng, flip), tokenize(caption, self.context_length)[0]


class ShardLoader(TrainLoader):
    """The training loader over shards: a malformed shard reported by a worker ends the run with its message."""
    order_depends_on_workers = True  # each worker reads shards of its own: data.num_workers shapes the batches

    def _report(self, problems: list[SampleProblem]):
        fatal = next((problem for problem in problems if problem.fatal), None)
        if fatal:
            raise UserError(fatal.message)
        super()._report([problem.message for problem in problems])


def build_shard_loader(config: DataConfig, source: str, settings: BatchSettings) -> ShardLoader:
    """Batches of the shards `source` names; each of the rank's max(1, num_workers) workers reads its own."""
    for key, asks_several in (("all_captions", config.all_captions),
                              ("captions_per_image", config.captions_per_image > 1)):
        if asks_several:
            raise UserError(f"{source}: data.{key} applies to COCO, CSV and JSONL; shard samples draw one caption "
                            "each")
    shards = list_shards(source)
    for shard in shards:
        check_shard(shard, config.caption_key)
    slots = max(1, config.num_workers)
    if not config.resampled and len(shards) < settings.world_size * slots:
        raise UserError(f"{source}: {len(shards)} shards cannot give each of {settings.world_size} ranks x {slots} "
                        "workers a shard of its own: lower data.num_workers, write smaller shards "
                        "(make_shards --shard_size) or set data.resampled=true")
    num_samples = config.num_samples or total_samples(shards)
    if num_samples is None:
        raise UserError(f"{source}: set data.num_samples (samples per epoch, over all ranks): no {SIZES_FILE} or "
                        f"img2dataset *{IMG2DATASET_STATS} beside the shards gives their sample counts")
    order = StreamOrder(num_samples, settings.batch_size, settings.world_size, settings.seed)
    if len(order) == 0:
        raise UserError(f"{source}: {num_samples} samples per epoch make no full batch of {settings.batch_size} on "
                        f"each of {settings.world_size} ranks")
    plan = ShardPlan(tuple(shards), settings.seed, settings.world_size, slots, config.shuffle_buffer,
                     config.resampled)
    dataset = ShardSamples(plan, settings.rank, settings.transform(config), batch_size=settings.batch_size,
                           context_length=settings.context_length, seed=settings.seed,
                           caption_key=config.caption_key, strict=config.strict_images,
                           sided_captions=config.sided_captions)
    return ShardLoader(dataset, order, target_key="tokens", num_workers=config.num_workers,
                       prefetch_factor=config.prefetch_factor, pin_memory=settings.pin_memory, skipped_at_start=[])
