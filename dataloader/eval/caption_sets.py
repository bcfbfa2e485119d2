"""Captioned images to evaluate on (retrieval, validation loss, CLIP scores of pairs), in every format training
reads and through the same readers: COCO captions or a Karpathy split file (.json), CSV/TSV and JSONL tables, and
webdataset shards. As in training, an image named by several rows is one image with several captions, and relative
image paths are read from the image folder, else the table's folder.

Shards are read once, in order (training's shard loader streams them without end): each sample is one image with
its captions, held encoded in memory (evaluation sets are small) and named SHARD/KEY."""
import io
import os
from pathlib import Path
from typing import Literal

from torch.utils.data import Dataset

from dataloader.coco import CaptionedImages
from dataloader.eval.eval_datasets import ImageFiles, UnreadableImage, Transform
from dataloader.eval.karpathy import read_retrieval_captions
from dataloader.image_io import UNREADABLE_IMAGE_ERRORS, load_rgb_image
from dataloader.train.caption_tables import read_csv_captions, read_jsonl_captions, table_captions
from dataloader.train.shards import image_and_captions, list_shards, raw_samples
from dataloader.train.train_data import infer_format
from utils.errors import UserError

CaptionFormat = Literal["auto", "coco", "csv", "jsonl", "webdataset"]  # as training's data.format


def read_caption_set(source: str, image_dir: str | None = None, *, data_format: CaptionFormat = "auto",
                     image_key: str = "filepath", caption_key: str = "caption", split: str = "test",
                     format_setting: str = "format") -> CaptionedImages:
    """The captioned images of `source` (`split`: of a Karpathy split file); `format_setting` is named when the
    format cannot be told from the name."""
    data_format = infer_format(source, format_setting) if data_format == "auto" else data_format
    if data_format == "webdataset":
        return read_shards_once(source, caption_key)
    if data_format == "coco":
        if image_dir is None:
            raise UserError(f"{source}: a COCO or Karpathy captions file needs the folder of its images (img_dir)")
        return read_retrieval_captions(source, image_dir, split)
    read_table = read_csv_captions if data_format == "csv" else read_jsonl_captions
    return read_table(source, image_dir, image_key, caption_key)


def read_shards_once(source: str, caption_key: str) -> CaptionedImages:
    """Every sample of the shards `source` names, in order, as images (held encoded) with their captions."""
    names, captions, encoded = [], [], []
    for shard in list_shards(source):
        for sample in raw_samples(shard):
            image, texts = image_and_captions(sample, caption_key)
            names.append(f"{sample['__url__']}/{sample['__key__']}")
            captions.append(texts)
            encoded.append(image)
    if not names:
        raise UserError(f"{source}: no samples in these shards")
    return CaptionedImages(names, captions, [], encoded)


class EncodedImages(Dataset):
    """Images held as their files' bytes, labelled like ImageFiles; an undecodable one is an UnreadableImage."""

    def __init__(self, names: list[str], encoded: list[bytes], labels: list[int], transform: Transform,
                 min_side: int | None):
        self.names, self.encoded, self.labels, self.transform, self.min_side = names, encoded, labels, transform, \
            min_side

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int):
        try:
            image = load_rgb_image(io.BytesIO(self.encoded[index]), self.min_side)
        except UNREADABLE_IMAGE_ERRORS as error:
            return UnreadableImage(self.names[index], str(error) or type(error).__name__)
        return self.transform(image), self.labels[index]


def captioned_image_dataset(captioned: CaptionedImages, indices, transform: Transform,
                            min_side: int | None) -> Dataset:
    """The images `indices` of `captioned` (files, or the shards' bytes), each labelled by its index."""
    indices = list(indices)
    if captioned.encoded is not None:
        return EncodedImages([captioned.image_paths[index] for index in indices],
                             [captioned.encoded[index] for index in indices], indices, transform, min_side)
    return ImageFiles([Path(captioned.image_paths[index]) for index in indices], indices, transform, min_side)


def listed_image_names(image_paths: list[str], source: str, image_dir: str | None) -> list[str]:
    """The images as the captions file names them: the image folder (else the file's folder) the reader joined
    them to taken off again, so that a table of them reads as the input does."""
    prefix = os.path.join(image_dir if image_dir is not None else Path(source).parent, "")
    return [path[len(prefix):] if path.startswith(prefix) else path for path in image_paths]


def read_caption_texts(path: str, image_key: str = "filepath", caption_key: str = "caption") -> list[str]:
    """Captions alone: a .txt file's non-empty lines, or the caption column of a CSV/TSV or JSONL table."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl"):
        return table_captions(path, image_key, caption_key)
    if suffix != ".txt":
        raise UserError(f"{path}: expected a .txt file of one caption per line, or a .csv, .tsv or .jsonl table")
    if not Path(path).is_file():
        raise UserError(f"captions file not found: {path}")
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
