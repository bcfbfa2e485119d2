"""Classify your own images zero-shot: the top-5 classes of each image, optionally drawn beside it; or, on a
labelled class-per-folder set, a grid of examples captioned "Predicted (True)".

  python zero_shot_demo.py --checkpoint_path CKPT --img_path test_images/cat.jpg --show_prediction
  python zero_shot_demo.py --checkpoint_path CKPT --img_dir test_images --classes "cat,dog,car"
  python zero_shot_demo.py --checkpoint_path CKPT --labelled_dir data/PACS/sketch --examples 16

One of --img_path, --img_dir and --labelled_dir; --classes or --classnames (a file, one name a line) name the
classes (default: CIFAR-100's). Settings: flags, --config YAMLs (repeatable, layered) and key=value overrides, as
in every script.
"""
import sys

from evaluation.demo import labelled_examples, top_classes
from evaluation.settings import DemoSettings
from utils.cli import SettingsParser, run_command

PARSER = SettingsParser(__doc__, DemoSettings)
PARSER.add_field_flags()


def run_demo(config: DemoSettings) -> None:
    return (labelled_examples if config.labelled_dir is not None else top_classes)(config)


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: run_demo(PARSER.settings(argv)))


if __name__ == "__main__":
    sys.exit(main())
