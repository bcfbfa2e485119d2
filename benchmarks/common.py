"""What every benchmark shares: the machine it runs on, that machine's dense matmul peak per precision, timing
(warm-up, then the median of several runs), model FLOPs, and result rows printed as one markdown table."""
import dataclasses
import os
import platform
import random
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from utils.precision import cpu_has_native_bf16

# CPU features that decide which precision is fast: AVX-512 and AMX run bf16 natively, AVX2 alone does not.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return [flag for flag in SPEED_FLAGS if flag in present]
    return []


def machine_line() -> str:
    """One line naming what the figures depend on; the load average says how busy the machine was."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"{cpu_model()}, {os.cpu_count()} CPUs, flags: {' '.join(cpu_flags()) or 'none seen'}; native bf16: "
            f"{cpu_has_native_bf16()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"load average {load}")


def median_seconds(run, warmup: int = 1, repeats: int = 3) -> float:
    """Median wall time of `repeats` calls of `run()` after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


SUBJECTS = ["A man", "A woman", "Two dogs", "A little girl", "A group of people", "A cat", "An old bus", "A giraffe",
            "Several zebras", "A young boy", "A plate", "A red fire hydrant", "The kitchen", "A skateboarder"]
VERBS = ["riding", "sitting on", "standing next to", "holding", "looking at", "eating", "walking down", "parked near",
         "flying over", "lying on", "playing with", "covered in"]
OBJECTS = ["a wave", "the beach", "a wooden bench", "a busy street", "a pizza", "a snowy hill", "a large clock tower",
           "the grass", "a frisbee", "some broccoli", "an umbrella", "a tennis racket", "a laptop computer"]
ENDINGS = [".", "", " in the rain.", " at night.", ", smiling.", " while others watch.", " on a sunny day."]


def coco_like_captions(count: int, seed: int = 0) -> list[str]:
    """Short captions in the style of COCO's (8 to 18 tokens)."""
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(ENDINGS)}"
            for _ in range(count)]



_peaks: dict[tuple[str, int], float] = {}


def matmul_peak_gflops(precision: str, size: int = 2048, repeats: int = 5) -> float:
    """Measured dense matmul rate (GFLOP/s) of square products of side `size` on this machine, cached per process:
    the fastest of `repeats` products, as a peak is what the machine can do. Where one product takes over a second
    (bf16 without native support), the side is halved until it does not."""
    if (precision, size) not in _peaks:
        side = size
        while True:
            a, b = (torch.randn(side, side, dtype=DTYPES[precision]) for _ in range(2))
            first = median_seconds(lambda: a @ b, warmup=0, repeats=1)
            if first < 1.0 or side <= 256:
                break
            side //= 2
        seconds = min(median_seconds(lambda: a @ b, warmup=0, repeats=1) for _ in range(repeats))
        _peaks[precision, size] = 2 * side ** 3 / seconds / 1e9
    return _peaks[precision, size]


def machine_report(peak_size: int) -> str:
    """The machine line and its measured matmul peak per precision: what every figure here is relative to."""
    peaks = ", ".join(f"{precision} {matmul_peak_gflops(precision, peak_size):,.1f}" for precision in DTYPES)
    return f"{machine_line()}\ndense matmul peak ({peak_size}x{peak_size}, GFLOP/s): {peaks}"


def add_machine_arguments(parser) -> None:
    parser.add_argument("--peak-size", type=int, default=2048, help="matrix side of the matmul peak measurement")


def training_flops_per_sample(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor) -> float:
    """FLOPs of one forward and backward per sample (matmuls, convolutions and attention, as counted by torch)."""
    counter = FlopCounterMode(display=False)
    with counter:
        image_features, text_features, logit_scale = model(images, tokens)
        (logit_scale * image_features @ text_features.T).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(images)


@dataclasses.dataclass
class Row:
    """One line of a comparison: our figure, the reference's (None where it was not measured), one unit."""
    benchmark: str
    case: str
    ours: float
    reference: float | None
    unit: str
    reference_name: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.ours / self.reference if self.reference else None


def format_number(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def markdown_table(rows: list[Row]) -> str:
    lines = ["| benchmark | case | ours | reference | ratio | unit | note |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        reference = format_number(row.reference) + (f" ({row.reference_name})" if row.reference_name else "")
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "–"
        lines.append(f"| {row.benchmark} | {row.case} | {format_number(row.ours)} | {reference} | {ratio} | "
                     f"{row.unit} | {row.note} |")
    return "\n".join(lines)
