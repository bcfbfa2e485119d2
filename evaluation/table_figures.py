"""Figures of result tables: the suite's heatmap (checkpoints x domains) and per-class side-by-side bars."""
from pathlib import Path

import numpy as np

from evaluation.figures import MEAN_COLOUR, TOP1_COLOUR, plt, save, shorten

FAILED_COLOUR = "#d9d9d9"

# (panel title, row names, column names without avg, rows of values: one per column plus avg; None = failed/empty)
Panel = tuple[str, list[str], list[str], list[list[float | None]]]


def plot_results_heatmap(panels: list[Panel], path: str | Path, title: str) -> Path:
    """One heatmap per (dataset, task), stacked; every cell shows its value, colours on one 0-100% scale so that
    the same colour means the same accuracy in every panel. Failed cells are grey and say so."""
    heights = [1.0 + 0.45 * len(rows) for _, rows, _, _ in panels]
    width = max(4.5, 2.2 + 1.05 * max(len(columns) + 1 for _, _, columns, _ in panels))
    figure, axes_list = plt.subplots(len(panels), 1, figsize=(width, sum(heights) + 0.8),
                                     gridspec_kw={"height_ratios": heights}, squeeze=False, layout="constrained")
    colour_map = plt.get_cmap("viridis").with_extremes(bad=FAILED_COLOUR)
    image = None
    for axes, (panel_title, rows, columns, values) in zip(axes_list[:, 0], panels):
        matrix = np.array([[np.nan if value is None else value for value in row] for row in values], dtype=float)
        image = axes.imshow(np.ma.masked_invalid(matrix), cmap=colour_map, vmin=0, vmax=100, aspect="auto")
        for row, column in np.ndindex(matrix.shape):
            value = matrix[row, column]
            if np.isnan(value):
                text, colour = ("failed" if column < len(columns) else "–"), "#333333"
            else:
                text, colour = f"{value:.1f}", "black" if value > 60 else "white"
            axes.text(column, row, text, ha="center", va="center", fontsize=8, color=colour,
                      fontweight="bold" if column == len(columns) else "normal")
        axes.axvline(len(columns) - 0.5, color="white", linewidth=3)  # the average apart from the domains
        axes.set_xticks(range(len(columns) + 1), [shorten(c, 16) for c in columns] + ["avg"], fontsize=8)
        axes.set_yticks(range(len(rows)), [shorten(r, 24) for r in rows], fontsize=8)
        axes.tick_params(length=0)
        axes.set_title(panel_title, fontsize=9, loc="left")
    figure.colorbar(image, ax=axes_list[:, 0].tolist(), label="top-1 accuracy (%)", shrink=0.9, aspect=30)
    figure.suptitle(title, fontsize=10, x=0.02, ha="left")
    return save(figure, path)


def plot_per_class_side_by_side(per_class: list[dict], overall: dict[str, float], path: str | Path,
                                title: str) -> Path:
    """Zero-shot and linear-probe top-1 per class (rows {"class", "zeroshot", "linear_probe"}) as paired horizontal
    bars, `overall` at the top, apart."""
    rows_top_down = [{"class": "overall", **overall}] + per_class
    names = [row["class"] for row in rows_top_down][::-1]  # barh counts upwards: the first class nearest the top
    values_by_column = {column: [row[column] for row in rows_top_down][::-1] for column in ("zeroshot", "linear_probe")}
    figure, axes = plt.subplots(figsize=(7.5, 1.4 + 0.42 * len(names)))
    rows = np.arange(len(names), dtype=float)
    rows[-1] += 0.6  # a gap before the overall row
    for offset, column, label, colour in ((0.2, "zeroshot", "zero-shot", MEAN_COLOUR),
                                          (-0.2, "linear_probe", "linear probe", TOP1_COLOUR)):
        values = values_by_column[column]
        axes.barh(rows + offset, [0 if value is None else value for value in values], height=0.38, color=colour,
                  label=label)
        for row, value in zip(rows, values):
            axes.text((value or 0) + 1, row + offset, "n/a" if value is None else f"{value:.1f}", va="center",
                      fontsize=7)
    axes.set_yticks(rows, [shorten(name, 28) for name in names], fontsize=8)
    axes.get_yticklabels()[-1].set_fontweight("bold")
    axes.set_xlim(0, 112)
    axes.set_xticks([0, 25, 50, 75, 100])
    axes.set_xlabel("top-1 accuracy (%)")
    axes.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=2, fontsize=8, frameon=False, borderaxespad=0.2)
    axes.set_title(title, fontsize=9, loc="left", pad=20)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return save(figure, path)
