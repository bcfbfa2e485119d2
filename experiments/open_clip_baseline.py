"""open_clip's own trainer on the caption set that experiments.recipe_comparison prepared, with the same model
and the same number of samples seen, its final checkpoint scored by our evaluation on the same tasks: the reference
beside our recipes.

    pip install -r requirements-test.txt   # open_clip_torch and pandas
    python -m experiments.open_clip_baseline --work DIR [--epochs 10] [--seed 0] [open_clip_train option ...]

open_clip's CSV loader makes every row a sample (each caption of an image), where ours shows each image once per
epoch with one of its captions drawn; so open_clip runs for the epochs that see as many samples as our --epochs
(rounded up). Its settings are its defaults (AdamW lr 5e-4, betas 0.9/0.98, eps 1e-6 for a ViT, weight decay 0.2,
cosine schedule) but for the warmup, 20% of the steps as ours (its default of 10,000 steps would outlast the run),
and everything after -- goes to open_clip_train unchanged (e.g. -- --lr 1e-3).
"""
import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

from experiments.caption_set import BASE, EVAL_TEMPLATES, ROOT, open_clip_budget, open_clip_results
from model import model_config_by_name

MODEL_NAME = "recipe-comparison-vit"
WARMUP_FRACTION = 0.2


def open_clip_model_config() -> dict:
    """The comparison's model (BASE) in open_clip's config format: the same architecture, weight for weight."""
    config = model_config_by_name(BASE["model"]["name"], BASE["model"]["overrides"])
    return {"embed_dim": config.embed_dim, "quick_gelu": config.quick_gelu,
            "vision_cfg": {"image_size": config.image_size, "layers": config.vision_layers,
                           "width": config.vision_width, "patch_size": config.vision_patch_size},
            "text_cfg": {"context_length": config.context_length, "vocab_size": config.vocab_size,
                         "width": config.text_width, "heads": config.text_heads, "layers": config.text_layers}}


def train_open_clip(work: Path, epochs: int, seed: int, extra: list[str]) -> Path:
    """open_clip's final checkpoint after as many samples as our `epochs` (trained now unless it exists)."""
    with open(work / "train.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    images = len({row["filepath"] for row in rows})
    open_clip_epochs = math.ceil(epochs * images / len(rows))
    batch = BASE["train"]["batch_size"]
    steps = open_clip_epochs * (len(rows) // batch)
    name = f"run_{open_clip_budget(epochs, seed)}"
    checkpoint = work / "open_clip" / name / "checkpoints" / f"epoch_{open_clip_epochs}.pt"
    if checkpoint.exists():
        return checkpoint
    config_file = work / "open_clip" / f"{MODEL_NAME}.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(open_clip_model_config()))
    print(f"open_clip: {open_clip_epochs} epochs of {len(rows)} rows = {open_clip_epochs * len(rows)} samples "
          f"(ours: {epochs} x {images} images = {epochs * images}), {steps} steps", flush=True)
    arguments = ["--train-data", "train.csv", "--dataset-type", "csv", "--csv-separator", ",",
                 "--csv-img-key", "filepath", "--csv-caption-key", "caption", "--model", MODEL_NAME,
                 "--batch-size", str(batch), "--epochs", str(open_clip_epochs),
                 "--warmup", str(round(WARMUP_FRACTION * steps)), "--workers", "0", "--device", "cpu",
                 "--precision", BASE["train"]["precision"], "--logs", str(work / "open_clip"), "--name", name,
                 "--save-frequency", str(open_clip_epochs), "--report-to", "", "--seed", str(seed), *extra]
    # open_clip reads a model config from a file only through add_model_config: run its trainer in a child
    # process that registers ours first, in the caption table's folder (its image paths are relative to it)
    program = (f"import open_clip, sys; open_clip.add_model_config({str(config_file)!r}); "
               "from open_clip_train.main import main; main(sys.argv[1:])")
    subprocess.run([sys.executable, "-c", program, *arguments], check=True, cwd=work)
    return checkpoint


def score(checkpoint: Path, work: Path) -> dict:
    """Our zero-shot and retrieval scripts on the checkpoint: the metrics recipe_comparison's table reads."""
    results, out = {}, checkpoint.parent.parent / "eval"
    for name, template in EVAL_TEMPLATES.items():
        subprocess.run([sys.executable, str(ROOT / "zeroshot_eval.py"), "--checkpoint_path", str(checkpoint),
                        "--dataset_type", "folder", "--data_dir", str(work / "zeroshot" / name), "--dataset", name,
                        "--templates", template, "--precision", "fp32", "--output_dir", str(out)], check=True)
        report = json.loads((out / f"{name}.json").read_text())
        results[f"{name}/top1"] = report["top1"]
    subprocess.run([sys.executable, str(ROOT / "retrieval_eval.py"), "--checkpoint_path", str(checkpoint),
                    "--annotation_file", str(work / "flickr_held_out.json"), "--image_dir", str(work / "flickr"),
                    "--name", "flickr_held_out", "--precision", "fp32", "--output_dir", str(out)], check=True)
    report = json.loads((out / "flickr_held_out_retrieval.json").read_text())
    results.update({f"flickr_held_out/{direction}_r5": report[f"{direction}_R@5"]
                    for direction in ("image_to_text", "text_to_image")})
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="the folder experiments.recipe_comparison prepared")
    parser.add_argument("--epochs", type=int, default=10, help="our epochs to match in samples seen")
    parser.add_argument("--seed", type=int, default=0, help="open_clip's --seed")
    parser.add_argument("extra", nargs="*", help="open_clip_train options, after --")
    args = parser.parse_args(argv)
    results = score(train_open_clip(args.work, args.epochs, args.seed, args.extra), args.work)
    print(json.dumps(results, indent=1))
    open_clip_results(args.work, args.epochs, args.seed).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
