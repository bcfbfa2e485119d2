"""Measure training recipes on real images at one budget: each arm is a train.py run with the same model, data,
epochs and batch (experiments.caption_set), differing only in its overrides; the table compares their zero-shot
and retrieval results.

    python -m experiments.recipe_comparison --devdata DIR --work DIR [--arms plain,augmented ...] [--epochs N]
                                            [--seeds 0,1,2]

With several seeds each arm is trained once per seed (seed s > 0 in the folder ARM_seedS) and the table gives the
mean over the seeds and the spread (highest minus lowest) of the mean column: two seeds of one recipe differ by
several points on this data. Runs already finished in --work are read, not repeated, so an interrupted comparison
picks up where it stopped.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from experiments.caption_set import (BASE, DEVELOPMENT_SETS, ROOT, eval_tasks, open_clip_results, prepare,
                                     seed_suffix)

ARMS = {  # train.py arguments after the base: overrides, or a recipe layered on it (--config FILE)
    "plain": [],
    "siglip": ["loss.kind=siglip"],
    "siglip_duplicates_positive": ["loss.kind=siglip", "loss.duplicate_captions=positive"],
    "siglip_duplicates_positive_logit_lr": ["loss.kind=siglip", "loss.duplicate_captions=positive",
                                            "optimizer.logit_scale_lr=1e-2"],
    "lr_2e-3": ["optimizer.lr=2e-3"],
    "batch_64": ["train.batch_size=64"],  # twice the steps for the same samples (not a recipe key: yours to set)
    "logit_scale_lr_1e-2": ["optimizer.logit_scale_lr=1e-2"],
    "crop_0.5": ["data.random_crop_min_area=0.5"],
    "aspect_1.33": ["data.random_crop_max_aspect=1.333"],
    "flip": ["data.horizontal_flip=0.5"],
    "jitter_0.2": ["data.color_jitter=0.2"],
    "augmented": ["data.random_crop_min_area=0.5", "data.random_crop_max_aspect=1.33", "data.horizontal_flip=0.5"],
    "captions_3": ["data.captions_per_image=3"],
    "warmup_0.05": ["schedule.warmup_fraction=0.05"],
}


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


def table(results: dict[str, list[tuple[dict, float | None]]]) -> str:
    """One row per arm from its runs' (final metrics, training wall time in seconds or None), one run per seed:
    each metric's mean over the seeds, then the mean of the metrics, their spread over the seeds and the mean wall
    time."""
    lines = ["| arm | " + " | ".join(label for _, label in METRICS) + " | mean | seeds | spread | wall s |",
             "|---|" + "---|" * (len(METRICS) + 4)]
    for name, runs in results.items():
        per_seed = [[metrics[key] for key, _ in METRICS] for metrics, _ in runs]
        means = [sum(column) / len(runs) for column in zip(*per_seed)]
        seed_means = [sum(values) / len(values) for values in per_seed]
        wall_times = [wall_time for _, wall_time in runs if wall_time is not None]
        lines.append(f"| {name} | " + " | ".join(f"{value:.1f}" for value in means)
                     + f" | {sum(means) / len(means):.1f} | {len(runs)} | {max(seed_means) - min(seed_means):.1f} | "
                     + (f"{sum(wall_times) / len(wall_times):.0f} |" if wall_times else "- |"))
    return "\n".join(lines)


def seed_list(text: str) -> list[int]:
    """--seeds: comma-separated non-negative integers."""
    seeds = text.split(",")
    if not all(seed.isdigit() for seed in seeds):
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative integers, got {text!r}")
    return [int(seed) for seed in seeds]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devdata", type=Path, required=True,
                        help="the folder holding flickr8k_1k, flowers102 and clothing10")
    parser.add_argument("--work", type=Path, required=True, help="prepared data and runs go here")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of: {', '.join(ARMS)}")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tag", default="", help="suffix of the run folders (a second budget beside the first)")
    parser.add_argument("--seeds", type=seed_list, default=[0], help="comma-separated training seeds, each a run of "
                        "every arm")
    parser.add_argument("extra", nargs="*", help="overrides applied to every arm, e.g. train.num_threads=2")
    args = parser.parse_args(argv)
    unknown = [name for name in args.arms.split(",") if name not in ARMS]
    if unknown:
        parser.error(f"unknown arm {unknown[0]!r}; choose from {', '.join(ARMS)}")
    missing = [name for name in DEVELOPMENT_SETS if not (args.devdata / name).is_dir()]
    if missing and not (args.work / "train.csv").exists():
        parser.error(f"{args.devdata} lacks {', '.join(missing)}: expected flickr8k_1k/ (images/, captions.json) and "
                     "flowers102/, clothing10/ (train/ and test/ class folders)")
    args.work.mkdir(parents=True, exist_ok=True)
    paths = prepare(args.devdata, args.work)
    results = {}
    for name in args.arms.split(","):
        results[name] = []
        for seed in args.seeds:
            summary = run_arm(name + args.tag + seed_suffix(seed), ARMS[name], paths, args.work, args.epochs,
                              [f"train.seed={seed}", *args.extra])
            results[name].append((summary["final_eval"], summary["wall_time_s_this_session"]))
    open_clip_runs = [open_clip_results(args.work, args.epochs, seed) for seed in args.seeds]  # open_clip_baseline's
    if any(path.exists() for path in open_clip_runs):
        results["open_clip's trainer"] = [(json.loads(path.read_text()), None) for path in open_clip_runs
                                          if path.exists()]
    print(table(results))


if __name__ == "__main__":
    main()
