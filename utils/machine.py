"""The CPU this process runs on, as /proc/cpuinfo names it and as torch finds its bf16 units: speed figures and
remembered precision choices are only valid for the machine they were measured on."""
import functools
import platform
from pathlib import Path

import torch

# CPU features that decide which precision is fast: AMX and AVX512_BF16 run bf16 natively, AVX2 alone does not.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@functools.cache
def cpu_fields() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (none where there is no such file)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return {}
    fields = {}
    for line in cpuinfo.read_text().split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    """The model name, with family and model numbers: a virtual machine may name only "AMD EPYC", and the
    generations behind that name differ twofold in vector width."""
    fields = cpu_fields()
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    return f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


def cpu_flags() -> list[str]:
    present = set(cpu_fields().get("flags", "").split())
    return [flag for flag in SPEED_FLAGS if flag in present]


def cpu_bf16_unit() -> str | None:
    """The CPU unit that computes bf16 natively (AMX, else AVX512_BF16), or None. oneDNN's own probe
    (`torch.ops.mkldnn._is_mkldnn_bf16_supported`) is also true on plain AVX-512 (Skylake, Cascade Lake), where
    bf16 is emulated: it answers "can run", not "runs fast"."""
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512_BF16"
    return None
