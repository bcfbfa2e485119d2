"""Numeric precision: choose it from the hardware, never hard-code it (bf16 is 10-50x slower than fp32 on CPUs
without native bf16)."""
import contextlib

import torch

from utils.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(name: str, device: torch.device) -> tuple[str, str]:
    """Return (precision, reason): `auto` becomes bf16 where the hardware runs it natively, fp32 elsewhere."""
    device = torch.device(device)
    if name not in PRECISIONS:
        raise UserError(f"precision '{name}' is not one of {', '.join(PRECISIONS)}")
    if name == "fp16" and device.type != "cuda":
        raise UserError("precision 'fp16' needs a CUDA device (its grad scaler is CUDA-only); use bf16 or fp32")
    if name != "auto":
        return name, "asked for explicitly"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"CUDA device {torch.cuda.get_device_name(device)} supports bf16"
        return "fp32", "CUDA device without bf16 support"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16", "CPU has native bf16 (AVX-512 bf16 / AMX)"
    return "fp32", f"{device.type} has no native bf16: bf16 would run on a slow emulated path"


def autocast(device: torch.device, precision: str):
    """Autocast context for a resolved precision; fp32 runs without autocast."""
    dtype = _DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
