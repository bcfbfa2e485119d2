"""Captioned image sets in COCO captions format (COCO val2017, Flickr30k converted to it): every image with all of
its captions, for retrieval evaluation."""
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from utils.errors import UserError

EXPECTED = "a COCO captions file: {'images': [{'id', 'file_name'}...], 'annotations': [{'image_id', 'caption'}...]}"


@dataclass(frozen=True)
class CaptionedImages:
    """Images present on disk with their captions (in annotation order), ordered by image id."""
    image_paths: list[str]
    captions: list[list[str]]
    missing: list[str]  # listed in the annotations, not on disk


def read_coco_captions(annotation_file: str | Path, image_dir: str | Path) -> CaptionedImages:
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    if not annotation_file.is_file():
        raise UserError(f"captions file not found: {annotation_file}")
    if not image_dir.is_dir():
        raise UserError(f"image folder not found: {image_dir}")
    try:
        content = json.loads(annotation_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{annotation_file}: not valid JSON ({error}); expected {EXPECTED}") from None
    images = entries(content, "images", ("id", "file_name"), annotation_file)
    annotations = entries(content, "annotations", ("image_id", "caption"), annotation_file)
    file_names = {image["id"]: image["file_name"] for image in images}
    captions = defaultdict(list)
    for position, annotation in enumerate(annotations):
        if annotation["image_id"] not in file_names:
            raise UserError(f"{annotation_file}: annotations[{position}] refers to image_id "
                            f"{annotation['image_id']!r}, which is not in 'images'")
        captions[annotation["image_id"]].append(str(annotation["caption"]).strip())
    present, present_captions, missing = [], [], []
    for image_id in sorted(captions):
        path = image_dir / file_names[image_id]
        if path.is_file():
            present.append(str(path))
            present_captions.append(captions[image_id])
        else:
            missing.append(str(path))
    return CaptionedImages(present, present_captions, missing)


def entries(content, key: str, required: tuple[str, ...], annotation_file: Path) -> list[dict]:
    if not isinstance(content, dict) or not isinstance(content.get(key), list):
        raise UserError(f"{annotation_file}: no '{key}' list; expected {EXPECTED}")
    for position, entry in enumerate(content[key]):
        missing = [name for name in required if not isinstance(entry, dict) or name not in entry]
        if missing:
            raise UserError(f"{annotation_file}: {key}[{position}] has no '{missing[0]}' key (each needs "
                            f"{', '.join(required)})")
    return content[key]
