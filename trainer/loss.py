"""CLIP's symmetric contrastive loss over the global batch."""
import torch
import torch.nn.functional as F
from torch import nn

from trainer.distributed import gather_rows, gather_with_grad, rank
from trainer.duplicate_captions import same_caption


class ClipLoss(nn.Module):
    """Mean of image→text and text→image cross-entropy, positives on the diagonal of the global batch, and with
    `captions` (each row's caption tokens, padded to one width) also every pair whose captions are identical.

    local_loss=False: every rank computes the full [N, N] logits (N = global batch) and its loss equals the global
    loss. local_loss=True: each rank scores only its own rows against all columns ([B, N]); the mean of the ranks'
    losses is the same global loss at 1/world_size of the compute. Gradients are exact either way (see
    trainer.distributed.gather_with_grad)."""

    def __init__(self, local_loss: bool = False):
        super().__init__()
        self.local_loss = local_loss

    def forward(self, image_features, text_features, logit_scale, captions=None):
        # one gather for both: image and text features side by side
        all_image, all_text = gather_with_grad(torch.cat([image_features, text_features], dim=1)).split(
            [image_features.shape[1], text_features.shape[1]], dim=1)
        all_captions = None if captions is None else gather_rows(captions)
        if not self.local_loss:
            return contrastive_loss(all_image, all_text, logit_scale, all_captions)
        first = rank() * image_features.shape[0]
        targets = cross_entropy_targets(slice(first, first + image_features.shape[0]), all_captions,
                                        image_features.device)
        logits_per_image = logit_scale * image_features @ all_text.T
        logits_per_text = logit_scale * text_features @ all_image.T
        return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets)) / 2


def contrastive_loss(image_features, text_features, logit_scale, captions=None) -> torch.Tensor:
    """The loss of one batch held whole on this device: image i belongs with text i (and, given `captions`, with
    every text whose caption is identical to its own)."""
    targets = cross_entropy_targets(slice(0, image_features.shape[0]), captions, image_features.device)
    logits_per_image = logit_scale * image_features @ text_features.T
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_image.T, targets)) / 2


def cross_entropy_targets(rows: slice, captions, device) -> torch.Tensor:
    """The targets of these rows of the global batch, the same in both directions: each row's own column; given
    the batch's captions, every column whose caption is identical to the row's, in equal shares."""
    if captions is None:
        return torch.arange(rows.start, rows.stop, device=device)
    same = same_caption(captions, rows).float()
    return same / same.sum(dim=1, keepdim=True)
