"""Training-image throughput: one core decoding a 640x480 JPEG (JPEG draft mode against the plain torchvision
chain), then the whole training loader (decode, crop, tokenize, batch) on a COCO-layout folder of JPEGs.

    python benchmarks/data_loader_speed.py [--images 256] [--photo-size 640x480] [--workers 2] [--batch-size 64]
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dataloader.config import DataConfig  # noqa: E402
from dataloader.train_loader import build_train_loader  # noqa: E402
from dataloader.transforms import TrainImageTransform  # noqa: E402
from model.config import OPENAI_MEAN, OPENAI_STD  # noqa: E402
from model.preprocess import image_transform  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[1] / "test_images"
IMAGE_SIZE = 224


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


def images_per_second(transform, path: Path, repeats: int) -> float:
    transform(path)
    start = time.perf_counter()
    for _ in range(repeats):
        transform(path)
    return repeats / (time.perf_counter() - start)


def one_core_decoding(path: Path, repeats: int):
    torchvision_chain = image_transform(IMAGE_SIZE, OPENAI_MEAN, OPENAI_STD)
    rng = np.random.default_rng(0)
    chains = {
        "torchvision (open, resize, centre crop, normalise)": lambda p: torchvision_chain(Image.open(p)),
        "ours, draft decode + centre crop": lambda p, t=TrainImageTransform(
            IMAGE_SIZE, OPENAI_MEAN, OPENAI_STD, "center"): t(p, rng),
        "ours, draft decode + random crop": lambda p, t=TrainImageTransform(
            IMAGE_SIZE, OPENAI_MEAN, OPENAI_STD, "random"): t(p, rng),
    }
    for name, chain in chains.items():
        print(f"  {name:52s} {images_per_second(chain, path, repeats):7.0f} images/s")


def loader_throughput(config: DataConfig, workers: int, batch_size: int, epochs: int) -> float:
    config.num_workers = workers
    loader = build_train_loader(config, image_size=IMAGE_SIZE, mean=OPENAI_MEAN, std=OPENAI_STD, context_length=77,
                                batch_size=batch_size, rank=0, world_size=1, seed=0, pin_memory=False)
    for _ in loader.epoch(0):  # start the workers and fill the page cache
        pass
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for _ in loader.epoch(epoch):
            pass
    return epochs * len(loader) * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--photo-size", default="640x480", help="WIDTHxHEIGHT of the JPEGs the loader reads")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    photo_size = tuple(int(side) for side in args.photo_size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        config = write_coco_folder(Path(folder), args.images, photo_size)
        sample = Path(config.train_img_dir) / "000000000004.jpg"
        print(f"one core, {Image.open(sample).size[0]}x{Image.open(sample).size[1]} JPEG -> {IMAGE_SIZE} px tensor:")
        one_core_decoding(sample, args.repeats)
        rate = loader_throughput(config, args.workers, args.batch_size, args.epochs)
        print(f"training loader, {args.workers} workers, {args.photo_size} JPEGs, batch {args.batch_size}: "
              f"{rate:.0f} images/s")


if __name__ == "__main__":
    main()
