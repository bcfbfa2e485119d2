"""Zero-shot classification: a linear head built from class names and prompt templates, applied to images."""
from typing import Iterable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from dataloader.eval.eval_datasets import EvalSet, UnreadableImage, collate_readable
from evaluation.features import ImageFeatures
from evaluation.metrics import ClassificationResult, ClassTally, summarise
from evaluation.shard import Shard
from evaluation.template_sets import fill_template, load_templates
from utils.errors import UserError
from utils.precision import autocast
from utils.tokenizer import tokenize, trim_padding


def zero_shot_scores(model, eval_set: EvalSet, template_sets: list[list[str]], device: torch.device | str,
                     precision: str = "fp32", *, batch_size: int, num_workers: int = 0, channels_last: bool = False,
                     shard: Shard = Shard(), progress: bool = True) -> tuple[list[ClassificationResult],
                                                                           list[UnreadableImage]]:
    """Top-1/top-5/mean per-class accuracy of `model` on `eval_set`, one result per template set, and the images
    that could not be read. The class text embeddings are computed once per call; this rank scores its block of
    the images and the counts are summed over ranks."""
    heads = [zero_shot_head(model, eval_set.class_names, templates, device, precision) for templates in template_sets]
    images = Subset(eval_set.dataset, shard.block(len(eval_set.dataset)))
    loader = DataLoader(images, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_readable,
                        pin_memory=torch.device(device).type == "cuda")
    tallies, unreadable = classify_with_heads(model, loader, heads, device, precision, channels_last, progress)
    tallies = [tally.summed_over(shard.sum) for tally in tallies]
    unreadable = [image for part in shard.gather(unreadable) for image in part]
    if not tallies[0].images.sum():
        raise UserError(f"none of the {len(eval_set.dataset)} images of {eval_set.name} could be read")
    return [summarise(tally, eval_set.class_names) for tally in tallies], unreadable


@torch.inference_mode()
def zero_shot_head(model, class_names: list[str], templates: list[str], device: torch.device | str,
                   precision: str = "fp32", batch_size: int = 256) -> torch.Tensor:
    """[embed_dim, num_classes] fp32 matrix whose column c is the normalised mean of the normalised text
    embeddings of every template filled with class c (the CLIP paper's prompt ensembling)."""
    prompts = [fill_template(template, name) for name in class_names for template in templates]
    prompt_class = torch.arange(len(class_names), device=device).repeat_interleave(len(templates))
    tokens = tokenize(prompts, context_length=model.config.context_length)
    class_sums = None
    for start in range(0, len(prompts), batch_size):
        with autocast(device, precision):
            embeddings = model.encode_text(trim_padding(tokens[start:start + batch_size]).to(device))
        embeddings = F.normalize(embeddings.float(), dim=-1)
        if class_sums is None:
            class_sums = torch.zeros(len(class_names), embeddings.shape[1], device=device)
        class_sums.index_add_(0, prompt_class[start:start + batch_size], embeddings)
    # The direction of the sum is the direction of the mean.
    return F.normalize(class_sums, dim=-1).T.contiguous()


@torch.inference_mode()
def image_logits(model, images: torch.Tensor, head: torch.Tensor, device: torch.device | str,
                 precision: str = "fp32", channels_last: bool = False) -> torch.Tensor:
    """Cosine similarity of each image with each class: [N, num_classes] fp32."""
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(device, precision):
        features = model.encode_image(images)
    return F.normalize(features.float(), dim=-1) @ head


def classify(model, batches: Iterable, head: torch.Tensor, device: torch.device | str,
             precision: str = "fp32", channels_last: bool = False,
             progress: bool = True) -> tuple[ClassTally, list]:
    """Score every batch (dataloader.eval.eval_datasets.Batch) against the head; return the tally and the
    images that could not be read."""
    tallies, unreadable = classify_with_heads(model, batches, [head], device, precision, channels_last, progress)
    return tallies[0], unreadable


def classify_with_heads(model, batches: Iterable, heads: list[torch.Tensor], device: torch.device | str,
                        precision: str = "fp32", channels_last: bool = False,
                        progress: bool = True) -> tuple[list[ClassTally], list]:
    """Like classify, with one tally per head (e.g. one head per prompt template set): each image is encoded
    once and scored against every head."""
    tallies, unreadable = [ClassTally(head.shape[1]) for head in heads], []
    combined = torch.cat(heads, dim=1)
    for batch in tqdm(batches, desc="classify", unit="batch", disable=not progress):
        unreadable += batch.unreadable
        if len(batch.labels):
            logits = image_logits(model, batch.images, combined, device, precision, channels_last)
            for tally, head_logits in zip(tallies, logits.split([head.shape[1] for head in heads], dim=1)):
                tally.add(head_logits, batch.labels)
    return tallies, unreadable


@torch.inference_mode()
def class_probabilities(model, images: torch.Tensor, head: torch.Tensor, device: torch.device | str,
                        precision: str = "fp32") -> torch.Tensor:
    """Softmax over classes of the scaled cosine similarities, as the model was trained: [N, num_classes]."""
    logit_scale = model.logit_scale.exp().float().to(device)
    return (logit_scale * image_logits(model, images, head, device, precision)).softmax(dim=-1).cpu()


def image_list_probabilities(model, images: list, preprocess, head: torch.Tensor, device: torch.device | str,
                             precision: str = "fp32", batch_size: int = 32) -> torch.Tensor:
    """class_probabilities of a list of PIL images, preprocessed and scored `batch_size` at a time."""
    parts = [class_probabilities(model, torch.stack([preprocess(image) for image in images[start:start + batch_size]]),
                                 head, device, precision) for start in range(0, len(images), batch_size)]
    return torch.cat(parts)


def features_top1(model, eval_set: EvalSet, templates_spec: str | None, features: ImageFeatures,
                  device: torch.device | str, precision: str) -> float:
    """Zero-shot top-1 of image features already computed (e.g. a linear probe's test features): no second pass
    over the images. `templates_spec` as load_templates reads it (default: the set's own templates)."""
    _, templates = load_templates(templates_spec or eval_set.default_templates)
    head = zero_shot_head(model, eval_set.class_names, templates, device, precision).cpu()
    tally = ClassTally(len(eval_set.class_names))
    tally.add(F.normalize(features.features, dim=-1) @ head, features.labels)
    return summarise(tally, eval_set.class_names).top1
