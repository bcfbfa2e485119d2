"""Models for the tests that compare ours with another implementation."""
import torch
from torch import nn


def move_off_initial_values(model: nn.Module) -> nn.Module:
    """Add small noise to every weight and statistic, so that zero-initialised branches (the last batch norm of each
    ResNet block, biases) are exercised too; running variances stay positive."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.02)
                if name.endswith("running_var"):
                    tensor.abs_().add_(0.5)
    return model
