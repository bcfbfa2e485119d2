"""Zero-shot classification accuracy of a CLIP checkpoint on CIFAR, the ImageNet family or any class-per-folder set.

  python zeroshot_eval.py --checkpoint_path CKPT --dataset_type cifar --dataset cifar10 --data_dir data/cifar
  python zeroshot_eval.py --checkpoint_path CKPT --dataset_type imagenet --data_dir data/imagenet-r
  python zeroshot_eval.py --checkpoint_path CKPT --dataset_type folder --data_dir data/PACS/sketch
"""
import argparse
import os
import sys
import time

import torch
from torch.utils.data import DataLoader

from dataloader.eval_datasets import READERS, collate_readable, read_eval_set
from evaluation.figures import plot_per_class_accuracy
from evaluation.metrics import summarise
from evaluation.report import summary_lines, write_reports
from evaluation.template_sets import load_templates, template_set_names
from evaluation.zeroshot import classify, zero_shot_head
from model import load_model
from utils.cli import run_command
from utils.errors import UserError
from utils.precision import resolve_precision


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint_path", required=True,
                        help="our checkpoint, an OpenAI or open_clip weights file, or a model config name")
    parser.add_argument("--dataset_type", required=True, choices=sorted(READERS))
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--dataset", default=None,
                        help="cifar10 or cifar100 for --dataset_type cifar (default cifar10); otherwise the name of "
                             "the result files (default: the data folder's name)")
    parser.add_argument("--classnames", default=None,
                        help="file with one class name per line, in label order (sorted folder order for folders)")
    parser.add_argument("--templates", default=None,
                        help=f"a template set ({', '.join(template_set_names())}), a file with one template per "
                             "line, or one template such as 'a photo of a {}.' (default: the dataset's set)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--channels_last", action="store_true", help="channels-last image tensors (faster convs)")
    parser.add_argument("--output_dir", default="zero_shot_eval_output")
    return parser.parse_args(argv)


def evaluate(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    precision, precision_reason = resolve_precision(args.precision, device)
    model, preprocess = load_model(args.checkpoint_path, device=device)
    model.eval()
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    eval_set = read_eval_set(args.dataset_type, args.data_dir, preprocess, dataset_name=args.dataset,
                             min_side=model.config.image_size, class_names_file=args.classnames)
    template_name, templates = load_templates(args.templates or eval_set.default_templates)
    print(f"{eval_set.name}: {len(eval_set.dataset)} images, {len(eval_set.class_names)} classes, "
          f"{len(templates)} template(s) '{template_name}', {precision} ({precision_reason})")

    head = zero_shot_head(model, eval_set.class_names, templates, device, precision)
    loader = DataLoader(eval_set.dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                        collate_fn=collate_readable, pin_memory=device.type == "cuda")
    start = time.perf_counter()
    tally, unreadable = classify(model, loader, head, device, precision, args.channels_last)
    seconds = time.perf_counter() - start
    for image in unreadable:
        print(f"warning: skipped unreadable image {image.path}: {image.reason}", file=sys.stderr)
    if unreadable:
        print(f"warning: skipped {len(unreadable)} unreadable image(s)", file=sys.stderr)
    if not tally.images.sum():
        raise UserError(f"none of the {len(eval_set.dataset)} images in {args.data_dir} could be read")

    result = summarise(tally, eval_set.class_names)
    run_info = {
        "checkpoint": str(args.checkpoint_path),
        "dataset": eval_set.name,
        "dataset_type": args.dataset_type,
        "data_dir": str(args.data_dir),
        "templates": {"name": template_name, "count": len(templates)},
        "num_classes": len(eval_set.class_names),
        "num_unreadable_images": len(unreadable),
        "precision": precision,
        "images_per_second": round(result.num_images / seconds, 1),
    }
    text_path, json_path = write_reports(result, args.output_dir, eval_set.name, run_info)
    chart_path = plot_per_class_accuracy(result, text_path.with_suffix(".png"),
                                         f"Zero-shot {eval_set.name}: {args.checkpoint_path}")
    print("\n".join(summary_lines(result)))
    print(f"{result.num_images} images in {seconds:.1f} s ({result.num_images / seconds:.1f} images/s)")
    print(f"wrote {text_path}, {json_path}, {chart_path}")


def main(argv: list[str] | None = None) -> int:
    return run_command(evaluate, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
