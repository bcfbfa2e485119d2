"""Image-text retrieval recall@K, every image with all of its captions.

image -> text: an image is a hit at K when one of its own captions ranks in the top K of all captions.
text -> image: a caption is a hit at K when its image ranks in the top K of all images.
Ties count against the query (as in evaluation.metrics): a correct item's rank is the number of wrong items that
score at least as high, so constant scores give recall 0, not a lucky hit from the order of the files. Likewise a
NaN score of a wrong item counts as at least as high, and a query whose own score is not finite is ranked last:
NaN features give recall 0, never 100%.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dataloader.coco import CaptionedImages
from dataloader.eval.caption_sets import captioned_image_dataset
from dataloader.eval.eval_datasets import collate_readable
from evaluation.features import (ImageFeatures, cached_image_features, extract_image_features,
                                 extract_text_features, feature_cache_file)
from evaluation.metrics import NOT_RANKED, nonfinite_rows
from evaluation.shard import Shard

DEFAULT_KS = (1, 5, 10)

# (start, stop) -> [stop - start, num_captions]: the similarity of images start .. stop-1 to every caption
SimilarityRows = Callable[[int, int], torch.Tensor]


def retrieval_ranks(similarity_rows: SimilarityRows, caption_image: torch.Tensor, num_images: int,
                    chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(image ranks [num_images], caption ranks [num_captions]). caption_image[c] is the index of caption c's image.
    The similarity matrix is visited in row chunks, twice, so it never has to exist whole."""
    num_captions = len(caption_image)
    own_score = torch.empty(num_captions, dtype=torch.float64)  # each caption's similarity to its own image
    for start in range(0, num_images, chunk_size):
        rows = similarity_rows(start, min(start + chunk_size, num_images)).double().cpu()
        in_chunk = (caption_image >= start) & (caption_image < start + len(rows))
        captions = torch.nonzero(in_chunk).flatten()
        own_score[captions] = rows[caption_image[captions] - start, captions]
    usable_own = torch.where(torch.isfinite(own_score), own_score, float("-inf"))
    best_own = torch.full((num_images,), float("-inf"), dtype=torch.float64)
    best_own.scatter_reduce_(0, caption_image, usable_own, reduce="amax")

    image_ranks = torch.empty(num_images, dtype=torch.long)
    caption_ranks = torch.zeros(num_captions, dtype=torch.long)
    for start in range(0, num_images, chunk_size):
        rows = similarity_rows(start, min(start + chunk_size, num_images)).double().cpu()
        images = torch.arange(start, start + len(rows))
        wrong = caption_image[None, :] != images[:, None]
        # `not below` rather than `>=`: a NaN compares False both ways and must count against the query
        image_ranks[images] = (~(rows < best_own[images, None]) & wrong).sum(dim=1)
        caption_ranks += (~(rows < own_score[None, :]) & wrong).sum(dim=0)
    image_ranks[~torch.isfinite(best_own)] = NOT_RANKED
    caption_ranks[~torch.isfinite(own_score)] = NOT_RANKED
    return image_ranks, caption_ranks


def recall_at_k(image_ranks: torch.Tensor, caption_ranks: torch.Tensor, ks=DEFAULT_KS) -> dict[str, float]:
    """Percent of images (image -> text) and of captions (text -> image) whose rank is below K."""
    recalls = {f"image_to_text_R@{k}": 100.0 * (image_ranks < k).double().mean().item() for k in ks}
    recalls.update({f"text_to_image_R@{k}": 100.0 * (caption_ranks < k).double().mean().item() for k in ks})
    return recalls


def rank_statistics(image_ranks: torch.Tensor, caption_ranks: torch.Tensor) -> dict[str, float]:
    """Mean and median rank of the correct item, counted from 1 (1 = retrieved first), in each direction; an
    item that was NOT_RANKED counts as placed after every candidate."""
    statistics = {}
    for direction, ranks, candidates in (("image_to_text", image_ranks, len(caption_ranks)),
                                         ("text_to_image", caption_ranks, len(image_ranks))):
        positions = ranks.clamp(max=candidates).double() + 1
        statistics[f"{direction}_mean_rank"] = positions.mean().item()
        statistics[f"{direction}_median_rank"] = positions.quantile(0.5).item()
    return statistics


def feature_retrieval_ranks(image_features: torch.Tensor, text_features: torch.Tensor,
                            caption_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """retrieval_ranks with cosine similarity between (not necessarily normalised) image and text features."""
    image_features = F.normalize(image_features.float(), dim=-1)
    text_features = F.normalize(text_features.float(), dim=-1)
    return retrieval_ranks(lambda start, stop: image_features[start:stop] @ text_features.T, caption_image.cpu(),
                           len(image_features))


def feature_retrieval_recall(image_features: torch.Tensor, text_features: torch.Tensor, caption_image: torch.Tensor,
                             ks=DEFAULT_KS) -> dict[str, float]:
    """Recall@K with cosine similarity between (not necessarily normalised) image and text features."""
    return recall_at_k(*feature_retrieval_ranks(image_features, text_features, caption_image), ks)


@dataclass(frozen=True)
class RetrievalResult:
    recalls: dict[str, float]  # "image_to_text_R@1" ... "text_to_image_R@10", in percent
    num_images: int  # the readable images, each scored with all of its captions
    num_captions: int
    ranks: dict[str, float] = field(default_factory=dict)  # rank_statistics: mean and median rank, from 1
    num_nonfinite_images: int = 0  # images / captions whose features hold NaN or infinity: each ranked last
    num_nonfinite_captions: int = 0


def caption_image_features(model, captioned: CaptionedImages, preprocess, device, precision: str = "fp32", *,
                           batch_size: int, num_workers: int = 0, shard: Shard = Shard(),
                           progress: bool = True) -> ImageFeatures:
    """Features of the captioned images, labelled by their index in `captioned` (unreadable ones left out and
    named); this rank encodes its block, the features are gathered in image order."""
    block = shard.block(len(captioned.image_paths))
    images = captioned_image_dataset(captioned, block, preprocess, model.config.image_size)
    loader = DataLoader(images, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_readable,
                        pin_memory=torch.device(device).type == "cuda")
    features = extract_image_features(model, loader, device, precision, progress)
    return ImageFeatures(shard.gather_rows(features.features), shard.gather_rows(features.labels),
                         [path for part in shard.gather(features.unreadable) for path in part])


def cached_caption_image_features(model, captioned: CaptionedImages, preprocess, *, checkpoint: str, name: str,
                                  cache_dir: str | Path, device, precision: str, batch_size: int, num_workers: int = 0,
                                  progress: bool = True) -> tuple[ImageFeatures, Path | None, bool]:
    """(caption_image_features, the cache file <cache_dir>/<name>-images-<hash>.pt they are kept in for these
    weights, images and preprocessing, whether they were read from it)."""
    cache_file = feature_cache_file(cache_dir, f"{name}-images", checkpoint,
                                    {"images": list(map(os.path.abspath, captioned.image_paths))},
                                    {"image_size": model.config.image_size, "mean": list(model.config.image_mean),
                                     "std": list(model.config.image_std), "precision": precision})
    features, from_cache = cached_image_features(cache_file, lambda: caption_image_features(
        model, captioned, preprocess, device, precision, batch_size=batch_size, num_workers=num_workers,
        progress=progress))
    return features, cache_file, from_cache


def text_features(model, texts: list[str], device, precision: str = "fp32", *, batch_size: int,
                  shard: Shard = Shard(), progress: bool = True) -> torch.Tensor:
    """extract_text_features of `texts`; this rank encodes its block, the features are gathered in text order."""
    block = shard.block(len(texts))
    return shard.gather_rows(extract_text_features(model, texts[block.start:block.stop], device, precision,
                                                   batch_size, progress))


def caption_pairs(image_features: ImageFeatures, captions: list[list[str]]) -> tuple[list[str], torch.Tensor]:
    """(every caption of the images in `image_features`, each caption's image as a row of `image_features`);
    the features are labelled by their image's index in `captions`."""
    texts, caption_image = [], []
    for position, image_index in enumerate(image_features.labels.tolist()):
        texts += captions[image_index]
        caption_image += [position] * len(captions[image_index])
    return texts, torch.tensor(caption_image, dtype=torch.long)


def pair_retrieval(image_features: ImageFeatures, caption_features: torch.Tensor, caption_image: torch.Tensor,
                   ks=DEFAULT_KS) -> RetrievalResult:
    """Recall@K and rank statistics of caption_pairs' captions, encoded as `caption_features`."""
    ranks = feature_retrieval_ranks(image_features.features, caption_features, caption_image)
    return RetrievalResult(recall_at_k(*ranks, ks), len(image_features.labels), len(caption_image),
                           rank_statistics(*ranks), nonfinite_rows(image_features.features),
                           nonfinite_rows(caption_features))


def captioned_retrieval(image_features: ImageFeatures, captions: list[list[str]],
                        encode_texts: Callable[[list[str]], torch.Tensor], ks=DEFAULT_KS) -> RetrievalResult:
    """Recall@K of the images in `image_features` (labelled by their index in `captions`) with all of their
    captions; `encode_texts` gives the captions' features (e.g. text_features)."""
    texts, caption_image = caption_pairs(image_features, captions)
    return pair_retrieval(image_features, encode_texts(texts), caption_image, ks)


def clip_scores(image_features: torch.Tensor, caption_features: torch.Tensor,
                caption_image: torch.Tensor) -> torch.Tensor:
    """Each caption's CLIP score with its own image: 100 x the cosine similarity of the normalised features, as
    CLIPScore data filtering uses it (the x100 of CLIP's logit scale, without CLIPScore's 2.5 weight or clipping)."""
    images = F.normalize(image_features.float(), dim=-1)[caption_image]
    return 100.0 * (images * F.normalize(caption_features.float(), dim=-1)).sum(dim=-1)
