"""Numeric precision: what the hardware runs natively decides `auto`; where both fp32 and bf16 are native (a CPU
with AVX512_BF16 or AMX), the choice is left to a measurement (utils.precision_calibration), since on such a CPU
bf16 wins on a large model and loses on a small one. Never hard-code a precision: emulated bf16 runs 10-50x
slower than fp32."""
import contextlib
import dataclasses

import torch

from utils.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FIRST_NATIVE_BF16_CUDA = (8, 0)  # Ampere: bf16 tensor cores; older GPUs run bf16 through fp32 units


@dataclasses.dataclass(frozen=True)
class HardwareChoice:
    """What `auto` may become on a device: one precision, or several for a measurement to decide between."""
    candidates: tuple[str, ...]
    reason: str

    @property
    def decided(self) -> bool:
        return len(self.candidates) == 1


def cpu_bf16_unit() -> str | None:
    """The CPU unit that computes bf16 natively (AMX, else AVX512_BF16), or None. oneDNN's own probe
    (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) is also true on plain AVX-512 (Skylake, Cascade Lake), where
    bf16 is emulated: it answers "can run", not "runs fast"."""
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512_BF16"
    return None


def cuda_capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def hardware_choice(device) -> HardwareChoice:
    """The precisions `auto` chooses among on `device`, judged by native support alone."""
    device = torch.device(device)
    if device.type == "cuda":
        name, capability = torch.cuda.get_device_name(device), cuda_capability(device)
        if capability >= FIRST_NATIVE_BF16_CUDA:
            return HardwareChoice(("bf16",), f"{name} (compute capability {capability[0]}.{capability[1]}) "
                                             "has native bf16")
        # torch.cuda.is_bf16_supported() counts emulation: a V100 or T4 would get a slow bf16
        return HardwareChoice(("fp16",), f"{name} (compute capability {capability[0]}.{capability[1]}) has no "
                                         "native bf16: fp16 with a grad scaler")
    if device.type == "cpu":
        unit = cpu_bf16_unit()
        if unit:
            return HardwareChoice(("fp32", "bf16"), f"CPU has native bf16 ({unit})")
        return HardwareChoice(("fp32",), "CPU has no native bf16 (no AVX512_BF16 or AMX): bf16 would be emulated")
    return HardwareChoice(("fp32",), f"no native bf16 known for {device.type}")


def check_precision(name: str, device) -> None:
    """Reject names that do not exist or cannot run on `device`."""
    if name not in PRECISIONS:
        raise UserError(f"precision '{name}' is not one of {', '.join(PRECISIONS)}")
    if name == "fp16" and torch.device(device).type != "cuda":
        raise UserError("precision 'fp16' needs a CUDA device (its grad scaler is CUDA-only); use bf16 or fp32")


def autocast(device: torch.device, precision: str):
    """Autocast context for a resolved precision; fp32 runs without autocast."""
    dtype = _DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
