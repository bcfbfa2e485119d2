"""Classify your own images zero-shot: the top-5 classes of each image, optionally drawn beside it; or, on a
labelled class-per-folder set, a grid of examples captioned "Predicted (True)".

  python zero_shot_demo.py --checkpoint_path CKPT --img_path test_images/cat.jpg --show_prediction
  python zero_shot_demo.py --checkpoint_path CKPT --img_dir test_images --classes "cat,dog,car"
  python zero_shot_demo.py --checkpoint_path CKPT --labelled_dir data/PACS/sketch --examples 16
"""
import argparse
import sys
from pathlib import Path

import torch

from dataloader.eval.class_names import cifar100_class_names, read_class_name_file
from dataloader.eval.eval_datasets import UnreadableImage, read_eval_set
from dataloader.eval.splits import spread_over_classes
from dataloader.image_io import load_readable_images
from dataloader.train.labelled_train_set import decoded
from evaluation.figures import plot_top_predictions
from evaluation.image_figures import plot_prediction_grid
from evaluation.template_sets import load_templates, template_set_names
from evaluation.zeroshot import image_list_probabilities, zero_shot_head
from model import load_model
from utils.cli import (ScriptArgumentParser, add_checkpoint_argument, add_inference_arguments,
                       parse_with_config, run_command)
from utils.errors import UserError
from utils.precision import choose_inference_precision

IMAGES_PER_FIGURE = 20  # beyond this a figure gets too tall to read: continue in the next file
DISPLAY_SIDE = 320  # decode at least this large so that the figure shows the image sharp, not at model size


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ScriptArgumentParser(__doc__)
    add_checkpoint_argument(parser)
    images = parser.add_mutually_exclusive_group(required=True)
    images.add_argument("--img_path", help="one image")
    images.add_argument("--img_dir", help="a folder of images (files that are not images are skipped)")
    images.add_argument("--labelled_dir",
                        help="a class-per-folder set: a grid of --examples images captioned 'Predicted (True)'")
    classes = parser.add_mutually_exclusive_group()
    classes.add_argument("--classes", help='comma-separated class names, e.g. "cat,dog,car" (default: CIFAR-100)')
    classes.add_argument("--class_file", help="file with one class name per line")
    parser.add_argument("--templates", default="cifar",
                        help=f"a template set ({', '.join(template_set_names())}), a file with one template per "
                             "line, or one template such as 'a photo of a {}.' (default: cifar)")
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--examples", type=int, default=16,
                        help="with --labelled_dir: how many images, spread over the classes (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="with --labelled_dir: which images are drawn")
    parser.add_argument("--show_prediction", action="store_true",
                        help="save a figure of each image beside its top classes in --output_dir")
    parser.add_argument("--output_dir", default="demo_output")
    add_inference_arguments(parser, batch_size=32, loader_workers=False)
    return parse_with_config(parser, argv)


def demo_class_names(args: argparse.Namespace) -> list[str]:
    if args.classes is not None:
        names = [name.strip() for name in args.classes.split(",") if name.strip()]
        if not names:
            raise UserError(f"--classes {args.classes!r} holds no class names (expected e.g. \"cat,dog,car\")")
        return names
    if args.class_file is not None:
        return read_class_name_file(args.class_file)
    return cifar100_class_names()


def image_paths(args: argparse.Namespace) -> list[Path]:
    if args.img_path is not None:
        path = Path(args.img_path)
        if not path.is_file():
            raise UserError(f"--img_path {path} is not a file")
        return [path]
    folder = Path(args.img_dir)
    if not folder.is_dir():
        raise UserError(f"--img_dir {folder} is not a directory")
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))


def loaded_model(args: argparse.Namespace):
    """(device, model, preprocess, precision) for this run."""
    device = torch.device(args.device)
    model, preprocess = load_model(args.checkpoint_path, device=device)
    precision = choose_inference_precision(args.precision, model.eval(), device, args.batch_size,
                                           channels_last=False).precision
    return device, model, preprocess, precision


def run_demo(args: argparse.Namespace) -> None:
    if args.labelled_dir is not None:
        return run_labelled_demo(args)
    class_names = demo_class_names(args)
    _, templates = load_templates(args.templates)
    device, model, preprocess, precision = loaded_model(args)

    loaded, skipped = load_readable_images(image_paths(args), max(model.config.image_size, DISPLAY_SIDE))
    for path, reason in skipped:
        print(f"warning: skipping {path}: not a readable image ({reason})", file=sys.stderr)
    if not loaded:
        raise UserError(f"no readable images in {args.img_path or args.img_dir}")

    head = zero_shot_head(model, class_names, templates, device, precision)
    images = [image for _, image in loaded]
    probabilities = image_list_probabilities(model, images, preprocess, head, device, precision, args.batch_size)
    top = probabilities.topk(min(args.top_k, len(class_names)), dim=1)
    predictions = [[(class_names[i], float(p)) for p, i in zip(values, indices)]
                   for values, indices in zip(top.values.tolist(), top.indices.tolist())]
    for (path, _), prediction in zip(loaded, predictions):
        print(path)
        for name, probability in prediction:
            print(f"  {100 * probability:6.2f}%  {name}")

    if args.show_prediction:
        stem = Path(args.img_path).stem if args.img_path else Path(args.img_dir).resolve().name
        for page, start in enumerate(range(0, len(loaded), IMAGES_PER_FIGURE), start=1):
            chunk = slice(start, start + IMAGES_PER_FIGURE)
            suffix = "" if len(loaded) <= IMAGES_PER_FIGURE else f"_{page}"
            figure_path = plot_top_predictions(images[chunk],
                                               [path.name for path, _ in loaded[chunk]], predictions[chunk],
                                               Path(args.output_dir) / f"{stem}_predictions{suffix}.png")
            print(f"wrote {figure_path}")


def run_labelled_demo(args: argparse.Namespace) -> None:
    """Zero-shot predictions for examples of a labelled folder set, against their folder's class."""
    if args.classes is not None:
        raise UserError("--classes does not go with --labelled_dir: the class folders name the classes "
                        "(--class_file renames them, in sorted folder order)")
    if args.examples < 1:
        raise UserError(f"--examples must be at least 1, got {args.examples}")
    device, model, preprocess, precision = loaded_model(args)
    labelled = read_eval_set("folder", args.labelled_dir, decoded, min_side=max(model.config.image_size, DISPLAY_SIDE),
                             class_names_file=args.class_file)
    chosen = spread_over_classes(torch.tensor(labelled.dataset.labels), args.examples, args.seed).tolist()
    samples = [(index, labelled.dataset[index]) for index in chosen]
    for index, sample in samples:
        if isinstance(sample, UnreadableImage):
            print(f"warning: skipping {sample.path}: not a readable image ({sample.reason})", file=sys.stderr)
    readable = [(index, sample) for index, sample in samples if not isinstance(sample, UnreadableImage)]
    if not readable:
        raise UserError(f"none of the chosen images in {args.labelled_dir} could be read")
    _, templates = load_templates(args.templates)
    head = zero_shot_head(model, labelled.class_names, templates, device, precision)
    images = [image for _, (image, _) in readable]
    predicted = image_list_probabilities(model, images, preprocess, head, device, precision,
                                         args.batch_size).argmax(dim=1).tolist()
    predicted_names = [labelled.class_names[label] for label in predicted]
    true_names = [labelled.class_names[label] for _, (_, label) in readable]
    for (index, _), guess, truth in zip(readable, predicted_names, true_names):
        print(f"{labelled.dataset.paths[index]}: {guess} ({truth})")
    figure_path = plot_prediction_grid(images, predicted_names, true_names,
                                       Path(args.output_dir) / f"{labelled.name}_predicted_true.png",
                                       f"Zero-shot on {labelled.name}: {args.checkpoint_path}")
    print(f"{sum(g == t for g, t in zip(predicted_names, true_names))} of {len(images)} right; wrote {figure_path}")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda arguments: run_demo(parse_args(arguments)), argv)


if __name__ == "__main__":
    sys.exit(main())
