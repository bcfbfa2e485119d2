"""Write a COCO, CSV or JSONL training set as webdataset shards of pre-resized images, so that a training node
decodes small JPEGs instead of full-size photos.

    python -m dataloader.make_shards --from coco|csv|jsonl SRC OUT_DIR [--img_dir DIR] [--image_size 256]
                                     [--shard_size 1000] [--workers 4] [--image_key filepath] [--caption_key caption]
                                     [--config SETTINGS.yaml ...] [key=value ...]

Each image becomes one sample: KEY.jpg (shorter side resized to --image_size, never enlarged; re-encoded), KEY.txt
(its first caption, for other tools) and KEY.json ({"captions": all of them, "source": the original path}), so
that training still draws one of an image's captions each epoch. OUT_DIR gets 00000.tar, 00001.tar ... and
sizes.json ({shard: samples}), which training reads for the samples per epoch. Unreadable images are skipped and
counted. Each shard is written under a temporary name and renamed when complete; OUT_DIR must be new or empty.
Train on the result with `python train.py --train_data OUT_DIR`.
"""
import dataclasses
import io
import json
import multiprocessing
import os
import sys
import typing
from pathlib import Path

import webdataset as wds
from PIL import Image
from tqdm import tqdm

from dataloader.coco import CaptionedImages
from dataloader.image_io import UNREADABLE_IMAGE_ERRORS, load_rgb_image
from dataloader.train.shards import CAPTIONS_KEY, SHARD_SUFFIX, SIZES_FILE
from dataloader.train.train_data import LISTED_FORMATS
from utils.atomic_files import write_text_atomically
from utils.cli import SettingsParser, run_command, setting
from utils.errors import UserError

JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class ShardJob:
    """One shard to write: its images (path, captions) and the key of the first."""
    path: Path
    first_key: int
    images: list[tuple[str, list[str]]]
    image_size: int


@dataclasses.dataclass
class ShardsWritten:
    samples: int
    shard_sizes: dict[str, int]
    unreadable: list[str]
    missing: list[str]


def resized_jpeg(path: str, image_size: int) -> bytes:
    """The image at `path` as RGB JPEG bytes, its shorter side `image_size` (smaller images are kept as they are)."""
    image = load_rgb_image(path, min_side=image_size)
    scale = image_size / min(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_shard(job: ShardJob) -> tuple[str, int, list[str]]:
    """Write one shard (to a temporary name, renamed when complete; none when no image reads): (its name,
    samples, unreadable paths)."""
    partial = job.path.with_name(job.path.name + ".partial")
    written, unreadable = 0, []
    with wds.TarWriter(str(partial)) as writer:
        for key, (path, captions) in enumerate(job.images, start=job.first_key):
            try:
                image = resized_jpeg(path, job.image_size)
            except UNREADABLE_IMAGE_ERRORS:
                unreadable.append(path)
                continue
            writer.write({"__key__": f"{key:09d}", "jpg": image, "txt": captions[0],
                          "json": {CAPTIONS_KEY: captions, "source": path}})
            written += 1
    if written:
        os.replace(partial, job.path)
    else:  # training rejects an empty shard
        partial.unlink()
    return job.path.name, written, unreadable


def shard_jobs(data: CaptionedImages, out_dir: Path, shard_size: int, image_size: int) -> list[ShardJob]:
    pairs = list(zip(data.image_paths, data.captions))
    return [ShardJob(out_dir / f"{index:05d}{SHARD_SUFFIX}", start, pairs[start:start + shard_size], image_size)
            for index, start in enumerate(range(0, len(pairs), shard_size))]


def make_shards(data: CaptionedImages, out_dir: Path, *, image_size: int, shard_size: int,
                workers: int) -> ShardsWritten:
    """Write `data` as shards in `out_dir` over `workers` processes, with a progress bar and a sizes.json."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir}: the folder already holds files; give a new or empty folder for the shards")
    if not data.image_paths:
        raise UserError("no captioned image to write" + (f" (first missing: {data.missing[0]})" if data.missing
                                                          else ""))
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = shard_jobs(data, out_dir, shard_size, image_size)
    sizes, unreadable = {}, []
    with tqdm(total=len(data.image_paths), unit="image", dynamic_ncols=True) as progress, \
            multiprocessing.Pool(workers) as pool:
        for (name, written, skipped), job in zip(pool.imap(write_shard, jobs), jobs):
            if written:
                sizes[name] = written
            unreadable += skipped
            progress.update(len(job.images))
    write_text_atomically(out_dir / SIZES_FILE, json.dumps(sizes, indent=1) + "\n")
    return ShardsWritten(sum(sizes.values()), sizes, unreadable, data.missing)


@dataclasses.dataclass(kw_only=True)
class ShardSettings:
    source_format: typing.Literal[tuple(sorted(LISTED_FORMATS))]
    source: str
    out_dir: str
    img_dir: str | None = setting(None, "COCO: the images (default data/coco/train2017); tables: the folder relative "
                                        "paths are read from (default: the table's folder)")
    image_size: int = setting(256, "shorter side of the stored images")
    shard_size: int = setting(1000, "images per shard")
    workers: int = setting(min(8, os.cpu_count() or 1), "writing processes")
    image_key: str = setting("filepath", "tables: the image path's column/key")
    caption_key: str = setting("caption", "tables: the caption's column/key")

    def __post_init__(self):
        for name in ("image_size", "shard_size", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


PARSER = SettingsParser(__doc__, ShardSettings, positionals={
    "source": "COCO captions .json, or a .csv/.tsv/.jsonl table of image paths and captions",
    "out_dir": "the new (or empty) folder of the shards"}, prog="python -m dataloader.make_shards")
PARSER.add_setting("--from", "source_format", choices=sorted(LISTED_FORMATS))
PARSER.add_field_flags()


def run(settings: ShardSettings) -> int:
    data = LISTED_FORMATS[settings.source_format](settings.source, settings.img_dir, settings.image_key,
                                                  settings.caption_key)
    out_dir = Path(settings.out_dir)
    result = make_shards(data, out_dir, image_size=settings.image_size, shard_size=settings.shard_size,
                         workers=settings.workers)
    print(f"wrote {result.samples} images in {len(result.shard_sizes)} shards to {out_dir}; skipped "
          f"{len(result.unreadable)} unreadable and {len(result.missing)} missing images"
          + (f" (first: {(result.unreadable + result.missing)[0]})" if result.unreadable or result.missing else ""))
    return 0


def main(argv=None) -> int:
    return run_command(lambda: run(PARSER.settings(argv)))


if __name__ == "__main__":
    sys.exit(main())
