"""CLIP's symmetric contrastive loss over the global batch."""
import torch
import torch.nn.functional as F
from torch import nn

from trainer.distributed import gather_with_grad, rank


class ClipLoss(nn.Module):
    """Mean of image→text and text→image cross-entropy, positives on the diagonal of the global batch.

    local_loss=False: every rank computes the full [N, N] logits (N = global batch) and its loss equals the global
    loss. local_loss=True: each rank scores only its own rows against all columns ([B, N]); the mean of the ranks'
    losses is the same global loss at 1/world_size of the compute. Gradients are exact either way (see
    trainer.distributed.gather_with_grad)."""

    def __init__(self, local_loss: bool = False):
        super().__init__()
        self.local_loss = local_loss

    def forward(self, image_features, text_features, logit_scale):
        # one gather for both: image and text features side by side
        all_image, all_text = gather_with_grad(torch.cat([image_features, text_features], dim=1)).split(
            [image_features.shape[1], text_features.shape[1]], dim=1)
        if not self.local_loss:
            return contrastive_loss(all_image, all_text, logit_scale)
        rows = image_features.shape[0]
        labels = torch.arange(rows, device=image_features.device) + rank() * rows
        logits_per_image = logit_scale * image_features @ all_text.T
        logits_per_text = logit_scale * text_features @ all_image.T
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def contrastive_loss(image_features, text_features, logit_scale) -> torch.Tensor:
    """The loss of one batch held whole on this device: image i belongs with text i."""
    labels = torch.arange(image_features.shape[0], device=image_features.device)
    logits_per_image = logit_scale * image_features @ text_features.T
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.T, labels)) / 2
