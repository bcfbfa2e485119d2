"""CLIP's symmetric contrastive loss over the global batch."""
import torch
import torch.nn.functional as F
from torch import nn

from loss.positive_pairs import captions_per_image, positive_pairs, shares
from utils.distributed import gather_rows, gather_with_grad, rank


class ClipLoss(nn.Module):
    """Mean of image→text and text→image cross-entropy over the global batch. Each image's positives are its own
    captions (one on the diagonal, or m = data.captions_per_image: the image's target shared among them, each of
    its captions a text→image row of its own) and, with `captions` (each text's token rows, padded to one width),
    every text whose caption is identical to one of them.

    local_loss=False: every rank computes the full [N, N·m] logits (N = global batch) and its loss equals the global
    loss. local_loss=True: each rank scores only its own rows against all columns; the mean of the ranks' losses is
    the same global loss at 1/world_size of the compute. Gradients are exact either way (see
    utils.distributed.gather_with_grad)."""

    def __init__(self, local_loss: bool = False):
        super().__init__()
        self.local_loss = local_loss

    def forward(self, image_features, text_features, logit_scale, captions=None):
        per_image = captions_per_image(image_features, text_features)
        rows, image_width = image_features.shape
        # one gather for both: each image's features beside its captions'
        gathered = gather_with_grad(torch.cat([image_features, text_features.reshape(rows, -1)], dim=1))
        all_image, all_text = gathered[:, :image_width], gathered[:, image_width:].reshape(-1, text_features.shape[1])
        all_captions = None if captions is None else gather_rows(captions)
        if not self.local_loss:
            return contrastive_loss(all_image, all_text, logit_scale, all_captions)
        first = rank() * rows
        own_images, own_texts = slice(first, first + rows), slice(first * per_image, (first + rows) * per_image)
        every_image, every_text = slice(0, all_image.shape[0]), slice(0, all_text.shape[0])
        device = image_features.device
        image_targets, _ = targets(own_images, every_text, per_image, all_captions, device)
        _, text_targets = targets(every_image, own_texts, per_image, all_captions, device)
        logits_per_image = logit_scale * image_features @ all_text.T
        logits_per_text = logit_scale * text_features @ all_image.T
        return (F.cross_entropy(logits_per_image, image_targets) + F.cross_entropy(logits_per_text, text_targets)) / 2


def contrastive_loss(image_features, text_features, logit_scale, captions=None) -> torch.Tensor:
    """The loss of one batch held whole on this device: image i belongs with its captions (texts i·m .. i·m + m - 1)
    and, given `captions`, with every text whose caption is identical to one of them."""
    per_image = captions_per_image(image_features, text_features)
    every_image, every_text = slice(0, image_features.shape[0]), slice(0, text_features.shape[0])
    device = image_features.device
    logits_per_image = logit_scale * image_features @ text_features.T
    image_targets, text_targets = targets(every_image, every_text, per_image, captions, device)
    return (F.cross_entropy(logits_per_image, image_targets) + F.cross_entropy(logits_per_image.T, text_targets)) / 2


def targets(images: slice, texts: slice, per_image: int, captions, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy targets of these images over these texts, and of these texts over these images: the index of
    each row's one positive where every row has exactly one by construction (one caption per image, no duplicates
    compared), else each row's positives in equal shares."""
    if per_image == 1 and captions is None:
        return (torch.arange(images.start, images.stop, device=device),
                torch.arange(texts.start, texts.stop, device=device))
    positives = positive_pairs(images, texts, per_image, captions, device)
    return shares(positives), shares(positives.T)
