"""Karpathy's split files (dataset_coco.json, dataset_flickr30k.json): the 5k/1k test images the CLIP paper
reports retrieval on, each with all of its sentences.

  {"dataset": "coco", "images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
    "split": "test", "sentences": [{"raw": "A man riding a bike ...", "tokens": [...]}, ...]}, ...]}

Flickr30k's entries have no `filepath`. An image is looked for at IMAGE_DIR/filepath/filename, then at
IMAGE_DIR/filename, so IMAGE_DIR may be COCO's root or its val2014 folder.
"""
import json
import os
from pathlib import Path

from dataloader.coco import CaptionedImages, existing_files, read_coco_captions
from utils.errors import UserError

SPLITS = ("train", "restval", "val", "test")


def is_karpathy_split_file(content) -> bool:
    """Told apart from COCO's captions files, which have 'annotations' and no 'sentences'."""
    images = content.get("images") if isinstance(content, dict) else None
    return isinstance(images, list) and "annotations" not in content and \
        any(isinstance(image, dict) and "sentences" in image for image in images[:1])


def read_retrieval_captions(annotation_file, image_dir, split: str = "test") -> CaptionedImages:
    """A Karpathy split file's `split`, or every captioned image of a COCO captions file."""
    annotation_file = Path(annotation_file)
    try:
        content = json.loads(annotation_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        content = None  # the COCO reader says what is wrong with the file
    if is_karpathy_split_file(content):
        return read_karpathy_split(content, annotation_file, image_dir, split)
    return read_coco_captions(annotation_file, image_dir, split="val2017")


def read_karpathy_split(content: dict, split_file: Path, image_dir, split: str = "test") -> CaptionedImages:
    """The images of `split` with their raw sentences, in file order (`content`: the parsed `split_file`)."""
    image_dir = Path(image_dir)
    if split not in SPLITS:
        raise UserError(f"split {split!r} is not in Karpathy's split files: expected one of {', '.join(SPLITS)}")
    if not image_dir.is_dir():
        raise UserError(f"image folder not found: {image_dir}")
    if not is_karpathy_split_file(content):
        raise UserError(f"{split_file}: expected an 'images' list whose entries hold 'filename', 'split' and "
                        "'sentences' (a Karpathy split file such as dataset_coco.json)")
    paths, captions = [], []
    for position, image in enumerate(content["images"]):
        if not isinstance(image, dict) or not {"filename", "split", "sentences"} <= image.keys():
            raise UserError(f"{split_file}: images[{position}] needs 'filename', 'split' and 'sentences'")
        if image["split"] != split:
            continue
        sentences = [sentence.get("raw") if isinstance(sentence, dict) else None for sentence in image["sentences"]]
        if not sentences or not all(isinstance(text, str) for text in sentences):
            raise UserError(f"{split_file}: images[{position}] ({image['filename']}) needs sentences with a 'raw' "
                            "caption each")
        paths.append(image_path(image_dir, image))
        captions.append([text.strip() for text in sentences])
    if not paths:
        raise UserError(f"{split_file} has no images in split {split!r}")
    present = existing_files(paths)
    return CaptionedImages([path for path in paths if path in present],
                           [texts for path, texts in zip(paths, captions) if path in present],
                           [path for path in paths if path not in present])


def image_path(image_dir: Path, image: dict) -> str:
    flat = os.path.join(image_dir, image["filename"])
    if "filepath" not in image:
        return flat
    nested = os.path.join(image_dir, image["filepath"], image["filename"])
    return nested if os.path.isfile(nested) or not os.path.isfile(flat) else flat
