"""Zero-shot classification throughput (image tower + normalise + head, images/s) of our evaluation loop against
CLIP_benchmark's loop (pip package clip-benchmark) and the reference project's one-image-at-a-time loop, on the same
model, weights and image batches; the predicted classes must agree.

    python -m benchmarks.eval_throughput [--model RN50] [--batch-size 64] [--batches 2] [--repeats 3]
"""
import argparse
import copy
import importlib.util

import torch
import torch.nn.functional as F

from benchmarks.common import Row, add_machine_arguments, machine_report, markdown_table, median_seconds
from benchmarks.train_step import open_clip_model
from dataloader.eval.eval_datasets import Batch
from evaluation.zeroshot import classify, zero_shot_head
from model import build_model, model_config_by_name
from model.inference import prepare_for_inference
from utils.precision import choose_inference_precision
from utils.tokenizer import tokenize

CLASS_NAMES = ["cat", "dog", "car", "bird", "ship", "horse", "frog", "truck", "deer", "airplane"]
TEMPLATES = ["a photo of a {}."]


def our_loop(model, batches, device, precision: str, channels_last: bool):
    """zeroshot_eval.py's path: the model prepared for inference, the head, the classify loop; returns a run()
    giving the class tally."""
    model = prepare_for_inference(copy.deepcopy(model), channels_last)
    head = zero_shot_head(model, CLASS_NAMES, TEMPLATES, device, precision)
    batches = [Batch(images, labels, []) for images, labels in batches]
    return lambda: classify(model, batches, head, device, precision, channels_last, progress=False)[0]


def clip_benchmark_loop(model, batches, amp: bool):
    """CLIP_benchmark's zero-shot classification: its classifier builder and its run_classification loop."""
    from clip_benchmark.metrics import zeroshot_classification
    from clip_benchmark.metrics.zeroshot_classification import run_classification, zero_shot_classifier

    import open_clip

    zeroshot_classification.tqdm = lambda iterable, **_: iterable  # its progress bars, not its speed
    context_length = model.positional_embedding.shape[0]
    templates = [template.replace("{}", "{c}") for template in TEMPLATES]
    classifier = zero_shot_classifier(model, lambda texts: open_clip.tokenize(texts, context_length), CLASS_NAMES,
                                      templates, "cpu", amp=amp)
    return lambda: run_classification(model, classifier, batches, "cpu", amp=amp)[0].argmax(dim=1)


def batch_one_loop(model, batches):
    """The reference project's evaluation: one image per forward pass, fp32."""
    with torch.no_grad():
        prompts = [TEMPLATES[0].format(name) for name in CLASS_NAMES]
        texts = model.encode_text(tokenize(prompts, model.positional_embedding.shape[0]))
        head = F.normalize(texts, dim=-1).T

    @torch.no_grad()
    def run():
        predictions = []
        for images, _ in batches:
            for image in images:
                features = F.normalize(model.encode_image(image.unsqueeze(0)), dim=-1)
                predictions.append((100.0 * features @ head).softmax(dim=-1).argmax(dim=1))
        return torch.cat(predictions)
    return run


def timed(run, images: int, repeats: int):
    """(images/s as the median of `repeats` runs after a warm-up, the last run's result)."""
    results = []
    rate = images / median_seconds(lambda: results.append(run()), warmup=1, repeats=repeats)
    return rate, results[-1]


def run(model_name: str, batch_size: int, batch_count: int, repeats: int, single_images: int = 16) -> list[Row]:
    device = torch.device("cpu")
    config = model_config_by_name(model_name)
    torch.manual_seed(0)
    model = build_model(config).eval()
    decision = choose_inference_precision("auto", model, device, batch_size)
    precision = decision.precision
    reference = open_clip_model(config).eval()
    reference.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(0)
    images = [torch.randn(batch_size, 3, config.image_size, config.image_size, generator=generator)
              for _ in range(batch_count)]
    count = batch_size * batch_count
    print(f"eval: {model_name}, batch {batch_size}, {count} images; ours at auto = {decision.describe()}")

    references = {}
    single = [(images[0][:single_images], None)]
    references["reference project, batch 1"], _ = timed(batch_one_loop(reference, single), single_images, repeats)
    if importlib.util.find_spec("clip_benchmark"):
        # its default, amp, is autocast's CPU default bf16: without native bf16 it is slow, so one run, and at most
        # 8 images
        amp_images = images[0] if precision == "bf16" else images[0][:8]
        amp_name = "CLIP_benchmark amp (its default)" + ("" if len(amp_images) == batch_size else
                                                          f", batch {len(amp_images)}: no native bf16")
        references[amp_name] = len(amp_images) / median_seconds(clip_benchmark_loop(
            reference, [(amp_images, torch.zeros(len(amp_images), dtype=torch.long))], amp=True), warmup=0, repeats=1)
        fp32_batches = [(batch, torch.zeros(batch_size, dtype=torch.long)) for batch in images]
        references["CLIP_benchmark --no_amp"], predicted = timed(
            clip_benchmark_loop(reference, fp32_batches, amp=False), count, repeats)
    else:
        print("  clip-benchmark is not installed (pip install -r benchmarks/requirements.txt): its column is skipped")
        predicted = torch.cat([batch_one_loop(reference, [(batch, None)])() for batch in images])
    # labelled with the reference's predictions, our top-1 accuracy is the agreement of the two
    labelled = [(batch, labels) for batch, labels in zip(images, predicted.split(batch_size))]
    rates, agreement = {}, {}
    for channels_last in (False, True):
        name = f"ours, {'channels_last' if channels_last else 'NCHW'}"
        rates[name], tally = timed(our_loop(model, labelled, device, precision, channels_last), count, repeats)
        agreement[name] = tally.top1_hits.sum().item() / count
    for name, rate in {**rates, **references}.items():
        print(f"  {name:40s} {rate:8.1f} images/s" + (f", top-1 agrees with the reference on {agreement[name]:.1%}"
                                                      if name in agreement else ""))
    best = max(rates, key=rates.get)
    return [Row("eval", f"{model_name} zero-shot, batch {batch_size}, {best} ({precision})", rates[best], rate,
                "images/s", name, f"same top-1 on {agreement[best]:.1%} of images")
            for name, rate in references.items()]


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="RN50", help="a model config name (model/model_config.yaml)")
    parser.add_argument("--batch-size", type=int, default=64, help="CLIP_benchmark's default is 64")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    add_machine_arguments(parser)
    args = parser.parse_args(argv)
    print(machine_report(args.peak_size))
    rows = run(args.model, args.batch_size, args.batches, args.repeats)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
