"""Captions that repeat word for word within a batch (loss.duplicate_captions): captions made from class labels or
templates repeat, and a loss that takes them for negatives pushes an image away from a caption that is its own."""
import torch
import torch.nn.functional as F


def padded_captions(tokens: torch.Tensor, context_length: int) -> torch.Tensor:
    """The batch's token rows with zeros up to the context length: the loader trims each batch to its longest
    caption, so the batches of other ranks and micro-batches come in other widths."""
    return F.pad(tokens, (0, context_length - tokens.shape[1]))


def same_caption(captions: torch.Tensor, rows: slice) -> torch.Tensor:
    """[rows, N] booleans: whether caption i (one of `rows`) is token for token caption j, over [N, L] token rows of
    one width."""
    own = captions[rows]
    same = torch.ones(own.shape[0], captions.shape[0], dtype=torch.bool, device=captions.device)
    # column by column: no [rows, N, L] tensor, and no wait for the device (torch.unique's result size needs one)
    for own_tokens, tokens in zip(own.T, captions.T):
        same &= own_tokens[:, None] == tokens[None, :]
    return same
