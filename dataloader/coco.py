"""MS-COCO captions: the annotation file read through pycocotools, checked at the door, and the images on disk."""
import contextlib
import dataclasses
import io
import json
import os
from pathlib import Path

from pycocotools.coco import COCO

from utils.errors import UserError

REQUIRED_IMAGE_KEYS = ("id", "file_name")
REQUIRED_ANNOTATION_KEYS = ("id", "image_id", "caption")


def download_help(split: str) -> str:
    """How to get COCO 2017's `split` (train2017 | val2017) where the defaults expect it."""
    return (f"get COCO 2017 with: wget http://images.cocodataset.org/zips/{split}.zip "
            "http://images.cocodataset.org/annotations/annotations_trainval2017.zip && "
            f"unzip {split}.zip -d data/coco && unzip annotations_trainval2017.zip -d data/coco "
            f"(gives data/coco/{split}/*.jpg and data/coco/annotations/captions_{split}.json)")


@dataclasses.dataclass
class CaptionedImages:
    """Images present on disk with their captions (in annotation order), ordered by COCO image id."""
    image_paths: list[str]
    captions: list[list[str]]
    missing: list[str]  # listed in the annotations, not on disk
    encoded: list[bytes] | None = None  # images read from shards, held encoded; image_paths then name them SHARD/KEY


def read_coco_captions(annotation_file, image_dir, split: str = "train2017") -> CaptionedImages:
    """The captioned images of a COCO-format file; `split` names the COCO split a missing file is explained by."""
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    if not annotation_file.is_file():
        raise UserError(f"COCO captions file not found: {annotation_file}; {download_help(split)}")
    if not image_dir.is_dir():
        raise UserError(f"COCO image folder not found: {image_dir}; {download_help(split)}")
    coco = _index(annotation_file)
    captions_by_id = {
        image_id: [annotation["caption"] for annotation in coco.imgToAnns[image_id]]
        for image_id in sorted(coco.imgs) if coco.imgToAnns.get(image_id)
    }
    paths = [os.path.join(image_dir, coco.imgs[image_id]["file_name"]) for image_id in captions_by_id]
    present = existing_files(paths)
    return CaptionedImages(
        image_paths=[path for path in paths if path in present],
        captions=[captions for path, captions in zip(paths, captions_by_id.values()) if path in present],
        missing=[path for path in paths if path not in present],
    )


def _index(annotation_file: Path) -> COCO:
    try:
        with open(annotation_file, encoding="utf-8") as file:
            dataset = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{annotation_file}: not a valid JSON file ({error}); expected COCO captions") from None
    _check_format(dataset, annotation_file)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


def _check_format(dataset, annotation_file: Path):
    expected = "a COCO captions file such as captions_train2017.json"
    if not isinstance(dataset, dict):
        raise UserError(f"{annotation_file}: top level is a JSON {type(dataset).__name__}; expected {expected}")
    for key, required in (("images", REQUIRED_IMAGE_KEYS), ("annotations", REQUIRED_ANNOTATION_KEYS)):
        entries = dataset.get(key)
        if not isinstance(entries, list):
            found = "no" if entries is None else f"a {type(entries).__name__} as"
            raise UserError(f"{annotation_file}: {found} '{key}' list; expected {expected}")
        required_set = set(required)
        for position, entry in enumerate(entries):
            if not (isinstance(entry, dict) and entry.keys() >= required_set):
                missing = next(name for name in required if not isinstance(entry, dict) or name not in entry)
                raise UserError(f"{annotation_file}: {key}[{position}] has no '{missing}' key "
                                f"(each needs {', '.join(required)}); expected {expected}")
    for position, image in enumerate(dataset["images"]):
        if not isinstance(image["file_name"], str):
            raise UserError(f"{annotation_file}: images[{position}] file_name is {image['file_name']!r}, "
                            "expected a string")
    image_ids = {image["id"] for image in dataset["images"]}
    for position, annotation in enumerate(dataset["annotations"]):
        if annotation["image_id"] not in image_ids:
            raise UserError(f"{annotation_file}: annotations[{position}] refers to image_id {annotation['image_id']}, "
                            "which is not in 'images'")
        if not isinstance(annotation["caption"], str):
            raise UserError(f"{annotation_file}: annotations[{position}] caption is {annotation['caption']!r}, "
                            "expected a string")


def existing_files(paths: list[str]) -> set[str]:
    """The paths that are files: one directory listing per folder, not one stat per image."""
    listings = {}
    present = set()
    for path in paths:
        folder, name = os.path.split(path)
        if folder not in listings:
            listings[folder] = _file_names(folder)
        if name in listings[folder]:
            present.add(path)
    return present


def _file_names(folder: str) -> set[str]:
    try:
        return {entry.name for entry in os.scandir(folder) if entry.is_file()}
    except OSError:
        return set()
