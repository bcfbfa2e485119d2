"""Zero-shot results as text (the layout of the project this toolkit follows), as JSON and as a per-class chart."""
import json
from dataclasses import asdict
from pathlib import Path

from evaluation.figures import plot_per_class_accuracy
from evaluation.metrics import ClassificationResult

RULE = "-" * 53


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
    output_dir.mkdir(parents=True, exist_ok=True)
    text_path, json_path = output_dir / f"{name}.txt", output_dir / f"{name}.json"
    text_path.write_text(format_text_report(result), encoding="utf-8")
    json_path.write_text(json.dumps({**run_info, **asdict(result)}, indent=2) + "\n", encoding="utf-8")
    return text_path, json_path


def write_zero_shot_report(result: ClassificationResult, output_dir: str | Path, name: str, run_info: dict,
                           title: str) -> tuple[Path, Path, Path]:
    """<name>.txt, <name>.json (write_reports) and <name>.png (the per-class accuracy chart) in `output_dir`."""
    text_path, json_path = write_reports(result, output_dir, name, run_info)
    return text_path, json_path, plot_per_class_accuracy(result, text_path.with_suffix(".png"), title)
