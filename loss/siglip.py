"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training")."""
import torch
import torch.nn.functional as F
from torch import nn

from loss.positive_pairs import captions_per_image, positive_pairs
from utils.distributed import gather_rows, gather_with_grad, rank


class SigLipLoss(nn.Module):
    """-1/|B| sum over the global batch's images i and texts j of log sigmoid(z_ij (t x_i.y_j + b)), z_ij = 1 for an
    image and its own caption (each of its own, with data.captions_per_image), -1 for every other pair: each pair is
    a binary decision of its own, no softmax over the batch. With `captions` (each text's tokens, padded to one
    width), z_ij = 1 also where text j's caption is identical to one of image i's own.

    Distributed form: each rank all-gathers the text features (with their gradients) and scores its own images
    against every text of the global batch, divided by its own image count; the mean of the ranks' losses is the
    global loss and DDP's gradient average makes the gradients exact (utils.distributed.gather_with_grad). We chose
    the all-gather over the paper's ring of text chunks passed between ranks: it is one collective with the same
    result, and the [B, N] logits it holds per rank are small at the batch sizes this toolkit trains with; the ring
    only saves memory at batch sizes of tens of thousands."""

    def forward(self, image_features, text_features, logit_scale, logit_bias, captions=None):
        return sigmoid_loss(image_features, gather_with_grad(text_features), logit_scale, logit_bias,
                            first_image=rank() * image_features.shape[0],
                            per_image=captions_per_image(image_features, text_features),
                            captions=None if captions is None else gather_rows(captions))


def sigmoid_loss(image_features, text_features, logit_scale, logit_bias, first_image: int = 0, per_image: int = 1,
                 captions=None) -> torch.Tensor:
    """The loss of these images (the global batch's from `first_image` on; 0: one batch held whole on this device)
    against these texts, z = 1 for each image's own `per_image` captions (texts i·m .. i·m + m - 1 of global image
    i) and, given the texts' `captions`, for every text whose caption is identical to one of them."""
    logits = logit_scale * image_features @ text_features.T + logit_bias
    images = slice(first_image, first_image + image_features.shape[0])
    positives = positive_pairs(images, slice(0, text_features.shape[0]), per_image, captions, logits.device)
    signs = positives.to(logits.dtype) * 2 - 1
    return -F.logsigmoid(signs * logits).sum() / image_features.shape[0]
