"""Evaluation-only speed-ups that keep the outputs (to float rounding): batch norms folded into the convolutions
before them, and channels-last memory for the ResNet tower, whose convolutions run faster in it on CPUs."""
import torch

from model.clip import CLIP
from model.resnet import ModifiedResNet, fold_batch_norms


def prepare_for_inference(model: CLIP, channels_last: bool = True) -> CLIP:
    """`model` in eval mode, changed in place for speed. It can no longer train, nor be saved as a checkpoint."""
    model.eval()
    if isinstance(getattr(model, "visual", None), ModifiedResNet):
        fold_batch_norms(model.visual)
        if channels_last:
            model.visual.to(memory_format=torch.channels_last)
    return model
