"""One optimiser step of our trainer against open_clip's (CLIP + ClipLoss + AdamW, as its trainer runs them), same
model config and batch, side by side; samples/s, model FLOP utilisation against the measured matmul peak of the
precision used, and the peak memory (max RSS) of each. Every variant runs in a fresh process, so that memory peaks,
thread pools and compiled code do not leak from one into the next.

    python -m benchmarks.train_step [--model RN50] [--batch-size 32] [--steps 3] [--levers] [--compile]
                                    [--interleave 3] [--device cuda]
"""
import argparse
import dataclasses
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import (Row, add_machine_arguments, coco_like_captions, machine_report, markdown_table,
                               matmul_peak, median_seconds, synchronized, training_flops_per_sample)
from dataloader.train.train_loader import TOKEN_LENGTH_MULTIPLE
from model import build_model, model_config_by_name
from model.grad_checkpointing import set_grad_checkpointing
from trainer.objectives import ContrastiveObjective
from utils.precision import decide_precision, hardware_choice, training_workload
from utils.seeding import choose_cuda_kernels
from utils.tokenizer import tokenize, trim_padding

REFERENCE = "open_clip"
LONGEST_CAPTION = 32


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way to run the step. The lever fields apply to our side; their defaults are what our trainer does."""
    side: str  # "ours" or REFERENCE
    precision: str  # ours: auto/fp32/bf16; open_clip: fp32/amp_bf16 (its --precision names)
    channels_last: bool = True
    compile: bool = False
    fused_adamw: bool = True
    full_context: bool = False  # one caption fills the whole context: nothing left for trim_padding to skip
    grad_checkpointing: bool = False  # activations recomputed in the backward pass (train.grad_checkpointing)

    @property
    def name(self) -> str:
        levers = [label for on, label in ((not self.channels_last, "NCHW"), (self.compile, "compiled"),
                                          (not self.fused_adamw, "for-loop AdamW"),
                                          (self.full_context, "full-context caption"),
                                          (self.grad_checkpointing, "grad checkpointing")) if on]
        return f"{self.side} {self.precision}" + (f" ({', '.join(levers)})" if levers else "")


def example_batch(config, batch_size: int, longest_caption: int = LONGEST_CAPTION) -> tuple[torch.Tensor,
                                                                                          torch.Tensor]:
    """Random images and tokenized COCO-like captions, one of them `longest_caption` tokens long (in COCO,
    batches of 32 rarely hold a caption longer than 32 tokens)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, config.image_size, config.image_size, generator=generator)
    tokens = tokenize(coco_like_captions(batch_size), config.context_length)
    longest = min(longest_caption, config.context_length)
    tokens[0] = 0  # truncation keeps the end-of-text token
    tokens[0, :longest] = tokenize(" and ".join(coco_like_captions(8, seed=1)), longest)[0]
    return images, tokens


def our_step(config, variant: Variant, images, tokens, device: torch.device):
    """A closure running one step of the trainer's own code path (set-up, forward + loss + backward, AdamW step,
    logit-scale clamp)."""
    from trainer.optim import build_optimizer, optimizer_step
    from trainer.config import OptimizerConfig
    from trainer.trainer import accumulate_gradients

    precision = variant.precision
    model = build_model(config).to(device).train()
    if variant.channels_last:  # as the trainer does by default (train.channels_last)
        model = model.to(memory_format=torch.channels_last)
    set_grad_checkpointing(model, variant.grad_checkpointing)
    optimizer = build_optimizer(model, OptimizerConfig())
    if not variant.fused_adamw:  # a lever under test: PyTorch's default, one parameter at a time
        for group in optimizer.param_groups:
            group.update(fused=False, foreach=False)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    step_model = torch.compile(model) if variant.compile else model
    tokens = trim_padding(tokens, TOKEN_LENGTH_MULTIPLE)  # as the training loader does
    objective = ContrastiveObjective()
    batch = {"images": images.to(device), "tokens": tokens.to(device), "skipped": 0}

    def step():
        accumulate_gradients(step_model, [batch], objective, scaler, device, precision)
        optimizer_step(model, optimizer, scaler, grad_clip_norm=None)
        objective.after_step(model)
    return step, precision


def open_clip_model(config, output_dict: bool = False):
    """open_clip's CLIP with the architecture of one of our model configs (same parameter names and shapes)."""
    import open_clip

    return open_clip.CLIP(
        embed_dim=config.embed_dim, quick_gelu=config.quick_gelu, output_dict=output_dict,
        vision_cfg=dict(image_size=config.image_size, layers=config.vision_layers, width=config.vision_width,
                        patch_size=config.vision_patch_size),
        text_cfg=dict(context_length=config.context_length, vocab_size=config.vocab_size, width=config.text_width,
                      heads=config.text_heads, layers=config.text_layers))


def reference_step(config, variant: Variant, images, tokens, device: torch.device):
    """open_clip's trainer step: its CLIP and ClipLoss, AdamW with its weight-decay groups, its autocast,
    zero_grad / forward / backward / step / clamp, as in open_clip_train.train.train_one_epoch."""
    import open_clip
    from open_clip_train.precision import get_autocast

    model = open_clip_model(config, output_dict=True).to(device).train()
    images, tokens = images.to(device), tokens.to(device)
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = list(model.named_parameters())
    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": 0.1}], lr=5e-4, betas=(0.9, 0.98),
        eps=1e-8)
    loss_fn = open_clip.ClipLoss()
    autocast = get_autocast(variant.precision, device_type=device.type)

    def step():
        optimizer.zero_grad()
        with autocast():
            losses = loss_fn(**model(images, tokens), output_dict=True)
            total_loss = sum(losses.values())
        total_loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
    return step, "bf16" if variant.precision == "amp_bf16" else "fp32"


def measure_variant(model_name: str, batch_size: int, variant: Variant, steps: int, warmup: bool = True,
                    device: str = "cpu") -> dict:
    """Seconds per step (median of `steps`, after a warm-up step unless told not to), precision, and the peak
    memory: max RSS on the CPU, the most allocated on a CUDA device."""
    config, device = model_config_by_name(model_name), torch.device(device)
    if device.type == "cuda":
        choose_cuda_kernels(deterministic=False)  # as both trainers do on CUDA: cuDNN autotuning, TF32 matmuls
    images, tokens = example_batch(config, batch_size, 77 if variant.full_context else LONGEST_CAPTION)
    started = time.perf_counter()
    build = our_step if variant.side == "ours" else reference_step
    step, precision = build(config, variant, images, tokens, device)
    step = synchronized(step, device)
    if warmup:
        step()  # and compilation, when compiled
    first_step = time.perf_counter() - started
    seconds = median_seconds(step, warmup=0, repeats=steps)
    memory_mb = (torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda"
                 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"seconds": seconds, "first_step_s": first_step, "precision": precision, "max_rss_mb": memory_mb}


def run_in_child(model_name: str, batch_size: int, variant: Variant, steps: int, warmup: bool = True,
                 device: str = "cpu") -> dict:
    """measure_variant in a fresh process."""
    request = json.dumps({"model": model_name, "batch_size": batch_size, "steps": steps, "warmup": warmup,
                          "variant": dataclasses.asdict(variant), "device": device})
    done = subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--child", request],
                          capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"{variant.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def variants(levers: bool, compile_lever: bool, native_bf16: bool) -> list[Variant]:
    chosen = [Variant(REFERENCE, "fp32"), Variant(REFERENCE, "amp_bf16"), Variant("ours", "fp32"),
              Variant("ours", "bf16")]
    if levers:
        fast = "bf16" if native_bf16 else "fp32"
        chosen += [Variant("ours", fast, channels_last=False), Variant("ours", fast, fused_adamw=False),
                   Variant("ours", fast, full_context=True), Variant("ours", fast, grad_checkpointing=True)]
    if compile_lever:
        chosen.append(Variant("ours", "bf16" if native_bf16 else "fp32", compile=True))
    return chosen


def run(model_name: str, batch_size: int, steps: int, levers: bool = False, compile_lever: bool = False,
        in_process: bool = False, peak_size: int = 4096, slow_batch_size: int = 2, rounds: int = 1,
        device: str = "cpu") -> list[Row]:
    """Rows for every variant. Precisions that this CPU runs on an emulated path (bf16 without native support)
    take minutes per step at full size: they run at `slow_batch_size`, one step without warm-up. `auto` is
    measured once, as the precision it resolves to. `in_process` measures every variant in this process (quicker;
    the max RSS is then the running maximum). Each of `rounds` rounds measures every variant once, in turn, and a
    variant's figure is the median over rounds: a change in the machine's load then hits ours and the reference
    alike. On a CUDA device the memory figure is the most allocated there, not the RSS."""
    config = model_config_by_name(model_name)
    images, tokens = (tensor.to("meta") for tensor in example_batch(config, 2))
    # our loader trims the batch's padding: the text tower runs on fewer positions than open_clip's
    trimmed_tokens = trim_padding(example_batch(config, 2)[1], TOKEN_LENGTH_MULTIPLE).to("meta")
    with torch.device("meta"):
        flops = training_flops_per_sample(build_model(config).train(), images, tokens)
        trimmed_flops = training_flops_per_sample(build_model(config).train(), images, trimmed_tokens)
    native_bf16 = "bf16" in hardware_choice(device).candidates
    auto = auto_precision(config, batch_size, device)
    print(f"train_step: {model_name}, batch {batch_size}, {flops / 1e9:.1f} GFLOP per sample (forward + backward, "
          f"full context; {trimmed_flops / 1e9:.1f} with our trimmed padding); auto = {auto.describe()}")
    auto = auto.precision
    measure = measure_variant if in_process else run_in_child
    plan = {}  # variant -> batch, timed steps, warm-up
    for variant in variants(levers, compile_lever, native_bf16):
        emulated = variant.precision in ("bf16", "amp_bf16") and not native_bf16
        plan[variant] = (min(slow_batch_size, batch_size), 1, False) if emulated else (batch_size, steps, True)
    per_round = {variant: [] for variant in plan}
    for round_number in range(1, rounds + 1):
        print(f"  round {round_number}/{rounds}, load {os.getloadavg()[0]:.2f}, samples/s", end="", flush=True)
        for index, (variant, (batch, repeats, warmup)) in enumerate(plan.items()):
            result = measure(model_name, batch, variant, repeats, warmup=warmup, device=device)
            per_round[variant].append(result | {"samples_per_s": batch / result["seconds"]})
            print(f"{' |' if index else ':'} {variant.name} {batch / result['seconds']:.3g}", end="", flush=True)
        print()
    results = {}
    for variant, (batch, _, warmup) in plan.items():
        result = median_over_rounds(per_round[variant])
        peak = matmul_peak(result["precision"], peak_size, device=device)
        computed = trimmed_flops if variant.side == "ours" and not variant.full_context else flops
        result["mfu"] = computed * result["samples_per_s"] / (peak.gflops * 1e9)
        notes = [] if warmup else [f"batch {batch}, 1 step, no warm-up: no native bf16"]
        notes += [f"median of {rounds} interleaved rounds"] if rounds > 1 else []
        result["note"] = "; ".join(notes)
        results[variant] = result
        if variant == Variant("ours", auto):
            results[Variant("ours", "auto")] = result
        print(f"  {variant.name:36s} {result['samples_per_s']:8.2f} samples/s  MFU {result['mfu']:6.1%} of "
              f"{result['precision']} peak  first step {result['first_step_s']:6.1f} s  max RSS "
              f"{result['max_rss_mb']:,.0f} MB {result['note']}", flush=True)
    return comparison_rows(model_name, batch_size, results)


def auto_precision(config, batch_size: int, device: str = "cpu"):
    """What the trainer's `auto` chooses for this model and batch (measured, or remembered from a measurement)."""
    model = build_model(config).train().to(device, memory_format=torch.channels_last)
    return decide_precision("auto", device, training_workload(model, ContrastiveObjective(), batch_size, device,
                                                              channels_last=True))


def median_over_rounds(rounds: list[dict]) -> dict:
    """One variant's figures over its rounds: the median samples/s and first-step time, the largest max RSS."""
    return {"samples_per_s": statistics.median(result["samples_per_s"] for result in rounds),
            "first_step_s": statistics.median(result["first_step_s"] for result in rounds),
            "max_rss_mb": max(result["max_rss_mb"] for result in rounds), "precision": rounds[0]["precision"]}


def comparison_rows(model_name: str, batch_size: int, results: dict) -> list[Row]:
    """Ours at `auto` against the reference at its faster precision; ours at an explicit precision (and each
    lever) against the reference at that precision."""
    references = {v.precision: r for v, r in results.items() if v.side == REFERENCE}
    fastest = max(references, key=lambda name: references[name]["samples_per_s"])
    label, rows = f"{model_name} b{batch_size}", []
    for variant, result in results.items():
        if variant.side != "ours":
            continue
        against = fastest if variant.precision == "auto" else {"fp32": "fp32", "bf16": "amp_bf16"}[
            result["precision"]]
        reference = references[against]
        note = f"MFU {result['mfu']:.0%} of {result['precision']} peak (reference {reference['mfu']:.0%})"
        note += f"; {result['note']}" if result["note"] else ""
        note += f"; compile + first step {result['first_step_s']:.0f} s" if variant.compile else ""
        rows.append(Row("train_step", f"{label}, {variant.name} -> {result['precision']}", result["samples_per_s"],
                        reference["samples_per_s"], "samples/s", against, note))
    rows.append(Row("memory", f"{label}, max RSS of a training step (auto)",
                    results[Variant("ours", "auto")]["max_rss_mb"], references[fastest]["max_rss_mb"], "MB", fastest))
    return rows


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="RN50", help="a model config name (model/model_config.yaml)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (median), after a warm-up")
    parser.add_argument("--levers", action="store_true", help="also measure each speed lever on and off")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (and its compile time)")
    parser.add_argument("--in-process", action="store_true", help="no process per variant (quicker, shared RSS)")
    parser.add_argument("--interleave", type=int, default=1, metavar="ROUNDS",
                        help="measure every variant once per round, in turn, and report the median over rounds")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (cuda:N) for a GPU")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    add_machine_arguments(parser)
    args = parser.parse_args(argv)
    if args.interleave < 1:
        parser.error(f"--interleave {args.interleave}: the number of rounds must be at least 1")
    if args.child:
        request = json.loads(args.child)
        print(json.dumps(measure_variant(request["model"], request["batch_size"], Variant(**request["variant"]),
                                         request["steps"], request["warmup"], request["device"])))
        return []
    if torch.device(args.device).type == "cuda":
        choose_cuda_kernels(deterministic=False)  # the fp32 peak with TF32, as the steps run
    print(machine_report(args.peak_size, args.device))
    rows = run(args.model, args.batch_size, args.steps, args.levers, args.compile, args.in_process, args.peak_size,
               rounds=args.interleave, device=args.device)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
