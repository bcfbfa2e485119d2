"""Measure training recipes on real images at one budget: each arm is a train.py run with the same model, data,
epochs and batch, differing only in its overrides; the table compares their zero-shot and retrieval results.

    python experiments/recipe_comparison.py --devdata DIR --work DIR [--arms plain,small_data ...] [--epochs N]

DIR (--devdata) holds the development sets (`flickr8k_1k`, `flowers102`, `clothing10`, as ../shared/devdata
exports them). The caption set made from them (prepared once in --work, images shrunk to IMAGE_SIDE px):
  - flickr8k_1k's first 900 images with their 5 human captions each; the last 100 are held out for retrieval;
  - flowers102's and clothing10's train splits, each image with captions written from its class name
    (TRAIN_TEMPLATES, unlike the zero-shot prompts): the caption set a user makes from labels, full of duplicates.
Evaluation: zero-shot on flowers102's and clothing10's test splits, retrieval on the 100 held-out Flickr images.
Runs already finished in --work are read, not repeated, so an interrupted comparison picks up where it stopped.
"""
import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SIDE = 96  # shorter side of the prepared copies: a 64 px crop of half the area is not upsampled
HELD_OUT_FLICKR = 100
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
ARMS = {  # train.py arguments after the base: overrides, or a recipe layered on it with a second --config
    "plain": [],
    "siglip": ["loss.kind=siglip"],
    "siglip_duplicates_positive": ["loss.kind=siglip", "loss.duplicate_captions=positive"],
    "siglip_duplicates_positive_logit_lr": ["loss.kind=siglip", "loss.duplicate_captions=positive",
                                            "optimizer.logit_scale_lr=1e-2"],
    "lr_1e-3": ["optimizer.lr=1e-3"],
    "lr_2e-3": ["optimizer.lr=2e-3"],
    "warmup_0.05": ["schedule.warmup_fraction=0.05"],
    "batch_64": ["train.batch_size=64"],  # twice the steps for the same samples (not a recipe key: yours to set)
    "logit_scale_lr_1e-2": ["optimizer.logit_scale_lr=1e-2"],
    "crop_0.5": ["data.random_crop_min_area=0.5"],
    "aspect_1.33": ["data.random_crop_max_aspect=1.333"],
    "flip": ["data.horizontal_flip=0.5"],
    "jitter_0.2": ["data.color_jitter=0.2"],
    "small_data": ["--config", str(ROOT / "configs" / "recipes" / "small_data.yaml")],
}


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


def run_arm(name: str, overrides: list[str], paths: dict, work: Path, epochs: int, extra: list[str]) -> dict:
    """The final evaluation of one arm's run (trained now unless its summary exists)."""
    run_dir = work / "runs" / name
    summary = run_dir / "summary.json"
    if not summary.exists():
        base = dict(BASE, eval={"tasks": eval_tasks(paths)}, output_dir=str(run_dir))
        base_file = work / "base.json"  # JSON is YAML: the base experiment file
        base_file.write_text(json.dumps(base))
        command = [sys.executable, str(ROOT / "train.py"), "--config", str(base_file),
                   "--train_data", str(paths["train"]), f"train.epochs={epochs}", *overrides, *extra]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=ROOT)
    return json.loads(summary.read_text())


METRICS = [("flowers102/top1", "flowers102 top-1"), ("clothing10/top1", "clothing10 top-1"),
           ("flickr_held_out/image_to_text_r5", "Flickr I→T R@5"), ("flickr_held_out/text_to_image_r5",
                                                                     "Flickr T→I R@5")]


def table(results: dict) -> str:
    lines = ["| arm | " + " | ".join(label for _, label in METRICS) + " | mean | wall s |",
             "|---|" + "---|" * (len(METRICS) + 2)]
    for name, summary in results.items():
        values = [summary["final_eval"][key] for key, _ in METRICS]
        lines.append(f"| {name} | " + " | ".join(f"{value:.1f}" for value in values)
                     + f" | {sum(values) / len(values):.1f} | {summary['wall_time_s_this_session']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devdata", type=Path, required=True,
                        help="the folder holding flickr8k_1k, flowers102 and clothing10")
    parser.add_argument("--work", type=Path, required=True, help="prepared data and runs go here")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of: {', '.join(ARMS)}")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tag", default="", help="suffix of the run folders (a second budget beside the first)")
    parser.add_argument("extra", nargs="*", help="overrides applied to every arm, e.g. train.seed=1")
    args = parser.parse_args(argv)
    unknown = [name for name in args.arms.split(",") if name not in ARMS]
    if unknown:
        parser.error(f"unknown arm {unknown[0]!r}; choose from {', '.join(ARMS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    paths = prepare(args.devdata, args.work)
    results = {name: run_arm(name + args.tag, ARMS[name], paths, args.work, args.epochs, args.extra)
               for name in args.arms.split(",")}
    print(table(results))


if __name__ == "__main__":
    main()
