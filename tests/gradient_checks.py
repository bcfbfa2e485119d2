"""Comparing the gradients of two ways to compute one loss (ranks, micro-batches) with fp32's summation order in
mind."""
import torch


def gradients(model) -> dict:
    return {name: p.grad.clone() for name, p in getattr(model, "module", model).named_parameters()}


def assert_same_gradients(actual: dict, expected: dict):
    assert actual.keys() == expected.keys()
    for name, gradient in expected.items():
        # fp32 sums in another order: elements that nearly cancel get the tensor's scale as their yardstick
        scale = gradient.abs().max().item()
        torch.testing.assert_close(actual[name], gradient, rtol=1e-5, atol=1e-5 * scale,
                                   msg=lambda detail: f"{name}: {detail}")
