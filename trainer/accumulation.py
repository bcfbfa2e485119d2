"""Gradient accumulation over the micro-batches of one optimiser step: the plain average of per-micro-batch losses,
or, for a loss over the whole batch (contrastive), the exact large-batch gradient from cached features."""
import contextlib

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def synchronising_last(ddp_model, index: int, count: int):
    """DDP all-reduces gradients on the last micro-batch's backward only; the others accumulate locally."""
    if isinstance(ddp_model, DistributedDataParallel) and index < count - 1:
        return ddp_model.no_sync()
    return contextlib.nullcontext()


def average_over_micro_batches(ddp_model, micro_batches, loss_of, scaler) -> torch.Tensor:
    """Each micro-batch's loss on its own, gradients averaged over them; returns the mean loss (on the device)."""
    total = 0.0
    for index, batch in enumerate(micro_batches):
        with synchronising_last(ddp_model, index, len(micro_batches)):
            loss = loss_of(ddp_model, batch) / len(micro_batches)
            scaler.scale(loss).backward()
        total = total + loss.detach()
    return total


@contextlib.contextmanager
def batch_norm_statistics_kept(model: nn.Module):
    """Batch norms in train mode normalise by the batch's statistics but leave their running statistics (and
    counters) alone: the cached pass is a second forward over the same images, which must not move them a second
    time, so that k micro-batches update them as k plain forwards do."""
    training = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
                and module.training and module.track_running_stats]
    for module in training:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module in training:
            module.track_running_stats = True


def whole_batch_contrast(ddp_model, micro_batches, features_of, loss_of_features, scaler) -> torch.Tensor:
    """The gradients of one batch made of all micro-batches (open_clip's accum_freq, with the temperature's gradient
    counted once). First every micro-batch's features without gradients, cached; then each micro-batch again with
    gradients, its features put in place of its cached ones, and the whole batch's loss back-propagated: pass j
    gives d loss / d features_j through the tower, so the passes sum to the large batch's gradient. The loss's own
    parameters (temperature, bias) take their gradient in the last pass only. Returns the loss (on the device).

    features_of(model, batch) -> (image features, text features, loss parameters: a tuple of tensors, captions:
    token rows of one width, or None); loss_of_features(image features, text features, *loss parameters,
    captions=captions) -> the loss over those rows, given the captions of all micro-batches (or None)."""
    with torch.no_grad(), batch_norm_statistics_kept(ddp_model):
        cached = [features_of(ddp_model, batch) for batch in micro_batches]
    each_captions = [captions for *_, captions in cached]  # no gradient: the cached ones serve every pass
    captions = None if each_captions[0] is None else torch.cat(each_captions)
    for index, batch in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        with synchronising_last(ddp_model, index, len(micro_batches)):
            image, text, loss_parameters, _ = features_of(ddp_model, batch)
            images = torch.cat([image if j == index else cached[j][0] for j in range(len(micro_batches))])
            texts = torch.cat([text if j == index else cached[j][1] for j in range(len(micro_batches))])
            if not last:
                loss_parameters = tuple(parameter.detach() for parameter in loss_parameters)
            loss = loss_of_features(images, texts, *loss_parameters, captions=captions)
            scaler.scale(loss).backward()
    return loss.detach()
