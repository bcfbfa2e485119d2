"""Figures: per-class accuracy of an evaluation, and images beside their top predictions (the demo)."""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works without a display
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from evaluation.k_shot import KShotResult  # noqa: E402
from evaluation.metrics import ClassificationResult  # noqa: E402
from utils.atomic_files import write_atomically  # noqa: E402

TOP1_COLOUR, TOP5_COLOUR, MEAN_COLOUR = "#2b6cb0", "#a3c4ea", "#c05621"
MAX_LABELLED_CLASSES = 50  # beyond this, class names no longer fit on an axis: plot the sorted profile instead


def plot_per_class_accuracy(result: ClassificationResult, path: str | Path, title: str) -> Path:
    scored = sorted((s for s in result.per_class if s.top1 is not None), key=lambda s: (s.top1, s.top5))
    unscored = len(result.per_class) - len(scored)
    subtitle = (f"top-1 {result.top1:.2f}%  ·  top-5 {result.top5:.2f}%  ·  mean per-class recall "
                f"{result.mean_per_class_recall:.2f}%  ·  {result.num_images} images, {len(scored)} classes"
                + (f" (+{unscored} without images)" if unscored else ""))
    if len(scored) <= MAX_LABELLED_CLASSES:
        figure, axes = plt.subplots(figsize=(8, 1.6 + 0.26 * len(scored)))
        rows = range(len(scored))
        axes.barh(rows, [s.top5 for s in scored], color=TOP5_COLOUR, label="top-5")
        axes.barh(rows, [s.top1 for s in scored], color=TOP1_COLOUR, label="top-1")
        axes.set_yticks(rows, [s.name for s in scored], fontsize=8)
        axes.set_ylim(-0.6, len(scored) - 0.4)
        axes.set_xlim(0, 100)
        axes.set_xlabel("accuracy (%)")
        axes.axvline(result.mean_per_class_recall, color=MEAN_COLOUR, linestyle="--", linewidth=1,
                     label="mean per-class recall")
    else:
        figure, axes = plt.subplots(figsize=(10, 4.5))
        ranks = range(1, len(scored) + 1)
        axes.fill_between(ranks, [s.top5 for s in scored], step="mid", color=TOP5_COLOUR, label="top-5")
        axes.fill_between(ranks, [s.top1 for s in scored], step="mid", color=TOP1_COLOUR, label="top-1")
        axes.axhline(result.mean_per_class_recall, color=MEAN_COLOUR, linestyle="--", linewidth=1,
                     label="mean per-class recall")
        axes.set_xlim(0.5, len(scored) + 0.5)
        axes.set_ylim(0, 100)
        axes.set_xlabel("classes, sorted by top-1 accuracy")
        axes.set_ylabel("accuracy (%)")
    handles, labels = axes.get_legend_handles_labels()
    order = [labels.index(label) for label in ("top-1", "top-5", "mean per-class recall")]
    # The legend sits in a row of its own between the title and the plot, where it hides no bar.
    axes.legend([handles[i] for i in order], [labels[i] for i in order], loc="lower left",
                bbox_to_anchor=(0, 1), ncol=3, fontsize=8, frameon=False, borderaxespad=0.2)
    axes.set_title(f"{title}\n{subtitle}", fontsize=9, loc="left", pad=20)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return save(figure, path)


def plot_top_predictions(images: list[Image.Image], image_names: list[str],
                         predictions: list[list[tuple[str, float]]], path: str | Path) -> Path:
    """Each image beside a horizontal bar chart of its top predictions (class name, probability in [0, 1]),
    two images per row; a single image gets a compact figure of its own."""
    columns = 1 if len(images) == 1 else 2
    rows = math.ceil(len(images) / columns)
    # constrained layout leaves each bar chart the room its class names need, whatever their length
    figure = plt.figure(figsize=(7.2 * columns, 2.4 * rows + 0.2), layout="constrained")
    grid = figure.add_gridspec(rows, 2 * columns, width_ratios=[1, 1.4] * columns)
    for index, (image, name, top) in enumerate(zip(images, image_names, predictions)):
        row, column = divmod(index, columns)
        image_axes = figure.add_subplot(grid[row, 2 * column])
        image_axes.imshow(image)
        image_axes.set_title(shorten(name, 32), fontsize=9)
        image_axes.axis("off")
        bars = figure.add_subplot(grid[row, 2 * column + 1])
        draw_probability_bars(bars, top)
    return save(figure, path)


def draw_probability_bars(axes, top: list[tuple[str, float]]) -> None:
    names, probabilities = zip(*top)
    rows = range(len(top))[::-1]  # the most likely class on top
    colours = [TOP1_COLOUR] + [TOP5_COLOUR] * (len(top) - 1)
    axes.barh(rows, [100 * p for p in probabilities], color=colours, height=0.7)
    axes.set_yticks(rows, [shorten(n, 24) for n in names], fontsize=9)
    for row, probability in zip(rows, probabilities):
        axes.text(100 * probability + 1.5, row, f"{100 * probability:.1f}%", va="center", fontsize=8)
    axes.set_xlim(0, 118)  # room for the value label of a bar at 100%
    axes.tick_params(axis="y", length=0)
    axes.set_xticks([0, 25, 50, 75, 100])
    axes.tick_params(axis="x", labelsize=7)
    axes.set_xlabel("probability (%)", fontsize=8)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def plot_k_shot_accuracy(results: list[KShotResult], zero_shot_top1: float | None, full_probe_top1: float | None,
                         path: str | Path, title: str) -> Path:
    """Mean top-1 accuracy against K (log scale) with a band of one standard deviation over seeds; the zero-shot
    and the full-training-set probe accuracies as horizontal lines for comparison."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    ks = [result.k for result in results]
    means = [result.mean for result in results]
    stds = [result.std for result in results]
    axes.fill_between(ks, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                      color=TOP5_COLOUR, alpha=0.6, linewidth=0, label="± 1 std over seeds")
    axes.plot(ks, means, marker="o", color=TOP1_COLOUR, label=f"k-shot linear probe ({len(results[0].seeds)} seeds)")
    if zero_shot_top1 is not None:
        axes.axhline(zero_shot_top1, color=MEAN_COLOUR, linestyle="--", linewidth=1.2,
                     label=f"zero-shot ({zero_shot_top1:.1f}%)")
    if full_probe_top1 is not None:
        axes.axhline(full_probe_top1, color="#4a5568", linestyle=":", linewidth=1.2,
                     label=f"probe on the full training set ({full_probe_top1:.1f}%)")
    axes.set_xscale("log", base=2)
    axes.set_xticks(ks, [str(k) for k in ks])
    axes.set_xlabel("training images per class (K)")
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, frameon=False, loc="best")
    axes.set_title(title, fontsize=9, loc="left")
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return save(figure, path)


def shorten(text: str, length: int) -> str:
    return text if len(text) <= length else text[:length - 1] + "…"


def save(figure, path: str | Path) -> Path:
    path = Path(path)
    write_atomically(path, lambda file: figure.savefig(file, format=path.suffix[1:], dpi=110, bbox_inches="tight"))
    plt.close(figure)
    return path
