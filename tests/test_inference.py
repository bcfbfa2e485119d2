"""prepare_for_inference (batch norms folded into convolutions, channels-last memory) keeps every output."""
import copy

import pytest
import torch
from torch import nn

from model import build_model, model_config_by_name
from model.inference import prepare_for_inference


def with_trained_norm_statistics(model):
    """Batch norms as after training: statistics and affine parameters away from their initial values."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(channels, generator=generator) * 0.5 + 1)
            module.bias.data.copy_(torch.randn(channels, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_model_gives_the_same_image_features(channels_last):
    torch.manual_seed(0)
    model = with_trained_norm_statistics(build_model(model_config_by_name("tiny")))
    fast = prepare_for_inference(copy.deepcopy(model), channels_last)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in fast.modules())
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, folded = model.encode_image(images), fast.encode_image(images)
    assert (expected - folded).abs().max() <= 1e-5 * expected.abs().max()


def test_vit_is_left_as_it_is():
    model = build_model(model_config_by_name("tiny-vit"))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    prepare_for_inference(model)
    assert not model.training
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
