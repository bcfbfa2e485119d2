"""What every benchmark shares: the machine it runs on, that machine's dense matmul peak per precision, timing
(warm-up, then the median of several runs), model FLOPs, and result rows printed as one markdown table."""
import contextlib
import dataclasses
import os
import random
import statistics
import time
from typing import NamedTuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from utils.machine import cpu_bf16_unit, cpu_flags, cpu_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def machine_line() -> str:
    """One line naming what the figures depend on; the load average says how busy the machine was."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"{cpu_model()}, {os.cpu_count()} CPUs, flags: {' '.join(cpu_flags()) or 'none seen'}; native bf16: "
            f"{cpu_bf16_unit() or 'none'}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"load average {load}")


def wall_times(run, repeats: int) -> list[float]:
    """Seconds taken by each of `repeats` calls of `run()`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def synchronized(run, device: torch.device):
    """`run` followed by a wait for the device: CUDA kernels are queued, so a wall time must include their end."""
    if device.type != "cuda":
        return run

    def run_and_wait():
        run()
        torch.cuda.synchronize(device)
    return run_and_wait


def median_seconds(run, warmup: int = 1, repeats: int = 3) -> float:
    """Median wall time of `repeats` calls of `run()` after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    return statistics.median(wall_times(run, repeats))


@contextlib.contextmanager
def torch_threads(count: int):
    """Run a block on `count` threads, then give back the count before it: run_all runs every benchmark in one
    process, and the matmul peak must be measured at the count the training steps use."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


class MatmulPeak(NamedTuple):
    gflops: float
    side: int  # the side measured: smaller than asked for a precision this CPU only emulates


_peaks: dict[tuple[str, int, int, str], MatmulPeak] = {}


def matmul_peak(precision: str, size: int = 4096, products: int = 5, device: str = "cpu") -> MatmulPeak:
    """Measured dense matmul rate (GFLOP/s) of square products of side `size` on `device` (on the CPU at torch's
    current thread count), cached per process: one untimed product (thread pool, library buffers, clocks), then
    `products` products back to back, each timed, the fastest kept, as a peak is what the machine can do. A precision
    that this CPU only emulates (bf16 without native support: minutes per product at 4096) halves the side while one
    product takes over a second."""
    device = torch.device(device)
    key = (precision, size, torch.get_num_threads(), str(device))
    if key not in _peaks:
        dtype, side = DTYPES[precision], size
        if precision == "bf16" and device.type == "cpu" and not cpu_bf16_unit():
            side = emulated_side(size, dtype)
        _peaks[key] = MatmulPeak(2 * side ** 3 / product_seconds(side, dtype, products, device) / 1e9, side)
    return _peaks[key]


def emulated_side(size: int, dtype: torch.dtype) -> int:
    """The largest of `size`, `size`/2, `size`/4 ... (down to 256 or below) whose product takes at most about a
    second, searched from the smallest up: one emulated product at full size takes minutes."""
    sides = [size]
    while sides[-1] > 256:
        sides.append(sides[-1] // 2)
    side = sides.pop()
    seconds = product_seconds(side, dtype, products=1)
    while sides and 8 * seconds <= 1.0:  # twice the side is eight times the work
        side = sides.pop()
        seconds = product_seconds(side, dtype, products=1)
    return side


def product_seconds(side: int, dtype: torch.dtype, products: int, device=torch.device("cpu")) -> float:
    """The fastest of `products` back-to-back products of two random square matrices, after an untimed one; the
    result goes to one preallocated tensor, so that allocation and page faults stay out of the timing."""
    a, b = (torch.randn(side, side, dtype=dtype, device=device) for _ in range(2))
    out = torch.empty(side, side, dtype=dtype, device=device)
    product = synchronized(lambda: torch.matmul(a, b, out=out), device)
    product()
    return min(wall_times(product, products))


def machine_report(peak_size: int, device: str = "cpu") -> str:
    """The machine line and its measured matmul peak per precision on `device`: what every figure here is relative
    to."""
    device = torch.device(device)
    peaks = []
    for precision in DTYPES:
        peak = matmul_peak(precision, peak_size, device=device)
        peaks.append(f"{precision} {peak.gflops:,.1f}" + (f" (at {peak.side}x{peak.side})" if peak.side != peak_size
                                                          else ""))
    where = (f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}" if device.type == "cuda"
             else f"{torch.get_num_threads()} threads")
    return f"{machine_line()}\ndense matmul peak ({peak_size}x{peak_size}, {where}, GFLOP/s): {', '.join(peaks)}"


def add_machine_arguments(parser) -> None:
    parser.add_argument("--peak-size", type=int, default=4096, help="matrix side of the matmul peak measurement")


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
