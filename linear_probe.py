"""Linear-probe accuracy of a CLIP checkpoint's frozen image features (the CLIP paper's protocol), and k-shot probes.

  python linear_probe.py --checkpoint_path CKPT --dataset_type cifar --dataset cifar10 --data_dir data/cifar
  python linear_probe.py --checkpoint_path CKPT --dataset_type imagenet --data_dir data/imagenet/train \\
      --test_dir data/imagenet/val
  python linear_probe.py --checkpoint_path CKPT --dataset_type folder --data_dir data/PACS/photo --k_shot 1 2 4 8 16

Training images come from --data_dir (CIFAR: its training batches); test images from --test_dir, CIFAR's test
batch, or else a seeded stratified --test_fraction of the training folder. Features are cached in --cache_dir.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dataloader.eval.eval_datasets import add_eval_set_arguments, read_eval_set
from dataloader.eval.splits import plan_splits, stratified_split
from evaluation.feature_sets import eval_set_features
from evaluation.features import ImageFeatures
from evaluation.figures import plot_k_shot_accuracy
from evaluation.k_shot import run_k_shot
from evaluation.linear_probe import fit_linear_probe, sweep_regularisation
from evaluation.metrics import ClassTally, summarise
from evaluation.report import nonfinite_warning, summary_lines, write_k_shot_table, write_reports
from evaluation.template_sets import load_templates
from evaluation.zeroshot import zero_shot_head
from model import load_model
from utils.cli import (ScriptArgumentParser, add_checkpoint_argument, add_inference_arguments,
                       parse_with_config, run_command)
from utils.errors import UserError
from utils.precision import choose_inference_precision


def k_values(text: str) -> list[int]:
    """`--k_shot 1,2,4` or `--k_shot 1 2 4`."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers such as 1,2,4,8,16, got {text!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ScriptArgumentParser(__doc__)
    add_checkpoint_argument(parser)
    add_eval_set_arguments(parser, "the training images")
    parser.add_argument("--test_dir", default=None, help="the test images (default: see above)")
    parser.add_argument("--dataset", default=None,
                        help="cifar10 or cifar100 for --dataset_type cifar; otherwise the name of the result files")
    parser.add_argument("--classnames", default=None, help="file with one class name per line, in label order")
    parser.add_argument("--templates", default=None, help="templates of the zero-shot comparison (default: the set's)")
    parser.add_argument("--test_fraction", type=float, default=0.2,
                        help="share of each class held out for testing when there is no test folder")
    parser.add_argument("--validation_fraction", type=float, default=0.2,
                        help="share of each training class held out to choose the regularisation")
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--regularisation", type=float, default=None,
                        help="use this lambda instead of sweeping 1e-6 ... 1e6 on the validation split")
    parser.add_argument("--k_shot", type=k_values, nargs="+", default=None,
                        help="also fit probes on K images per class, e.g. 1,2,4,8,16")
    parser.add_argument("--k_shot_seeds", type=int, nargs="+", default=[0, 1, 2])
    add_inference_arguments(parser, batch_size=128)
    parser.add_argument("--cache_dir", default="feature_cache")
    parser.add_argument("--output_dir", default="linear_probe_output")
    args = parse_with_config(parser, argv)
    if args.k_shot is not None:
        args.k_shot = sorted({k for group in args.k_shot for k in (group if isinstance(group, list) else [group])})
    for name in ("test_fraction", "validation_fraction"):
        if not 0 < getattr(args, name) < 1:
            parser.error(f"--{name} must lie strictly between 0 and 1")
    return args


def read_features(args, model, preprocess, device, precision, data_dir, split: str | None):
    """(EvalSet, ImageFeatures) of one folder or CIFAR split, from the cache when this model has seen it."""
    eval_set = read_eval_set(args.dataset_type, data_dir, preprocess, dataset_name=args.dataset,
                             min_side=model.config.image_size, class_names_file=args.classnames, split=split)
    cached = eval_set_features(model, eval_set, checkpoint=args.checkpoint_path, dataset_type=args.dataset_type,
                               data_dir=data_dir, split=split, device=device, precision=precision,
                               batch_size=args.batch_size, num_workers=args.num_workers, cache_dir=args.cache_dir)
    features = cached.features
    print(f"{eval_set.name} {split or data_dir}: {len(features.labels)} images, {cached.describe()}")
    for path in features.unreadable:
        print(f"warning: skipped unreadable image {path}", file=sys.stderr)
    if not len(features.labels):
        raise UserError(f"none of the images in {data_dir} could be read")
    return eval_set, features


def train_and_test_features(args, model, preprocess, device, precision):
    plan = plan_splits(args.dataset_type, args.data_dir, args.test_dir)
    eval_set, train = read_features(args, model, preprocess, device, precision, args.data_dir, plan.train_split)
    if not plan.held_out:
        return eval_set, train, read_features(args, model, preprocess, device, precision, plan.test_dir,
                                              plan.test_split)[1]
    kept, held_out = stratified_split(train.labels, args.test_fraction, args.split_seed)
    print(f"test split: {len(held_out)} of {len(train.labels)} images (--test_fraction {args.test_fraction}, "
          f"seed {args.split_seed})")
    return eval_set, train.subset(kept), train.subset(held_out)


def zero_shot_top1(model, eval_set, templates_spec, test: ImageFeatures, device, precision) -> float:
    """Zero-shot accuracy on the same test features, for comparison: no second pass over the images."""
    _, templates = load_templates(templates_spec or eval_set.default_templates)
    head = zero_shot_head(model, eval_set.class_names, templates, device, precision).cpu()
    tally = ClassTally(len(eval_set.class_names))
    tally.add(F.normalize(test.features, dim=-1) @ head, test.labels)
    return summarise(tally, eval_set.class_names).top1


def evaluate(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    model, preprocess = load_model(args.checkpoint_path, device=device)
    decision = choose_inference_precision(args.precision, model.eval(), device, args.batch_size, channels_last=False)
    precision = decision.precision
    print(f"image features in {decision.describe()}")
    eval_set, train, test = train_and_test_features(args, model, preprocess, device, precision)
    num_classes = len(eval_set.class_names)

    start = time.perf_counter()
    sweep = None
    regularisation = args.regularisation
    if regularisation is None:
        kept, held_out = stratified_split(train.labels, args.validation_fraction, args.split_seed)
        sweep = sweep_regularisation(train.features[kept], train.labels[kept], train.features[held_out],
                                     train.labels[held_out], num_classes)
        regularisation = sweep.regularisation
        print(f"regularisation {regularisation:.3g} chosen on {len(held_out)} validation images "
              f"({100 * sweep.validation_accuracy:.2f}% there, {len(sweep.history)} values tried)")
    probe = fit_linear_probe(train.features, train.labels, num_classes, regularisation)
    fit_seconds = time.perf_counter() - start
    tally = ClassTally(num_classes)
    tally.add(probe.logits(test.features), test.labels)
    result = summarise(tally, eval_set.class_names)
    zero_shot = zero_shot_top1(model, eval_set, args.templates, test, device, precision)

    run_info = {
        "checkpoint": str(args.checkpoint_path),
        "dataset": eval_set.name,
        "dataset_type": args.dataset_type,
        "data_dir": str(args.data_dir),
        "test_dir": args.test_dir,
        "num_classes": num_classes,
        "num_train_images": len(train.labels),
        "regularisation": regularisation,
        "regularisation_sweep": None if sweep is None else [
            {"regularisation": value, "validation_accuracy": 100.0 * score} for value, score in sweep.history],
        "fit_seconds": round(fit_seconds, 2),
        "zero_shot_top1": zero_shot,
        "precision": precision,
    }
    output_dir = Path(args.output_dir)
    name = f"{eval_set.name}_linear_probe"
    if args.k_shot:
        k_shot = run_k_shot(train.features, train.labels, test.features, test.labels, num_classes, args.k_shot,
                            args.k_shot_seeds, regularisation, eval_set.class_names)
        run_info["k_shot"] = [{"k": r.k, "mean": r.mean, "std": r.std, "seeds": r.seeds, "accuracies": r.accuracies}
                              for r in k_shot]
        lines = write_k_shot_table(k_shot, output_dir / f"{name}_k_shot.txt")
        plot_path = plot_k_shot_accuracy(k_shot, zero_shot, result.top1, output_dir / f"{name}_k_shot.png",
                                         f"k-shot linear probe, {eval_set.name}: {args.checkpoint_path}")
        print("\n".join(lines))
        print(f"wrote {output_dir / f'{name}_k_shot.txt'}, {plot_path}")
    text_path, json_path = write_reports(result, output_dir, name, run_info)
    print("\n".join(summary_lines(result)))
    for line in nonfinite_warning(result.num_nonfinite, result.num_images, "test images"):
        print(line, file=sys.stderr)
    print(f"zero-shot top-1 on the same test images: {zero_shot:.2f} %")
    print(f"wrote {text_path}, {json_path}")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda arguments: evaluate(parse_args(arguments)), argv)


if __name__ == "__main__":
    sys.exit(main())
