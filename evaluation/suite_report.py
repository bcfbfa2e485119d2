"""The suite's results as the reference projects print them: a Markdown table per dataset and task (rows =
checkpoints, columns = domains or caption sets, `avg` last), a long-format CSV, a heatmap, per-class side-by-side
tables, and every recall of the retrieval cells."""
import csv
import io
from pathlib import Path

from evaluation.report import safe_file_name
from evaluation.suite_plan import CAPTION_TASKS, HEADLINES, CellResult
from evaluation.table_figures import plot_per_class_side_by_side, plot_results_heatmap
from utils.atomic_files import write_text_atomically

CSV_COLUMNS = ("checkpoint", "dataset", "domain", "task", "metric", "value", "n_images")
TASK_TITLES = {"zeroshot": "zero-shot", "linear_probe": "linear probe", "retrieval": "retrieval"}
DIRECTIONS = (("image → text", "image_to_text"), ("text → image", "text_to_image"))
UNITS = "Top-1 accuracy in % (two decimals); retrieval: the mean of its recalls in %, every recall below its " \
        "table. `avg` is the unweighted mean over the columns, as in the reference tables; it is left empty when " \
        "a column failed."


def tables(results: list[CellResult]) -> dict[tuple[str, str], dict]:
    """{(dataset, task): {"checkpoints": [...], "domains": [...], "cells": {(checkpoint, domain): CellResult}}}
    in the order the cells were planned."""
    grouped = {}
    for result in results:
        cell = result.cell
        table = grouped.setdefault((cell.dataset, cell.task), {"checkpoints": [], "domains": [], "cells": {}})
        for key, value in (("checkpoints", cell.checkpoint.label), ("domains", cell.domain)):
            if value not in table[key]:
                table[key].append(value)
        table["cells"][cell.checkpoint.label, cell.domain] = result
    return grouped


def headline_row(table: dict, task: str, checkpoint: str) -> tuple[list[float | None], float | None]:
    """(the headline value of each domain, None where the cell failed; their mean, None unless every domain has
    a value)."""
    metric = HEADLINES[task].metric
    values = [table["cells"][checkpoint, domain].metrics.get(metric) for domain in table["domains"]]
    return values, (sum(values) / len(values) if None not in values else None)


def recall_ks(table: dict) -> list[str]:
    """The K of a retrieval table's recall@K, from its first scored cell."""
    metrics = next((result.metrics for result in table["cells"].values() if result.error is None), {})
    return [key.rsplit("@", 1)[1] for key in metrics if key.startswith("image_to_text_R@")]


def table_title(dataset: str, task: str, table: dict) -> str:
    if task not in CAPTION_TASKS:
        return f"{dataset}: {TASK_TITLES[task]}"
    return (f"{dataset}: {TASK_TITLES[task]}, {HEADLINES[task].name} of image → text and text → image "
            + ", ".join(f"R@{k}" for k in recall_ks(table)))


def markdown_tables(results: list[CellResult]) -> str:
    lines, notes = ["# Evaluation results", "", UNITS], []
    for (dataset, task), table in tables(results).items():
        lines += ["", f"## {table_title(dataset, task, table)}", "",
                  "| checkpoint | " + " | ".join(table["domains"]) + " | avg |",
                  "|---|" + "---:|" * (len(table["domains"]) + 1)]
        for checkpoint in table["checkpoints"]:
            values, average = headline_row(table, task, checkpoint)
            shown = []
            for domain, value in zip(table["domains"], values):
                result = table["cells"][checkpoint, domain]
                if result.error is not None:
                    notes.append(f"- {checkpoint} · {dataset}/{domain} · {TASK_TITLES[task]}: failed: {result.error}")
                    shown.append("failed")
                    continue
                warning = cell_warning(result)
                if warning:
                    notes.append(f"- {checkpoint} · {dataset}/{domain} · {TASK_TITLES[task]}: {warning}")
                shown.append(f"{value:.2f}" + (" ⚠" if has_nonfinite(result) else ""))
            shown.append("" if average is None else f"{average:.2f}")
            lines.append(f"| {checkpoint} | " + " | ".join(shown) + " |")
        if task in CAPTION_TASKS:
            lines += recall_table(dataset, task, table)
    if notes:
        lines += ["", "## Notes", ""] + notes
    return "\n".join(lines) + "\n"


def recall_table(dataset: str, task: str, table: dict) -> list[str]:
    """Every recall@K of each scored cell of a retrieval table, in %, with its images and captions."""
    ks = recall_ks(table)
    lines = ["", f"### {dataset}: {TASK_TITLES[task]}, every recall", "",
             "| checkpoint | caption set | " + " | ".join(f"{direction} R@{k}" for direction, _ in DIRECTIONS
                                                       for k in ks) + " | images | captions |",
             "|---|---|" + "---:|" * (2 * len(ks) + 2)]
    for (checkpoint, domain), result in table["cells"].items():
        if result.error is None:
            recalls = [f"{result.metrics[f'{key}_R@{k}']:.2f}" for _, key in DIRECTIONS for k in ks]
            lines.append(f"| {checkpoint} | {domain} | " + " | ".join(recalls)
                         + f" | {result.n_images} | {int(result.metrics['num_captions'])} |")
    return lines


def has_nonfinite(result: CellResult) -> bool:
    return bool(result.num_nonfinite or result.metrics.get("num_nonfinite_captions"))


def cell_warning(result: CellResult) -> str:
    parts = []
    if result.num_nonfinite:
        parts.append(f"WARNING: {result.num_nonfinite} of {result.n_images} images had non-finite (NaN or infinite) "
                     "scores, each counted as a miss (⚠)")
    if result.metrics.get("num_nonfinite_captions"):
        parts.append(f"WARNING: {int(result.metrics['num_nonfinite_captions'])} of "
                     f"{int(result.metrics['num_captions'])} captions had non-finite (NaN or infinite) features, "
                     "each counted as a miss (⚠)")
    if result.num_unreadable:
        parts.append(f"{result.num_unreadable} unreadable image(s) skipped")
    if result.metrics.get("num_missing_images"):
        parts.append(f"{int(result.metrics['num_missing_images'])} listed image(s) not found")
    return "; ".join(parts)


def csv_rows(results: list[CellResult]) -> list[dict]:
    rows = []
    for result in results:
        cell = result.cell
        base = {"checkpoint": cell.checkpoint.label, "dataset": cell.dataset, "domain": cell.domain,
                "task": cell.task, "n_images": result.n_images}
        if result.error is not None:
            rows.append({**base, "metric": "error", "value": result.error})
            continue
        metrics = {**result.metrics, "num_nonfinite": result.num_nonfinite,
                   "num_unreadable_images": result.num_unreadable}
        rows += [{**base, "metric": metric, "value": value} for metric, value in metrics.items()]
    return rows


def write_suite_report(results: list[CellResult], output_dir: str | Path, title: str) -> list[Path]:
    """results.md, results.csv, results.png and per_class/<checkpoint>_<dataset>_<domain>.md/.png (one per
    linear-probe cell: zero-shot beside linear probe, per class) in `output_dir`; the paths written."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    markdown, table_csv = output_dir / "results.md", output_dir / "results.csv"
    write_text_atomically(markdown, markdown_tables(results))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(csv_rows(results))
    write_text_atomically(table_csv, table.getvalue())
    panels = [(table_title(dataset, task, table), table["checkpoints"], table["domains"],
               [values + [average] for values, average in (headline_row(table, task, row)
                                                           for row in table["checkpoints"])])
              for (dataset, task), table in tables(results).items()]
    written = [markdown, table_csv, plot_results_heatmap(panels, output_dir / "results.png", title)]
    for result in results:
        if result.cell.task == "linear_probe" and result.error is None:
            written += write_per_class(result, output_dir / "per_class")
    return written


def per_class_markdown(result: CellResult) -> str:
    cell = result.cell
    lines = [f"# {cell.dataset}/{cell.domain}, {cell.checkpoint.label}: zero-shot and linear probe per class", "",
             f"Top-1 accuracy in % on the same {result.n_images} test images; `overall` counts every image.", "",
             "| class | zero-shot | linear probe |", "|---|---:|---:|"]
    for name, scores in [(row["class"], row) for row in result.per_class] + [("**overall**", result.overall)]:
        shown = ["n/a" if scores[column] is None else f"{scores[column]:.2f}"
                 for column in ("zeroshot", "linear_probe")]
        lines.append(f"| {name} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def write_per_class(result: CellResult, folder: Path) -> list[Path]:
    cell = result.cell
    folder.mkdir(parents=True, exist_ok=True)
    stem = "_".join(safe_file_name(part) for part in (cell.checkpoint.label, cell.dataset, cell.domain))
    table = folder / f"{stem}.md"
    write_text_atomically(table, per_class_markdown(result))
    figure = plot_per_class_side_by_side(
        result.per_class, result.overall, folder / f"{stem}.png",
        f"{cell.dataset}/{cell.domain}, {cell.checkpoint.label}: top-1 per class on {result.n_images} test images")
    return [table, figure]

