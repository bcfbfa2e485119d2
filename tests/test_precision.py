"""`auto` precision follows the hardware: bf16 only where it runs natively."""
import pytest
import torch

from utils import precision
from utils.errors import UserError


@pytest.mark.parametrize("device, cuda_bf16, cpu_bf16, expected", [
    ("cpu", False, True, "bf16"),
    ("cpu", False, False, "fp32"),
    ("cuda", True, False, "bf16"),
    ("cuda", False, True, "fp32"),
])
def test_auto_decision_table(monkeypatch, device, cuda_bf16, cpu_bf16, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: cpu_bf16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: cuda_bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "test GPU")
    chosen, reason = precision.resolve_precision("auto", device)
    assert chosen == expected and reason


@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_explicit_choice_wins(monkeypatch, name):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: name != "bf16")
    assert precision.resolve_precision(name, "cpu") == (name, "asked for explicitly")


def test_fp16_needs_cuda_and_unknown_names_are_rejected():
    with pytest.raises(UserError, match="fp16.*CUDA"):
        precision.resolve_precision("fp16", "cpu")
    with pytest.raises(UserError, match="'half' is not one of auto, fp32, bf16, fp16"):
        precision.resolve_precision("half", "cpu")


def test_autocast_runs_bf16_matmuls_and_fp32_runs_plain():
    a = torch.randn(4, 4)
    with precision.autocast("cpu", "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with precision.autocast("cpu", "fp32"):
        assert (a @ a).dtype == torch.float32
