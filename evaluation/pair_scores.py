"""CLIP scores of image-caption pairs for filtering data: one CSV row per pair with the image as the captions file
names it, the caption and the score (100 x the cosine similarity of the normalised features)."""
import csv
import io
from pathlib import Path
from typing import Callable

import torch

from dataloader.coco import CaptionedImages
from evaluation.features import ImageFeatures
from evaluation.retrieval import clip_scores
from utils.atomic_files import write_text_atomically

SCORE_COLUMN = "clip_score"


def write_pair_scores(path: str | Path, captioned: CaptionedImages, image_features: ImageFeatures,
                      texts: list[str], caption_features: torch.Tensor, caption_image: torch.Tensor,
                      image_names: Callable[[list[str]], list[str]], columns: tuple[str, str]) -> Path:
    """A row per caption of evaluation.retrieval.caption_pairs (`texts`, their image rows `caption_image`): the
    image as `image_names` gives it, the caption, the CLIP score; under the input's (image, caption) column names
    and SCORE_COLUMN, written whole or not at all."""
    images = [captioned.image_paths[index] for index in image_features.labels[caption_image].tolist()]
    scores = clip_scores(image_features.features, caption_features, caption_image).tolist()
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow([*columns, SCORE_COLUMN])
    writer.writerows((image, text, f"{score:.4f}") for image, text, score in zip(image_names(images), texts, scores))
    write_text_atomically(path, table.getvalue())
    return Path(path)
