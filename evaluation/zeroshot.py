"""Zero-shot classification: a linear head built from class names and prompt templates, applied to images."""
from typing import Iterable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from evaluation.metrics import ClassTally
from evaluation.template_sets import fill_template
from utils.precision import autocast
from utils.tokenizer import tokenize, trim_padding


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
    """Score every batch (dataloader.eval_datasets.Batch) against the head; return the tally and the
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
