"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training")."""
import torch
import torch.nn.functional as F
from torch import nn

from trainer.distributed import gather_rows, gather_with_grad, rank
from trainer.duplicate_captions import same_caption


class SigLipLoss(nn.Module):
    """-1/|B| sum over the global batch's images i and texts j of log sigmoid(z_ij (t x_i.y_j + b)), z_ij = 1 for an
    image and its own caption, -1 for every other pair: each pair is a binary decision of its own, no softmax over
    the batch. With `captions` (each row's caption tokens, padded to one width), z_ij = 1 also where the captions
    of i and j are identical.

    Distributed form: each rank all-gathers the text features (with their gradients) and scores its own images
    against every text of the global batch, divided by its own image count; the mean of the ranks' losses is the
    global loss and DDP's gradient average makes the gradients exact (trainer.distributed.gather_with_grad). We chose
    the all-gather over the paper's ring of text chunks passed between ranks: it is one collective with the same
    result, and the [B, N] logits it holds per rank are small at the batch sizes this toolkit trains with; the ring
    only saves memory at batch sizes of tens of thousands."""

    def forward(self, image_features, text_features, logit_scale, logit_bias, captions=None):
        return sigmoid_loss(image_features, gather_with_grad(text_features), logit_scale, logit_bias,
                            first_own_text=rank() * image_features.shape[0],
                            captions=None if captions is None else gather_rows(captions))


def sigmoid_loss(image_features, text_features, logit_scale, logit_bias, first_own_text: int = 0,
                 captions=None) -> torch.Tensor:
    """The loss of these images against these texts, image i belonging with text first_own_text + i (0: one batch
    held whole on this device) and, given the texts' `captions`, with every text whose caption is identical."""
    logits = logit_scale * image_features @ text_features.T + logit_bias
    rows = image_features.shape[0]
    if captions is None:
        signs = -torch.ones_like(logits)
        own = torch.arange(rows, device=logits.device)
        signs[own, own + first_own_text] = 1
    else:
        signs = same_caption(captions, slice(first_own_text, first_own_text + rows)).to(logits.dtype) * 2 - 1
    return -F.logsigmoid(signs * logits).sum() / rows
