"""Zero-shot classification accuracy of a CLIP checkpoint on CIFAR, the ImageNet family or any class-per-folder set.

  python zeroshot_eval.py --checkpoint_path CKPT --dataset_type cifar --dataset cifar10 --data_dir data/cifar
  python zeroshot_eval.py --checkpoint_path CKPT --dataset_type imagenet --data_dir data/imagenet-r
  python zeroshot_eval.py --checkpoint_path CKPT --dataset_type folder --data_dir data/PACS/sketch
"""
import argparse
import re
import sys
import time

import torch

from dataloader.eval.eval_datasets import add_eval_set_arguments, read_eval_set
from evaluation.report import nonfinite_warning, summary_lines, write_template_comparison, write_zero_shot_report
from evaluation.template_sets import load_templates, template_set_names
from evaluation.zeroshot import zero_shot_scores
from model import load_model
from model.inference import prepare_for_inference
from utils.cli import (ScriptArgumentParser, add_checkpoint_argument, add_inference_arguments,
                       parse_with_config, run_command)
from utils.errors import UserError
from utils.precision import choose_inference_precision


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ScriptArgumentParser(__doc__)
    add_checkpoint_argument(parser)
    add_eval_set_arguments(parser)
    parser.add_argument("--dataset", default=None,
                        help="cifar10 or cifar100 for --dataset_type cifar (default: the one the folder holds or "
                             "names); otherwise the name of the result files (default: the data folder's name)")
    parser.add_argument("--classnames", default=None,
                        help="file with one class name per line, in label order (sorted folder order for folders)")
    parser.add_argument("--templates", default=None, nargs="+",
                        help=f"a template set ({', '.join(template_set_names())}), a file with one template per "
                             "line, or one template such as 'a photo of a {}.' (default: the dataset's set); "
                             "several: each is reported on the same images, to pick the best prompts")
    add_inference_arguments(parser, batch_size=64)
    parser.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=True,
                        help="channels-last image tensors for a ResNet tower (faster convolutions on CPUs)")
    parser.add_argument("--output_dir", default="zero_shot_eval_output")
    return parse_with_config(parser, argv)


def evaluate(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    model, preprocess = load_model(args.checkpoint_path, device=device)
    model = prepare_for_inference(model, args.channels_last)
    decision = choose_inference_precision(args.precision, model, device, args.batch_size, args.channels_last)
    precision = decision.precision
    eval_set = read_eval_set(args.dataset_type, args.data_dir, preprocess, dataset_name=args.dataset,
                             min_side=model.config.image_size, class_names_file=args.classnames)
    template_sets = [load_templates(spec) for spec in args.templates or [eval_set.default_templates]]
    names = [name for name, _ in template_sets]
    if len(set(names)) < len(names):
        raise UserError(f"--templates names a template set twice: {', '.join(names)}")
    print(f"{eval_set.name}: {len(eval_set.dataset)} images, {len(eval_set.class_names)} classes, "
          + ", ".join(f"{len(templates)} template(s) '{name}'" for name, templates in template_sets)
          + f", {decision.describe()}")

    start = time.perf_counter()
    results, unreadable = zero_shot_scores(model, eval_set, [templates for _, templates in template_sets], device,
                                           precision, batch_size=args.batch_size, num_workers=args.num_workers,
                                           channels_last=args.channels_last)
    seconds = time.perf_counter() - start
    for image in unreadable:
        print(f"warning: skipped unreadable image {image.path}: {image.reason}", file=sys.stderr)
    if unreadable:
        print(f"warning: skipped {len(unreadable)} unreadable image(s)", file=sys.stderr)

    for (template_name, templates), result in zip(template_sets, results):
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
        # One template set keeps the plain name; several get one report each, named after their set.
        report_name = eval_set.name if len(template_sets) == 1 else f"{eval_set.name}_{file_name_part(template_name)}"
        text_path, json_path, chart_path = write_zero_shot_report(
            result, args.output_dir, report_name, run_info,
            f"Zero-shot {eval_set.name}, templates '{template_name}': {args.checkpoint_path}")
        if len(template_sets) > 1:
            print(f"templates '{template_name}':")
        print("\n".join(summary_lines(result)))
        for line in nonfinite_warning(result.num_nonfinite, result.num_images, "images"):
            print(line, file=sys.stderr)
        print(f"wrote {text_path}, {json_path}, {chart_path}")
    if len(template_sets) > 1:
        print("\n".join(write_template_comparison(names, results, args.output_dir, eval_set.name)))
    print(f"{results[0].num_images} images in {seconds:.1f} s ({results[0].num_images / seconds:.1f} images/s)")


def file_name_part(text: str) -> str:
    """A template set's name as part of a file name: a file's stem, or a literal template made safe."""
    stem = text[:-4] if text.endswith(".txt") else text
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "templates"


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda arguments: evaluate(parse_args(arguments)), argv)


if __name__ == "__main__":
    sys.exit(main())
