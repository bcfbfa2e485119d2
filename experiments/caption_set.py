"""The caption set and the training base that the experiments share, made from three public sets in one folder
(`flickr8k_1k/`: images/ and a COCO-format captions.json; `flowers102/` and `clothing10/`: train/ and test/ class
folders, `_` standing for a space in a class name), prepared once in a work folder with images shrunk to
IMAGE_SIDE px:
  - flickr8k_1k's first 900 images with their 5 human captions each; the last 100 are held out for retrieval;
  - flowers102's and clothing10's train splits, each image with captions written from its class name
    (TRAIN_TEMPLATES, unlike the zero-shot prompts): the caption set a user makes from labels, full of duplicates.
Evaluation: zero-shot on flowers102's and clothing10's test splits, retrieval on the 100 held-out Flickr images."""
import csv
import json
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SIDE = 96  # shorter side of the prepared copies: a 64 px crop of half the area is not upsampled
HELD_OUT_FLICKR = 100
DEVELOPMENT_SETS = ("flickr8k_1k", "flowers102", "clothing10")
TRAIN_TEMPLATES = {
    "flowers102": ["a photo of a {}.", "a {} flower.", "a close-up of a {} in bloom."],
    "clothing10": ["a photo of a {}.", "a {} on a plain background.", "{}, a piece of clothing."],
}
EVAL_TEMPLATES = {"flowers102": "a photo of a {}, a type of flower.",
                  "clothing10": "a photo of the {}, a type of clothing."}

BASE = {  # what every arm shares; the arms change recipe keys only
    "model": {"name": "tiny-vit", "overrides": {"image_size": 64, "vision_patch_size": 8, "context_length": 32}},
    "data": {"num_workers": 0, "memory_cache_mb": 2048},
    "train": {"batch_size": 128, "log_every_steps": 20, "precision": "fp32"},  # arms differ in recipe only,
    # never in a precision that auto would choose by timing a busy machine
    "checkpoint": {"every_steps": 500, "keep_last": 1},
}


def seed_suffix(seed: int) -> str:
    """What a run's name adds for its seed: nothing for seed 0, the one runs had before seeds were named."""
    return f"_seed{seed}" if seed else ""


def open_clip_budget(epochs: int, seed: int) -> str:
    """What names one open_clip baseline run: the budget it matches, and its seed."""
    return f"{epochs}_epochs{seed_suffix(seed)}"


def open_clip_results(work: Path, epochs: int, seed: int) -> Path:
    """The scores of the open_clip baseline run for this budget and seed, which the comparison's table reads."""
    return work / "open_clip" / f"results_{open_clip_budget(epochs, seed)}.json"


def shrink(source: Path, target: Path) -> None:
    """A JPEG copy whose shorter side is IMAGE_SIDE (never enlarged)."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.draft("RGB", (IMAGE_SIDE, IMAGE_SIDE))
        image = image.convert("RGB")
        scale = IMAGE_SIDE / min(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        image.save(target, quality=95)


def class_images(split_dir: Path):
    """(class name, image path) of a class-per-folder split; `_` in a folder name stands for a space."""
    for folder in sorted(path for path in split_dir.iterdir() if path.is_dir()):
        for image in sorted(folder.glob("*.jpg")):
            yield folder.name.replace("_", " "), image


def prepare(devdata: Path, work: Path) -> dict:
    """The caption table, the held-out retrieval set and the zero-shot folders in `work`; returns their paths."""
    paths = {"train": work / "train.csv", "retrieval": work / "flickr_held_out.json",
             **{name: work / "zeroshot" / name for name in TRAIN_TEMPLATES}}
    if paths["train"].exists():
        return paths
    rows = []
    flickr = json.loads((devdata / "flickr8k_1k" / "captions.json").read_text())
    images = sorted(flickr["images"], key=lambda image: image["id"])
    held_out_ids = {image["id"] for image in images[-HELD_OUT_FLICKR:]}
    for image in images:
        shrink(devdata / "flickr8k_1k" / "images" / image["file_name"], work / "flickr" / image["file_name"])
    names = {image["id"]: f"flickr/{image['file_name']}" for image in images}
    for caption in flickr["annotations"]:
        if caption["image_id"] not in held_out_ids:
            rows.append((names[caption["image_id"]], caption["caption"].strip()))
    held_out = {"images": [image for image in images if image["id"] in held_out_ids],
                "annotations": [caption for caption in flickr["annotations"] if caption["image_id"] in held_out_ids]}
    paths["retrieval"].write_text(json.dumps(held_out))
    for dataset, templates in TRAIN_TEMPLATES.items():
        for class_name, image in class_images(devdata / dataset / "train"):
            relative = f"{dataset}/{image.parent.name}/{image.name}"
            shrink(image, work / relative)
            rows.extend((relative, template.format(class_name)) for template in templates)
        for class_name, image in class_images(devdata / dataset / "test"):
            shrink(image, paths[dataset] / class_name / image.name)
    with open(work / "train.csv.partial", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["filepath", "caption"])
        writer.writerows(rows)
    (work / "train.csv.partial").rename(paths["train"])
    return paths


def eval_tasks(paths: dict) -> list[dict]:
    tasks = [{"kind": "zeroshot", "name": name, "dataset_type": "folder", "data_dir": str(paths[name]),
              "templates": EVAL_TEMPLATES[name]} for name in TRAIN_TEMPLATES]
    tasks.append({"kind": "retrieval", "name": "flickr_held_out", "annotation_file": str(paths["retrieval"]),
                  "image_dir": str(paths["retrieval"].parent / "flickr")})
    return tasks
