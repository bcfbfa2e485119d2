"""The contrastive loss on held-out captioned images: the training objective, measured on data it never saw."""
import torch
from torch.utils.data import DataLoader

from dataloader.coco import CaptionedImages
from dataloader.eval.caption_sets import captioned_image_dataset
from dataloader.eval.eval_datasets import collate_readable
from evaluation.shard import Shard
from loss.clip import contrastive_loss
from loss.siglip import sigmoid_loss
from utils.errors import UserError
from utils.precision import autocast
from utils.tokenizer import tokenize, trim_padding


@torch.no_grad()
def validation_loss(model, captioned: CaptionedImages, preprocess, device, precision: str = "fp32", *,
                    batch_size: int, num_workers: int = 0, shard: Shard = Shard()) -> float:
    """Mean contrastive loss over consecutive batches of `batch_size` images (in `captioned` order), each image
    with its first caption; a last partial batch is left out, as in training, since fewer negatives make a lower
    loss. Each batch is scored whole by one rank (batch i by rank i % world_size), so the number does not depend on
    how the batches are shared out; unreadable images are left out of their batch, and a batch with none readable
    is not scored: the mean is over the batches scored, on all ranks."""
    num_batches = len(captioned.image_paths) // batch_size
    mine = [list(range(index * batch_size, (index + 1) * batch_size))
            for index in range(shard.rank, num_batches, shard.world_size)]
    images = captioned_image_dataset(captioned, range(len(captioned.image_paths)), preprocess,
                                     model.config.image_size)
    loader = DataLoader(images, batch_sampler=mine, num_workers=num_workers, collate_fn=collate_readable,
                        pin_memory=torch.device(device).type == "cuda")
    loss_of_batch = sigmoid_loss if model.config.sigmoid_logits else contrastive_loss  # the model's training loss
    loss_sum, scored = torch.zeros((), dtype=torch.float64), 0
    for batch in loader:
        if not len(batch.labels):  # no collective inside the loop: a rank that skips keeps in step with the others
            continue
        tokens = tokenize([captioned.captions[index][0] for index in batch.labels.tolist()],
                          model.config.context_length)
        with autocast(device, precision):
            outputs = model(batch.images.to(device), trim_padding(tokens).to(device))
        loss_sum += loss_of_batch(*(output.float() for output in outputs)).cpu()
        scored += 1
    loss_total, batches = shard.sum(torch.stack([loss_sum, torch.tensor(scored, dtype=torch.float64)])).tolist()
    if not batches:  # the same sum on every rank: all of them raise
        raise UserError(f"validation loss: none of the {num_batches * batch_size} images scored can be read "
                        f"(the first: {captioned.image_paths[0]})")
    return loss_total / batches
