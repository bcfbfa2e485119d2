"""CLIP's Vision Transformer image tower: patch embedding, class token, pre-norm transformer, projection."""
import torch
from torch import nn

from model.transformer import Transformer


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int,
                 activation: type[nn.Module], ln_pre: bool = True, norm_eps: float = 1e-5):
        super().__init__()
        scale = width ** -0.5
        grid = image_size // patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width, eps=norm_eps) if ln_pre else nn.Identity()
        self.transformer = Transformer(width, layers, heads, activation, norm_eps)
        self.ln_post = nn.LayerNorm(width, eps=norm_eps)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def init_weights(self):
        self.transformer.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x.to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)  # [N, grid², width]
        class_token = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([class_token, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj
