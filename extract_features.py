"""Export a CLIP checkpoint's image features (with labels and file paths) of any evaluation set, and the class
text embeddings, to safetensors or npz, for your own probes.

  python extract_features.py --checkpoint_path CKPT --dataset_type folder --data_dir data/PACS/photo \\
      --output features/pacs_photo.safetensors
  python extract_features.py --checkpoint_path CKPT --dataset_type cifar --data_dir data/CIFAR100 --split train \\
      --output features/cifar100_train.npz

Reading the file back:
  from safetensors import safe_open           |  import numpy as np
  with safe_open(PATH, "pt") as f:            |  data = np.load(PATH)
      x = f.get_tensor("image_features")      |  x, y = data["image_features"], data["labels"]
      names = json.loads(f.metadata()["class_names"])
"""
import argparse
import sys

import torch

from dataloader.eval.eval_datasets import SPLITS, add_eval_set_arguments, read_eval_set
from evaluation.feature_export import FORMATS, check_output_file, readable_paths, write_feature_file
from evaluation.feature_sets import eval_set_features
from evaluation.template_sets import load_templates
from evaluation.zeroshot import zero_shot_head
from model import load_model
from utils.cli import (ScriptArgumentParser, add_checkpoint_argument, add_inference_arguments,
                       parse_with_config, run_command)
from utils.errors import UserError
from utils.precision import choose_inference_precision


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ScriptArgumentParser(__doc__)
    add_checkpoint_argument(parser)
    add_eval_set_arguments(parser)
    parser.add_argument("--dataset", default=None, help="cifar10 or cifar100 for CIFAR (default: the folder says)")
    parser.add_argument("--split", default=None, help="train or test for CIFAR (default: test)")
    parser.add_argument("--classnames", default=None, help="file with one class name per line, in label order")
    parser.add_argument("--templates", default=None, help="templates of the class text embeddings (default: "
                                                          "the dataset's set)")
    parser.add_argument("--output", required=True, help=f"the file to write ({' or '.join(FORMATS)})")
    add_inference_arguments(parser, batch_size=128)
    parser.add_argument("--cache_dir", default="feature_cache")
    return parse_with_config(parser, argv)


def export(args: argparse.Namespace) -> None:
    output = check_output_file(args.output)
    device = torch.device(args.device)
    model, preprocess = load_model(args.checkpoint_path, device=device)
    precision = choose_inference_precision(args.precision, model, device, args.batch_size,
                                           channels_last=False).precision
    eval_set = read_eval_set(args.dataset_type, args.data_dir, preprocess, dataset_name=args.dataset,
                             min_side=model.config.image_size, class_names_file=args.classnames, split=args.split)
    split = args.split or ("test" if args.dataset_type in SPLITS else None)
    cached = eval_set_features(model, eval_set, checkpoint=args.checkpoint_path, dataset_type=args.dataset_type,
                               data_dir=args.data_dir, split=split, device=device, precision=precision,
                               batch_size=args.batch_size, num_workers=args.num_workers, cache_dir=args.cache_dir)
    features = cached.features
    for path in features.unreadable:
        print(f"warning: skipped unreadable image {path}", file=sys.stderr)
    if not len(features.labels):
        raise UserError(f"none of the images in {args.data_dir} could be read")
    # CIFAR's images live in batch files: name each by set, split and index instead of a file path
    all_paths = [str(path) for path in getattr(eval_set.dataset, "paths", [])] or \
        [f"{eval_set.name}/{split}/{index}" for index in range(len(eval_set.dataset))]
    _, templates = load_templates(args.templates or eval_set.default_templates)
    text_embeddings = zero_shot_head(model, eval_set.class_names, templates, device, precision).T.cpu()
    written = write_feature_file(output, {"image_features": features.features, "labels": features.labels,
                                          "text_embeddings": text_embeddings},
                                 {"paths": readable_paths(all_paths, features.unreadable),
                                  "class_names": eval_set.class_names})
    print(f"{eval_set.name}: {len(features.labels)} images x {features.features.shape[1]} features, "
          f"{len(eval_set.class_names)} class text embeddings ({cached.describe()}); wrote {written}")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda arguments: export(parse_args(arguments)), argv)


if __name__ == "__main__":
    sys.exit(main())
