"""Gradient checkpointing changes memory, not results: the same loss, gradients and batch-norm statistics as
without it, for a ResNet image tower (whose batch norms must not count the recomputed batch twice) and a ViT;
train.grad_checkpointing switches it on in the model train.py hands to the trainer."""
import copy
from pathlib import Path

import pytest
import torch

import train
from jobs.training import training_model
from model import build_model, model_config_by_name
from model.grad_checkpointing import set_grad_checkpointing
from trainer.objectives import ContrastiveObjective


def step(model, batch):
    """One forward and backward in training mode: the loss, every gradient and every buffer afterwards."""
    loss = ContrastiveObjective().loss(model, batch, "cpu", "fp32")
    loss.backward()
    gradients = {name: parameter.grad.clone() for name, parameter in model.named_parameters()}
    return loss.detach(), gradients, {name: buffer.clone() for name, buffer in model.named_buffers()}


@pytest.mark.parametrize("config_name", ["quickstart", "tiny-vit"])
def test_checkpointed_step_equals_the_plain_one(config_name):
    torch.manual_seed(0)
    plain = build_model(model_config_by_name(config_name)).train()
    checkpointed = copy.deepcopy(plain)
    assert set_grad_checkpointing(checkpointed) == 2  # both towers
    batch = ContrastiveObjective().example_batch(plain, 6, torch.Generator().manual_seed(1))
    loss, gradients, buffers = step(plain, batch)
    checkpointed_loss, checkpointed_gradients, checkpointed_buffers = step(checkpointed, batch)
    assert torch.equal(loss, checkpointed_loss)
    for name, gradient in gradients.items():
        assert torch.equal(checkpointed_gradients[name], gradient), name
    for name, buffer in buffers.items():  # running means, variances and batch counts: one batch, counted once
        assert torch.equal(checkpointed_buffers[name], buffer), name


def test_checkpointing_recomputes_in_the_backward_pass(monkeypatch):
    torch.manual_seed(0)
    model = build_model(model_config_by_name("quickstart")).train()
    set_grad_checkpointing(model)
    calls = []
    block = model.visual.layer1[0]
    block.register_forward_pre_hook(lambda *args: calls.append("forward"))  # a recomputation may stop early
    batch = ContrastiveObjective().example_batch(model, 4, torch.Generator().manual_seed(1))
    loss = ContrastiveObjective().loss(model, batch, "cpu", "fp32")
    assert calls == ["forward"]
    loss.backward()
    assert calls == ["forward", "forward"]  # run again for its activations
    with torch.no_grad():
        ContrastiveObjective().loss(model, batch, "cpu", "fp32")
    assert len(calls) == 3  # no gradients, nothing to recompute


@pytest.mark.parametrize("enabled", [False, True])
def test_train_grad_checkpointing_reaches_both_towers_of_the_run_model(enabled):
    quickstart = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
    config = train.load_run_config(train.parse_args(["--config", str(quickstart),
                                                     f"train.grad_checkpointing={str(enabled).lower()}"]))
    model, _ = training_model(config)
    assert [model.visual.grad_checkpointing, model.transformer.grad_checkpointing] == [enabled, enabled]
