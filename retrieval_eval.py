"""Image-text retrieval recall@K, mean and median rank of a CLIP checkpoint on a COCO-format captions file or a
Karpathy split file (the 5k COCO / 1k Flickr30k test images the CLIP paper reports), and its image folder.

  python retrieval_eval.py --checkpoint_path CKPT --annotation_file data/coco/annotations/captions_val2017.json \\
      --image_dir data/coco/val2017
  python retrieval_eval.py --checkpoint_path CKPT --annotation_file data/karpathy/dataset_coco.json \\
      --image_dir data/coco --recall_k 1 5 10 50
  python retrieval_eval.py --checkpoint_path CKPT --annotation_file data/karpathy/dataset_flickr30k.json \\
      --image_dir data/flickr30k/images

Every image is scored with all of its captions: image -> text counts a hit when any of its captions is in the top K.
"""
import argparse
import sys
from pathlib import Path

import torch

from dataloader.eval.karpathy import SPLITS as KARPATHY_SPLITS, read_retrieval_captions
from evaluation.features import cached_image_features, feature_cache_file
from evaluation.report import write_retrieval_report
from evaluation.retrieval import DEFAULT_KS, caption_image_features, captioned_retrieval, text_features
from model import load_model
from utils.cli import (ScriptArgumentParser, add_checkpoint_argument, add_inference_arguments,
                       parse_with_config, run_command)
from utils.errors import UserError
from utils.precision import choose_inference_precision


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ScriptArgumentParser(__doc__)
    add_checkpoint_argument(parser)
    parser.add_argument("--annotation_file", required=True,
                        help="COCO-format captions JSON, or a Karpathy split file (dataset_coco.json ...)")
    parser.add_argument("--image_dir", required=True)
    parser.add_argument("--split", default="test", choices=KARPATHY_SPLITS,
                        help="the split of a Karpathy split file (default: test)")
    parser.add_argument("--recall_k", type=int, nargs="+", default=list(DEFAULT_KS), help="the K of recall@K")
    parser.add_argument("--name", default=None, help="name of the result files (default: the captions file's name)")
    add_inference_arguments(parser, batch_size=128)
    parser.add_argument("--cache_dir", default="feature_cache")
    parser.add_argument("--output_dir", default="retrieval_output")
    args = parse_with_config(parser, argv)
    if min(args.recall_k) < 1:
        parser.error("--recall_k values must be at least 1")
    return args


def evaluate(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    captioned = read_retrieval_captions(args.annotation_file, args.image_dir, args.split)
    for path in captioned.missing:
        print(f"warning: image listed in {args.annotation_file} not found: {path}", file=sys.stderr)
    if not captioned.image_paths:
        raise UserError(f"none of the images of {args.annotation_file} is in {args.image_dir}")
    model, preprocess = load_model(args.checkpoint_path, device=device)
    decision = choose_inference_precision(args.precision, model, device, args.batch_size, channels_last=False)
    precision = decision.precision
    name = args.name or Path(args.annotation_file).stem
    print(f"{name}: {len(captioned.image_paths)} images, {sum(map(len, captioned.captions))} captions, "
          f"{decision.describe()}")

    cache_file = feature_cache_file(
        args.cache_dir, f"{name}-images", args.checkpoint_path,
        {"annotation_file": str(Path(args.annotation_file).resolve()), "image_dir": str(Path(args.image_dir).resolve()),
         "images": len(captioned.image_paths)},
        {"image_size": model.config.image_size, "mean": list(model.config.image_mean),
         "std": list(model.config.image_std), "precision": precision})
    image_features, from_cache = cached_image_features(cache_file, lambda: caption_image_features(
        model, captioned, preprocess, device, precision, batch_size=args.batch_size, num_workers=args.num_workers))
    if from_cache:
        print(f"image features read from {cache_file}")
    for path in image_features.unreadable:
        print(f"warning: skipped unreadable image {path} and its captions", file=sys.stderr)
    if not len(image_features.labels):
        raise UserError(f"none of the images of {args.annotation_file} in {args.image_dir} could be read")
    ks = sorted(set(args.recall_k))
    result = captioned_retrieval(image_features, captioned.captions, lambda texts: text_features(
        model, texts, device, precision, batch_size=args.batch_size), ks)
    run_info = {"checkpoint": str(args.checkpoint_path), "annotation_file": str(args.annotation_file),
                "image_dir": str(args.image_dir), "split": args.split, "num_missing_images": len(captioned.missing),
                "num_unreadable_images": len(image_features.unreadable), "precision": precision}
    lines, text_path, json_path = write_retrieval_report(result, ks, args.output_dir, name, run_info)
    print("\n".join(lines))
    for line in lines:
        if line.startswith("WARNING"):
            print(line, file=sys.stderr)
    print(f"wrote {text_path}, {json_path}")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda arguments: evaluate(parse_args(arguments)), argv)


if __name__ == "__main__":
    sys.exit(main())
