"""Gradient checkpointing: the activations inside each transformer block and each ResNet bottleneck are not kept
for the backward pass but computed again there, trading about a third more compute for most of the activation
memory. Gradients are unchanged: the recomputation repeats the same operations on the same inputs."""
import contextlib

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def run_block(block: nn.Module, *inputs, recompute: bool):
    """block(*inputs), its activations recomputed in the backward pass when `recompute` and gradients are on."""
    if not (recompute and torch.is_grad_enabled()):
        return block(*inputs)
    return checkpoint(block, *inputs, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), batch_norm_statistics_restored(block)))


@contextlib.contextmanager
def batch_norm_statistics_restored(module: nn.Module):
    """Around the recomputation: a batch norm in training mode would count the batch a second time in its running
    statistics, so they are put back as they were after the forward pass. (Switching their tracking off instead, as
    trainer.accumulation does for its no-grad pass, would run another batch-norm kernel, which saves other tensors
    than the forward did: the recomputation must repeat the forward exactly.)"""
    norms = [norm for norm in module.modules() if isinstance(norm, nn.modules.batchnorm._BatchNorm)
             and norm.track_running_stats and norm.training]
    saved = [[buffer.clone() for buffer in (norm.running_mean, norm.running_var, norm.num_batches_tracked)]
             for norm in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, (mean, var, count) in zip(norms, saved):
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                norm.num_batches_tracked.copy_(count)


def set_grad_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Turn checkpointing on or off in every tower of `model` that supports it (transformers, modified ResNets);
    returns how many towers it reached."""
    towers = [module for module in model.modules() if hasattr(module, "grad_checkpointing")]
    for tower in towers:
        tower.grad_checkpointing = enabled
    return len(towers)
