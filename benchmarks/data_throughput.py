"""Training-image throughput: one core turning a COCO-like JPEG into a normalised tensor (our draft-decoding
transform against the torchvision default chain); the whole training loader (decode, crop, tokenize, batch) on a
COCO-layout folder of such JPEGs; the loader on one core reading webdataset shards of the same images pre-resized
by make_shards against the JPEG folder; and whether the loader keeps up with training steps (the time each step
waits for its batch): the quickstart's, and an RN50 step's with 2 workers on shards and on the JPEG folder.

    python -m benchmarks.data_throughput [--images 128] [--photo-size 640x480] [--workers 2] [--batch-size 32]
                                         [--quickstart-steps 30] [--shard-image-size 256] [--wait-model RN50]
                                         [--wait-steps 3]
"""
import argparse
import dataclasses
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
from dataloader.coco import read_coco_captions
from dataloader.config import DataConfig
from dataloader.make_shards import make_shards
from dataloader.train.train_data import build_train_loader
from dataloader.train.transforms import TrainImageTransform
from model import build_model, model_config_by_name
from model.config import OPENAI_MEAN, OPENAI_STD
from model.preprocess import image_transform
from utils.config import read_yaml
from utils.precision import decide_precision, training_workload

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


def write_shards_of(coco: DataConfig, out_dir: Path, image_size: int, shards: int) -> DataConfig:
    """The COCO folder's images as `shards` shards of JPEGs pre-resized to `image_size` (make_shards)."""
    data = read_coco_captions(coco.train_annotation_file, coco.train_img_dir)
    make_shards(data, out_dir, image_size=image_size, shard_size=-(-len(data.image_paths) // shards), workers=1)
    return DataConfig(train_data=str(out_dir))


def step_waits(model_name: str, data: DataConfig, batch_size: int, steps: int) -> dict:
    """Train `model_name` on `data` through the trainer's step for `steps` steps (after one): seconds per step
    spent waiting for the next batch, and computing."""
    from trainer.config import OptimizerConfig
    from trainer.objectives import ContrastiveObjective
    from trainer.optim import build_optimizer, optimizer_step
    from trainer.trainer import accumulate_gradients

    model_config = model_config_by_name(model_name)
    loader = build_train_loader(data, image_size=model_config.image_size, mean=model_config.image_mean,
                                std=model_config.image_std, context_length=model_config.context_length,
                                batch_size=batch_size, rank=0, world_size=1, seed=0, pin_memory=False)
    model = build_model(model_config).train()
    optimizer, objective = build_optimizer(model, OptimizerConfig()), ContrastiveObjective()
    scaler, device = torch.amp.GradScaler("cpu", enabled=False), torch.device("cpu")
    precision = decide_precision("auto", device, training_workload(model, objective, batch_size, device,
                                                                   channels_last=False)).precision
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


def quickstart_data_wait(steps: int) -> dict:
    """step_waits of the quickstart's model on its synthetic data, with its loader settings."""
    from dataloader.train.synthetic import SyntheticDataConfig, ensure_synthetic_dataset

    settings = read_yaml(QUICKSTART)
    batch_size = settings["train"]["batch_size"]
    with tempfile.TemporaryDirectory() as folder:
        synthetic = SyntheticDataConfig(**{**settings["synthetic_data"], "root": folder})
        synthetic.train_images = min(synthetic.train_images, batch_size * (steps + 1))  # no more than is read
        ensure_synthetic_dataset(synthetic)
        data = DataConfig(train_img_dir=str(synthetic.train_img_dir),
                          train_annotation_file=str(synthetic.train_annotation_file),
                          num_workers=settings["data"]["num_workers"])
        return step_waits(settings["model"]["name"], data, batch_size, steps)


def wait_row(name: str, waits: dict, model_name: str, reference: dict | None = None,
             reference_name: str = "") -> Row:
    share = waits["wait_s"] / (waits["wait_s"] + waits["step_s"])
    return Row("data", f"{name}: data wait per step ({waits['workers']} workers, batch {waits['batch_size']})",
               waits["wait_s"] * 1000, reference["wait_s"] * 1000 if reference else None, "ms", reference_name,
               f"{share:.1%} of the step time ({model_name} compute {waits['step_s'] * 1000:.0f} ms)")


def run(images: int, photo_size: tuple[int, int], workers: int, batch_size: int, repeats: int,
        quickstart_steps: int, shard_image_size: int, wait_model: str, wait_steps: int,
        image_size: int = 224) -> list[Row]:
    size_name = f"{photo_size[0]}x{photo_size[1]}"
    with tempfile.TemporaryDirectory() as folder:
        config = write_coco_folder(Path(folder), images, photo_size)
        shards = write_shards_of(config, Path(folder) / "shards", shard_image_size, shards=2 * max(1, workers))
        with torch_threads(1):
            paths = sorted(Path(config.train_img_dir).glob("*.jpg"))[:32]
            rates = one_core_rates(paths, image_size, repeats)
            loader = loader_rate(config, image_size, workers, batch_size, repeats)
            per_core = {name: loader_rate(source, image_size, 0, batch_size, repeats)
                        for name, source in (("shards", shards), ("folder", config))}
        waits = {name: step_waits(wait_model, dataclasses.replace(source, num_workers=workers), batch_size, wait_steps)
                 for name, source in (("shards", shards), ("folder", config))}
    quickstart = quickstart_data_wait(quickstart_steps)  # on the threads a quickstart run trains with
    print(f"data: one core, {size_name} JPEG -> {image_size} px: torchvision {rates['torchvision']:.0f} images/s, "
          f"ours {rates['ours']:.0f}; loader with {workers} workers {loader:.0f} images/s; loader on one core: "
          f"{shard_image_size} px shards {per_core['shards']:.0f} images/s, JPEG folder {per_core['folder']:.0f}; "
          f"{wait_model} steps wait {waits['shards']['wait_s'] * 1000:.1f} ms (shards) / "
          f"{waits['folder']['wait_s'] * 1000:.1f} ms (folder) per {waits['shards']['step_s'] * 1000:.0f} ms step; "
          f"quickstart steps wait {quickstart['wait_s'] * 1000:.1f} ms per {quickstart['step_s'] * 1000:.0f} ms step")
    return [
        Row("data", f"{size_name} JPEG -> {image_size} px tensor, per core", rates["ours"], rates["torchvision"],
            "images/s", "torchvision default chain", "draft decode, crop + resize in one call"),
        Row("data", f"training loader, {workers} workers, batch {batch_size}", loader, None, "images/s",
            note="decode, crop, tokenize, batch"),
        Row("data", f"training loader on one core: shards of {shard_image_size} px JPEGs vs {size_name} JPEG folder",
            per_core["shards"], per_core["folder"], "images/s", "COCO-layout JPEG folder",
            "same images, pre-resized by make_shards"),
        wait_row(f"{wait_model} on shards", waits["shards"], wait_model, waits["folder"], f"{size_name} JPEG folder"),
        wait_row("quickstart", quickstart, "quickstart"),
    ]


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--photo-size", default="640x480", help="WIDTHxHEIGHT of the JPEGs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quickstart-steps", type=int, default=30)
    parser.add_argument("--shard-image-size", type=int, default=256, help="shorter side of the shards' images")
    parser.add_argument("--wait-model", default="RN50", help="model whose training steps the data wait is set against")
    parser.add_argument("--wait-steps", type=int, default=3)
    add_machine_arguments(parser)
    args = parser.parse_args(argv)
    print(machine_report(args.peak_size))
    rows = run(args.images, tuple(int(side) for side in args.photo_size.split("x")), args.workers, args.batch_size,
               args.repeats, args.quickstart_steps, args.shard_image_size, args.wait_model, args.wait_steps)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
