"""The door to every training source: `data.train_data` in any format (named by `data.format` or inferred from
the path) becomes a TrainLoader. Each format is one entry of FORMATS."""
from pathlib import Path

from dataloader.coco import CaptionedImages, read_coco_captions
from dataloader.config import COCO_TRAIN_IMAGES, DataConfig
from dataloader.train.caption_tables import read_csv_captions, read_jsonl_captions
from dataloader.train.shard_loader import build_shard_loader
from dataloader.train.shards import is_shard_source
from dataloader.train.train_loader import BatchSettings, TrainLoader, captioned_images_loader
from utils.errors import UserError

FORMAT_BY_SUFFIX = {".json": "coco", ".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl"}


def read_coco_source(source: str, image_dir: str | None, image_key: str, caption_key: str) -> CaptionedImages:
    return read_coco_captions(source, image_dir or COCO_TRAIN_IMAGES)


# Formats that list images with their captions: source, image folder, image key, caption key -> CaptionedImages.
LISTED_FORMATS = {"coco": read_coco_source, "csv": read_csv_captions, "jsonl": read_jsonl_captions}


def listed_loader(read):
    """The loader of a listed format, whose captioned images `read` gives."""
    def build(config: DataConfig, source: str, settings: BatchSettings) -> TrainLoader:
        data = read(source, config.train_img_dir, config.image_key, config.caption_key)
        return captioned_images_loader(data, source, config, settings)
    return build


FORMATS = {**{name: listed_loader(read) for name, read in LISTED_FORMATS.items()}, "webdataset": build_shard_loader}


def infer_format(source: str, format_setting: str = "data.format") -> str:
    """The format a path's name implies: .json COCO, .csv/.tsv CSV, .jsonl JSONL, and shards for .tar files,
    folders, brace patterns, `pipe:` commands and `::`-joined lists; `format_setting` names the setting to set
    instead."""
    if is_shard_source(source) or Path(source).is_dir():
        return "webdataset"
    suffix = Path(source).suffix.lower()
    if suffix not in FORMAT_BY_SUFFIX:
        raise UserError(f"{source}: cannot tell the format from the name (expected .json, .csv, .tsv, .jsonl, .tar, "
                        f"a folder of shards or a brace pattern); set {format_setting} to one of {', '.join(FORMATS)}")
    return FORMAT_BY_SUFFIX[suffix]


def build_train_loader(config: DataConfig, *, image_size: int, mean, std, context_length: int, batch_size: int,
                       rank: int, world_size: int, seed: int, pin_memory: bool) -> TrainLoader:
    """Batches {"images", "tokens", "skipped"} of `config.train_data` (default: the COCO file
    `config.train_annotation_file`), a pure function of (seed, epoch, batch index) on each rank."""
    source = config.train_data or config.train_annotation_file
    data_format = infer_format(source) if config.format == "auto" else config.format
    settings = BatchSettings(image_size, tuple(mean), tuple(std), context_length, batch_size, rank, world_size, seed,
                             pin_memory)
    return FORMATS[data_format](config, source, settings)
