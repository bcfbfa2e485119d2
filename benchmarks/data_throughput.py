"""Training-image throughput: one core turning a COCO-like JPEG into a normalised tensor (our draft-decoding
transform against the torchvision default chain); the whole training loader (decode, crop, tokenize, batch) on a
COCO-layout folder of such JPEGs; and whether the loader keeps up with the quickstart's training steps (the time
each step waits for its batch).

    python -m benchmarks.data_throughput [--images 128] [--photo-size 640x480] [--workers 2] [--batch-size 32]
                                         [--quickstart-steps 30]
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import (Row, add_machine_arguments, machine_report, markdown_table, median_seconds,
                               torch_threads)
from dataloader.config import DataConfig
from dataloader.train_data import build_train_loader
from dataloader.transforms import TrainImageTransform
from model import build_model, model_config_by_name
from model.config import OPENAI_MEAN, OPENAI_STD
from model.preprocess import image_transform
from utils.config import read_yaml
from utils.precision import resolve_precision

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "test_images"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def write_coco_folder(root: Path, count: int, size: tuple[int, int]) -> DataConfig:
    """`count` JPEGs cut from the test photos at `size`, with five captions each, in COCO's layout."""
    photos = [Image.open(path).convert("RGB").resize(size, Image.Resampling.BICUBIC)
              for path in sorted(PHOTOS.glob("*.jpg"))]
    (root / "train2017").mkdir()
    (root / "annotations").mkdir()
    images, annotations = [], []
    for n in range(count):
        file_name = f"{n:012d}.jpg"
        photos[n % len(photos)].rotate(n % 7, resample=Image.Resampling.BILINEAR).save(
            root / "train2017" / file_name, quality=90)
        images.append({"id": n, "file_name": file_name, "width": size[0], "height": size[1]})
        annotations += [{"id": 5 * n + k, "image_id": n, "caption": f"photo number {n}, caption {k} of five."}
                        for k in range(5)]
    annotation_file = root / "annotations" / "captions_train2017.json"
    annotation_file.write_text(json.dumps({"images": images, "annotations": annotations}))
    return DataConfig(train_img_dir=str(root / "train2017"), train_annotation_file=str(annotation_file))


def one_core_rates(paths: list[Path], image_size: int, repeats: int) -> dict[str, float]:
    """Images/s of each chain on one core, cycling over `paths`."""
    torchvision_chain = image_transform(image_size, OPENAI_MEAN, OPENAI_STD)
    ours = TrainImageTransform(image_size, OPENAI_MEAN, OPENAI_STD, "random")
    rng = np.random.default_rng(0)
    chains = {"torchvision": lambda path: torchvision_chain(Image.open(path)), "ours": lambda path: ours(path, rng)}
    rates = {}
    for name, chain in chains.items():
        seconds = median_seconds(lambda: [chain(path) for path in paths], warmup=1, repeats=repeats)
        rates[name] = len(paths) / seconds
    return rates


def loader_rate(config: DataConfig, image_size: int, workers: int, batch_size: int, epochs: int) -> float:
    """Images/s of the training loader over whole epochs, after a first epoch that starts the workers."""
    config.num_workers = workers
    loader = build_train_loader(config, image_size=image_size, mean=OPENAI_MEAN, std=OPENAI_STD, context_length=77,
                                batch_size=batch_size, rank=0, world_size=1, seed=0, pin_memory=False)
    for _ in loader.epoch(0):
        pass
    seconds = median_seconds(lambda: [None for _ in loader.epoch(1)], warmup=0, repeats=epochs)
    return len(loader) * batch_size / seconds


def quickstart_data_wait(steps: int) -> dict:
    """Train the quickstart's model on its synthetic data, with its loader settings, through the trainer's step
    for `steps` steps (after one): seconds per step spent waiting for the next batch, and computing."""
    from dataloader.synthetic import SyntheticDataConfig, ensure_synthetic_dataset
    from trainer.config import OptimizerConfig
    from trainer.objectives import ContrastiveObjective
    from trainer.optim import build_optimizer, optimizer_step
    from trainer.trainer import accumulate_gradients

    settings = read_yaml(QUICKSTART)
    model_config = model_config_by_name(settings["model"]["name"])
    batch_size = settings["train"]["batch_size"]
    with tempfile.TemporaryDirectory() as folder:
        synthetic = SyntheticDataConfig(**{**settings["synthetic_data"], "root": folder})
        synthetic.train_images = min(synthetic.train_images, batch_size * (steps + 1))  # no more than is read
        ensure_synthetic_dataset(synthetic)
        data = DataConfig(train_img_dir=str(synthetic.train_img_dir),
                          train_annotation_file=str(synthetic.train_annotation_file),
                          num_workers=settings["data"]["num_workers"])
        loader = build_train_loader(data, image_size=model_config.image_size, mean=model_config.image_mean,
                                    std=model_config.image_std, context_length=model_config.context_length,
                                    batch_size=batch_size, rank=0, world_size=1, seed=0, pin_memory=False)
        model = build_model(model_config).train()
        optimizer, objective = build_optimizer(model, OptimizerConfig()), ContrastiveObjective()
        scaler, device = torch.amp.GradScaler("cpu", enabled=False), torch.device("cpu")
        precision, _ = resolve_precision("auto", device)
        waits, computes = [], []
        batches = (batch for epoch in range(steps + 1) for batch in loader.epoch(epoch))
        for _ in range(steps + 1):
            started = time.perf_counter()
            batch = next(batches)
            fetched = time.perf_counter()
            accumulate_gradients(model, [batch], objective, scaler, device, precision)
            optimizer_step(model, optimizer, scaler, grad_clip_norm=None)
            objective.after_step(model)
            waits.append(fetched - started)
            computes.append(time.perf_counter() - fetched)
    # the first batch waits for the workers to start: left out
    return {"wait_s": statistics.mean(waits[1:]), "step_s": statistics.mean(computes[1:]),
            "workers": data.num_workers, "batch_size": batch_size}


def run(images: int, photo_size: tuple[int, int], workers: int, batch_size: int, repeats: int,
        quickstart_steps: int, image_size: int = 224) -> list[Row]:
    size_name = f"{photo_size[0]}x{photo_size[1]}"
    with tempfile.TemporaryDirectory() as folder, torch_threads(1):
        config = write_coco_folder(Path(folder), images, photo_size)
        paths = sorted(Path(config.train_img_dir).glob("*.jpg"))[:32]
        rates = one_core_rates(paths, image_size, repeats)
        loader = loader_rate(config, image_size, workers, batch_size, repeats)
    quickstart = quickstart_data_wait(quickstart_steps)  # on the threads a quickstart run trains with
    wait_share = quickstart["wait_s"] / (quickstart["wait_s"] + quickstart["step_s"])
    print(f"data: one core, {size_name} JPEG -> {image_size} px: torchvision {rates['torchvision']:.0f} images/s, "
          f"ours {rates['ours']:.0f}; loader with {workers} workers {loader:.0f} images/s; quickstart steps wait "
          f"{quickstart['wait_s'] * 1000:.1f} ms for data per {quickstart['step_s'] * 1000:.0f} ms step")
    return [
        Row("data", f"{size_name} JPEG -> {image_size} px tensor, per core", rates["ours"], rates["torchvision"],
            "images/s", "torchvision default chain", "draft decode, crop + resize in one call"),
        Row("data", f"training loader, {workers} workers, batch {batch_size}", loader, None, "images/s",
            note="decode, crop, tokenize, batch"),
        Row("data", f"quickstart: data wait per step ({quickstart['workers']} worker, batch "
                    f"{quickstart['batch_size']})", quickstart["wait_s"] * 1000, None, "ms",
            note=f"{wait_share:.1%} of the step time (compute {quickstart['step_s'] * 1000:.0f} ms)"),
    ]


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--photo-size", default="640x480", help="WIDTHxHEIGHT of the JPEGs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quickstart-steps", type=int, default=30)
    add_machine_arguments(parser)
    args = parser.parse_args(argv)
    print(machine_report(args.peak_size))
    rows = run(args.images, tuple(int(side) for side in args.photo_size.split("x")), args.workers, args.batch_size,
               args.repeats, args.quickstart_steps)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
