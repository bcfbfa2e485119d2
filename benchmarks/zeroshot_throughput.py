"""Zero-shot evaluation throughput (images/s) at several batch sizes, on generated JPEGs in a class-per-folder set.

  python benchmarks/zeroshot_throughput.py --model tiny --images 512 --batch_sizes 1 64 --num_workers 2
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataloader.eval_datasets import collate_readable, read_eval_set  # noqa: E402
from evaluation.zeroshot import classify, zero_shot_head  # noqa: E402
from model import load_model  # noqa: E402
from utils.precision import resolve_precision  # noqa: E402


def write_jpegs(root: Path, count: int, classes: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    for index in range(count):
        folder = root / f"class_{index % classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        # smooth content, like a photo, so that JPEG decoding costs what it costs on real images
        image = Image.fromarray(np.roll(base, index, axis=1)).resize(size, Image.BILINEAR)
        image.save(folder / f"{index:06d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="checkpoint or model config name")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--image_width", type=int, default=640)
    parser.add_argument("--image_height", type=int, default=480)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    device = torch.device(args.device)
    precision, reason = resolve_precision(args.precision, device)
    model, preprocess = load_model(args.model, device=device)
    print(f"model {args.model}, {device}, {precision} ({reason}), torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as folder:
        write_jpegs(Path(folder), args.images, args.classes, (args.image_width, args.image_height))
        eval_set = read_eval_set("folder", folder, preprocess, min_side=model.config.image_size)
        head = zero_shot_head(model, eval_set.class_names, ["a photo of a {}."], device, precision)
        for batch_size in args.batch_sizes:
            loader = DataLoader(eval_set.dataset, batch_size=batch_size, num_workers=args.num_workers,
                                collate_fn=collate_readable, pin_memory=device.type == "cuda")
            start = time.perf_counter()
            tally, _ = classify(model, loader, head, device, precision, progress=False)
            seconds = time.perf_counter() - start
            count = int(tally.images.sum())
            print(f"batch {batch_size:4d}: {count} images in {seconds:6.2f} s = {count / seconds:8.1f} images/s")


if __name__ == "__main__":
    main()
