"""Figures with images in them, as the reference projects show: an image x caption cosine-similarity matrix, and a
grid of examples captioned "Predicted (True)"."""
import math
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.figures import plt, save, shorten

CORRECT_COLOUR, WRONG_COLOUR = "#2f855a", "#c53030"


def plot_similarity_matrix(images: list[Image.Image], captions: list[str], similarity: np.ndarray,
                           path: str | Path, title: str) -> Path:
    """Captions down the side, images as thumbnails along the top, the cosine similarity of each pair in its cell
    (the layout of OpenAI's CLIP notebook). `similarity` is [len(captions), len(images)]."""
    rows, columns = similarity.shape
    figure, axes = plt.subplots(figsize=(3.2 + 1.15 * columns, 1.6 + 0.62 * rows + 1.2))
    low, high = float(np.nanmin(similarity)), float(np.nanmax(similarity))
    matrix = axes.imshow(similarity, cmap="viridis", vmin=low, vmax=high, aspect="auto",
                         extent=(-0.5, columns - 0.5, rows - 0.5, -0.5))
    figure.colorbar(matrix, ax=axes, fraction=0.03, pad=0.02, label="cosine similarity")
    for row, column in np.ndindex(similarity.shape):
        value = similarity[row, column]
        bright = high > low and (value - low) / (high - low) > 0.6
        axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=8,
                  color="black" if bright else "white")
    for column, image in enumerate(images):  # thumbnails in a band above the matrix, each keeping its shape
        thumbnail = image.copy()
        thumbnail.thumbnail((160, 160))
        inset = axes.inset_axes((column - 0.45, -1.55, 0.9, 0.95), transform=axes.transData)
        inset.imshow(thumbnail)
        inset.axis("off")
    axes.set_xlim(-0.5, columns - 0.5)
    axes.set_ylim(rows - 0.5, -1.6)
    axes.set_yticks(range(rows), ["\n".join(textwrap.wrap(caption, 40)[:2]) for caption in captions], fontsize=8)
    axes.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        axes.spines[side].set_visible(False)
    axes.set_title(f"{title}\ncosine similarity of each caption (row) with each image (column)", fontsize=9,
                   loc="left")
    return save(figure, path)


def plot_prediction_grid(images: list[Image.Image], predicted: list[str], true: list[str], path: str | Path,
                         title: str, columns: int = 4) -> Path:
    """Each image captioned "Predicted (True)": green when the prediction is right, red when it is wrong."""
    rows = math.ceil(len(images) / columns)
    figure, axes_grid = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.75 * rows + 0.5), squeeze=False)
    for axes in axes_grid.flat:
        axes.axis("off")
    for axes, image, guess, truth in zip(axes_grid.flat, images, predicted, true):
        axes.imshow(image)
        axes.set_title(f"{shorten(guess, 20)} ({shorten(truth, 20)})", fontsize=9,
                       color=CORRECT_COLOUR if guess == truth else WRONG_COLOUR)
    correct = sum(guess == truth for guess, truth in zip(predicted, true))
    figure.suptitle(f"{title}\nPredicted (True): green right, red wrong · {correct} of {len(images)} right",
                    fontsize=10, x=0.02, ha="left")
    figure.tight_layout()
    return save(figure, path)
