"""train.deterministic chooses CUDA's kernels: fast (autotuned, TF32) or repeatable (a resumed run equals an
uninterrupted one). The flags are process-wide, so each test restores them."""
import os

import pytest
import torch

from utils.seeding import choose_cuda_kernels


@pytest.fixture
def restored_kernel_flags(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
              torch.get_float32_matmul_precision(), torch.are_deterministic_algorithms_enabled())
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[:2]
    torch.set_float32_matmul_precision(before[2])
    torch.use_deterministic_algorithms(before[3])


def test_deterministic_kernels_switch_off_autotuning_and_tf32(restored_kernel_flags):
    choose_cuda_kernels(deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.get_float32_matmul_precision() == "highest"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_fast_kernels_autotune_and_use_tf32(restored_kernel_flags):
    choose_cuda_kernels(deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert torch.get_float32_matmul_precision() == "high"
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
