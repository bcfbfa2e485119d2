"""CLIP: an image tower and a causal text transformer projected into one embedding space.

Parameter names follow OpenAI's release (text modules at the top level, the image tower under `visual.`), so
OpenAI and open_clip state dicts load without renaming.
"""
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.resnet import ModifiedResNet
from model.transformer import QuickGELU, Transformer
from model.vit import VisionTransformer


class CLIP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        activation = QuickGELU if config.quick_gelu else nn.GELU
        if config.is_vit:
            self.visual = VisionTransformer(config.image_size, config.vision_patch_size, config.vision_width,
                                            config.vision_layers, config.vision_heads, config.embed_dim, activation,
                                            config.vision_ln_pre, config.vision_norm_eps)
        else:
            self.visual = ModifiedResNet(config.vision_layers, config.embed_dim, config.vision_heads,
                                         config.image_size, config.vision_width)
        self.token_embedding = nn.Embedding(config.vocab_size, config.text_width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.text_width))
        self.transformer = Transformer(config.text_width, config.text_layers, config.text_heads, activation)
        self.ln_final = nn.LayerNorm(config.text_width)
        self.text_projection = nn.Parameter(torch.empty(config.text_width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if config.sigmoid_logits:
            self.add_sigmoid_logits()
        self.init_weights()

    def init_weights(self):
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=self.config.text_width ** -0.5)
        self.transformer.init_weights()
        self.visual.init_weights()

    def add_sigmoid_logits(self) -> None:
        """A learnable logit bias for SigLIP's loss, with SigLIP's start (Zhai et al. 2023): temperature 10 and bias
        -10, also for a model whose temperature was learnt for CLIP's softmax."""
        self.config = dataclasses.replace(self.config, sigmoid_logits=True)
        with torch.no_grad():
            self.logit_scale.fill_(math.log(10.0))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0, device=self.logit_scale.device))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Features of token rows [N, L], L up to the context length: padding columns after the longest text may
        be left out (utils.tokenizer.trim_padding), as causal attention never lets a text see them."""
        x = self.token_embedding(tokens) + self.positional_embedding[:tokens.shape[1]]
        x = self.ln_final(self.transformer(x, causal=True))
        # the end-of-text token has the largest id in the vocabulary: its position holds the caption's summary
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return x @ self.text_projection

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        """Normalised image and text embeddings, the temperature-scaled logit multiplier and, for a sigmoid-logit
        (SigLIP) model, the logit bias."""
        image_features = F.normalize(self.encode_image(images), dim=-1)
        text_features = F.normalize(self.encode_text(tokens), dim=-1)
        if self.config.sigmoid_logits:
            return image_features, text_features, self.logit_scale.exp(), self.logit_bias
        return image_features, text_features, self.logit_scale.exp()
