"""Reproducibility: one seed for every random generator a run uses (Python, NumPy, torch), and the choice of CUDA
kernels (fast, or the same result every time)."""
import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def choose_cuda_kernels(deterministic: bool) -> None:
    """Fast kernels (cuDNN times its convolution algorithms once for the fixed image shapes; fp32 matmuls on tensor
    cores, TF32), or deterministic ones: no autotuning, no atomics-based reductions, so that a run repeats bit for bit
    and a resumed run ends with the weights of an uninterrupted one, as on the CPU. Call before the first CUDA matmul:
    cuBLAS reads its workspace setting when it creates its handle."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.set_float32_matmul_precision("highest" if deterministic else "high")
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for repeatable results
    torch.use_deterministic_algorithms(deterministic)
