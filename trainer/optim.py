"""AdamW with CLIP's weight-decay rule, the per-step learning rate, and the logit-scale cap."""
import math

import torch
from torch import nn

from trainer.config import OptimizerConfig

MAX_LOGIT_SCALE = math.log(100)  # CLIP caps the softmax temperature's inverse at 100


def decays(name: str, parameter: nn.Parameter) -> bool:
    """Weight decay applies to weight matrices and kernels only: not to biases, norm gains (all 1-D), embeddings
    (token, positional, class) nor the logit scale."""
    return parameter.ndim >= 2 and "embedding" not in name


LOSS_PARAMETERS = ("logit_scale", "logit_bias")  # the temperature, and SigLIP's bias


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters in groups: weights that decay, the rest without decay, and, when
    optimizer.logit_scale_lr is set, the loss's own parameters with that peak learning rate (each group's
    `lr_scale` is its peak over optimizer.lr, so the schedule moves every group alike)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    own_group = set(LOSS_PARAMETERS) if config.logit_scale_lr is not None else set()
    loss_parameters = [p for name, p in named if name in own_group]
    named = [(name, p) for name, p in named if name not in own_group]
    groups = [
        {"params": [p for name, p in named if decays(name, p)], "weight_decay": config.weight_decay},
        {"params": [p for name, p in named if not decays(name, p)], "weight_decay": 0.0},
    ]
    if loss_parameters:
        groups.append({"params": loss_parameters, "weight_decay": 0.0, "lr_scale": config.logit_scale_lr / config.lr})
    # fused: one kernel over all parameters, several times faster than the default per-parameter loop on CPUs
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps, fused=fused)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """`lr`: the schedule's value for optimizer.lr; a group with its own peak follows it in proportion."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


@torch.no_grad()
def clamp_logit_scale(model: nn.Module) -> None:
    """After every optimiser step: CLIP keeps the learnable temperature in [1, 100]. SigLIP's temperature starts
    at 10 and grows within the same cap, as in open_clip (its SigLIP runs settle well below 100)."""
    model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)


def optimizer_step(model: nn.Module, optimizer, scaler, grad_clip_norm: float | None) -> None:
    """Apply the accumulated gradients (unscaled first when fp16 scales them), then reset them."""
    if grad_clip_norm is not None:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
