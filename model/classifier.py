"""An image classifier fine-tuned from CLIP: the image tower and a linear map of its normalised features, the
same form as the zero-shot classifier, so a head built from class-name prompts is a valid starting point."""
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig


@dataclasses.dataclass
class ClassifierConfig:
    backbone: ModelConfig  # the CLIP model whose image tower this is
    class_names: list[str]
    freeze_backbone: bool = False  # train the head alone; the tower (batch-norm statistics included) stays fixed


class ImageClassifier(nn.Module):
    """logits = normalize(visual(images)) @ head.weight.T (no bias, as in zero-shot classification)."""

    def __init__(self, visual: nn.Module, config: ClassifierConfig, head_weight: torch.Tensor | None = None):
        """`head_weight` [num_classes, embed_dim]; None starts at zero (uniform predictions)."""
        super().__init__()
        self.config, self.visual = config, visual
        self.head = nn.Linear(config.backbone.embed_dim, len(config.class_names), bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.zeros_like(self.head.weight) if head_weight is None else head_weight)
        self.visual.requires_grad_(not config.freeze_backbone)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_backbone:
            self.visual.eval()
        return self

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)

    def forward(self, images: torch.Tensor, features: bool = False) -> torch.Tensor:
        """The logits; with `features`, the normalised image features instead (what a cosine-similarity objective
        compares: it must get them through forward for DDP to synchronise their gradients)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbone):
            embedded = F.normalize(self.visual(images), dim=-1)
        return embedded if features else self.head(embedded)
