"""Every evaluation script's result files: zero-shot results as text (the layout of the project this toolkit
follows), as JSON and as a per-class chart; template comparisons; k-shot tables; retrieval reports; similarity
tables. (eval_suite.py's tables are evaluation/suite_report.py.)"""
import csv
import io
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

from evaluation.features import ImageFeatures
from evaluation.figures import plot_k_shot_accuracy, plot_per_class_accuracy
from evaluation.k_shot import KShotResult, run_k_shot
from evaluation.metrics import ClassificationResult
from evaluation.retrieval import RetrievalResult
from utils.atomic_files import write_text_atomically

RULE = "-" * 53


def warn_unreadable(unreadable) -> None:
    """Each image that could not be read, then their count, on stderr: the same words in every script. Items are
    paths, (path, reason) pairs, or anything with .path and .reason (dataloader.eval.eval_datasets.UnreadableImage)."""
    for item in unreadable:
        path, reason = (item, None) if isinstance(item, (str, Path)) else \
            item if isinstance(item, tuple) else (item.path, item.reason)
        print(f"warning: skipped unreadable image {path}" + (f" ({reason})" if reason else ""), file=sys.stderr)
    if unreadable:
        print(f"warning: skipped {len(unreadable)} unreadable image(s)", file=sys.stderr)


def safe_file_name(text: str) -> str:
    """`text` as part of a file name: runs of anything but letters, digits, '_', '.' and '-' become one '_'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-") or "x"


def run_info(checkpoint, dataset: str, precision: str, **details) -> dict:
    """The JSON report's account of the run: what was scored, on what, at which precision, and `details`."""
    return {"checkpoint": str(checkpoint), "dataset": dataset, **details, "precision": precision}


def summary_lines(result: ClassificationResult) -> list[str]:
    return [
        f"Top 1 accuracy = {result.top1:.2f} %",
        f"Top 5 accuracy = {result.top5:.2f} %",
        f"Mean per-class recall = {result.mean_per_class_recall:.2f} %",
    ] + nonfinite_warning(result.num_nonfinite, result.num_images, "images")


def nonfinite_warning(count: int, total: int, items: str) -> list[str]:
    """The line a report carries when scores were NaN or infinite: such a run measured a broken model."""
    if not count:
        return []
    return [f"WARNING: {count} of {total} {items} had non-finite (NaN or infinite) features or scores, "
            "each counted as a miss"]


def format_text_report(result: ClassificationResult) -> str:
    lines = summary_lines(result) + [RULE, "Class wise accuracies (in %)", "", f"{'Top-1':<10}{'Top-5':<10}Class name"]
    for score in result.per_class:
        top1 = "n/a" if score.top1 is None else f"{score.top1:.1f}"
        top5 = "n/a" if score.top5 is None else f"{score.top5:.1f}"
        lines.append(f"{top1:<10}{top5:<10}{score.name}")
    return "\n".join(lines) + "\n"


def write_reports(result: ClassificationResult, output_dir: str | Path, name: str, run_info: dict) -> tuple[Path, Path]:
    """Write <name>.txt and <name>.json into `output_dir`; `run_info` (checkpoint, dataset, templates, counts ...)
    goes into the JSON beside the metrics."""
    output_dir = Path(output_dir)
    text_path, json_path = output_dir / f"{name}.txt", output_dir / f"{name}.json"
    write_text_atomically(text_path, format_text_report(result))
    write_text_atomically(json_path, json.dumps({**run_info, **asdict(result)}, indent=2) + "\n")
    return text_path, json_path


def write_zero_shot_report(result: ClassificationResult, output_dir: str | Path, name: str, run_info: dict,
                           title: str) -> tuple[Path, Path, Path]:
    """<name>.txt, <name>.json (write_reports) and <name>.png (the per-class accuracy chart) in `output_dir`."""
    text_path, json_path = write_reports(result, output_dir, name, run_info)
    return text_path, json_path, plot_per_class_accuracy(result, text_path.with_suffix(".png"), title)


def retrieval_lines(result: RetrievalResult, ks) -> list[str]:
    lines = [f"{direction} R@{k} = {result.recalls[f'{key}_R@{k}']:.2f} %"
             for direction, key in (("image -> text", "image_to_text"), ("text -> image", "text_to_image"))
             for k in ks]
    lines += [f"{direction} {kind} rank = {result.ranks[f'{key}_{kind}_rank']:.1f}"
              for direction, key in (("image -> text", "image_to_text"), ("text -> image", "text_to_image"))
              for kind in ("mean", "median")]
    lines.append(f"{result.num_images} images, {result.num_captions} captions")
    return (lines + nonfinite_warning(result.num_nonfinite_images, result.num_images, "images")
            + nonfinite_warning(result.num_nonfinite_captions, result.num_captions, "captions"))


def write_retrieval_report(result: RetrievalResult, ks, output_dir: str | Path, name: str,
                           run_info: dict) -> tuple[list[str], Path, Path]:
    """(the text lines, <name>_retrieval.txt, <name>_retrieval.json) in `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    lines = retrieval_lines(result, ks)
    text_path, json_path = output_dir / f"{name}_retrieval.txt", output_dir / f"{name}_retrieval.json"
    write_text_atomically(text_path, "\n".join(lines) + "\n")
    report = {**run_info, "num_images": result.num_images, "num_captions": result.num_captions,
              "num_nonfinite_images": result.num_nonfinite_images,
              "num_nonfinite_captions": result.num_nonfinite_captions, **result.recalls, **result.ranks}
    write_text_atomically(json_path, json.dumps(report, indent=2) + "\n")
    return lines, text_path, json_path


def write_template_comparison(names: list[str], results: list[ClassificationResult], output_dir: str | Path,
                              dataset_name: str) -> list[str]:
    """<dataset>_templates.txt/.json: every template set's accuracy on the same images, best top-1 first; the
    text lines and what was written."""
    ranked = sorted(zip(names, results), key=lambda pair: -pair[1].top1)
    lines = [f"Template sets on {dataset_name}, best top-1 first ({results[0].num_images} images)",
             f"{'Top-1':<10}{'Top-5':<10}{'Mean/class':<12}Templates"]
    lines += [f"{r.top1:<10.2f}{r.top5:<10.2f}{r.mean_per_class_recall:<12.2f}{name}" for name, r in ranked]
    output_dir = Path(output_dir)
    write_text_atomically(output_dir / f"{dataset_name}_templates.txt", "\n".join(lines) + "\n")
    comparison = [{"templates": name, "top1": r.top1, "top5": r.top5,
                   "mean_per_class_recall": r.mean_per_class_recall} for name, r in ranked]
    write_text_atomically(output_dir / f"{dataset_name}_templates.json", json.dumps(comparison, indent=2) + "\n")
    return lines + [f"wrote {output_dir / f'{dataset_name}_templates.txt'}, {dataset_name}_templates.json"]


def write_k_shot_table(results: list[KShotResult], path: str | Path) -> list[str]:
    """K, mean and standard deviation over seeds, and the seeds, one row per K; the lines written."""
    lines = [f"{'K':<6}{'mean':<10}{'std':<10}seeds"] + [
        f"{r.k:<6}{r.mean:<10.2f}{r.std:<10.2f}{', '.join(map(str, r.seeds))}" for r in results]
    write_text_atomically(path, "\n".join(lines) + "\n")
    return lines


def write_k_shot_results(train: ImageFeatures, test: ImageFeatures, class_names: list[str], ks: list[int],
                         seeds: list[int], regularisation: float, zero_shot_top1: float, probe_top1: float,
                         stem: Path, title: str) -> list[dict]:
    """Probes on K training images per class: <stem>_k_shot.txt and .png (beside the zero-shot and full probe's
    top-1), the table printed; the results for the JSON report."""
    results = run_k_shot(train.features, train.labels, test.features, test.labels, len(class_names), ks, seeds,
                         regularisation, class_names)
    table = stem.with_name(f"{stem.name}_k_shot.txt")
    lines = write_k_shot_table(results, table)
    plot = plot_k_shot_accuracy(results, zero_shot_top1, probe_top1, table.with_suffix(".png"), title)
    print("\n".join(lines) + f"\nwrote {table}, {plot}")
    return [{"k": r.k, "mean": r.mean, "std": r.std, "seeds": r.seeds, "accuracies": r.accuracies} for r in results]


def write_similarity_table(similarity, captions: list[str], image_names: list[str], path: str | Path) -> Path:
    """The image x caption cosine similarities as CSV: one row per caption, one column per image."""
    path = Path(path)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["caption"] + image_names)
    writer.writerows([caption] + [f"{value:.4f}" for value in row] for caption, row in zip(captions, similarity))
    write_text_atomically(path, table.getvalue())
    return path
