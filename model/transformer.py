"""The pre-norm transformer shared by the text tower and the ViT image tower (CLIP's layout and parameter names)."""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from model.grad_checkpointing import run_block


class QuickGELU(nn.Module):
    """OpenAI CLIP's GELU approximation; checkpoints trained with it need it to reproduce their features."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention (flash / memory-efficient kernels where they
    apply), with nn.MultiheadAttention's parameter names so CLIP checkpoints load as they are."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, activation: type[nn.Module], norm_eps: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=norm_eps)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, width * 4), gelu=activation(), c_proj=nn.Linear(width * 4, width)))

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of blocks over batch-first sequences [N, L, D]."""

    def __init__(self, width: int, layers: int, heads: int, activation: type[nn.Module], norm_eps: float = 1e-5):
        super().__init__()
        self.width = width
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, activation, norm_eps)
                                       for _ in range(layers))
        self.grad_checkpointing = False  # model.grad_checkpointing.set_grad_checkpointing

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            x = run_block(block, x, causal, recompute=self.grad_checkpointing)
        return x

    def init_weights(self):
        """CLIP's initialisation: residual projections scaled down with depth."""
        attn_std = self.width ** -0.5
        proj_std = attn_std * (2 * len(self.resblocks)) ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
