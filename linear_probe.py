"""Linear-probe accuracy of a CLIP checkpoint's frozen image features (the CLIP paper's protocol), and k-shot probes.

  python linear_probe.py --checkpoint_path CKPT --dataset_type cifar --dataset cifar10 --data_dir data/cifar
  python linear_probe.py --checkpoint_path CKPT --dataset_type imagenet --data_dir data/imagenet/train \\
      --test_dir data/imagenet/val
  python linear_probe.py --checkpoint_path CKPT --dataset_type folder --data_dir data/PACS/photo --k_shot 1 2 4 8 16

Training images come from --data_dir (CIFAR, wds: its train split); test images from --test_dir, the test split
(CIFAR, wds), or else a seeded stratified --test_fraction of the training folder. Features are cached in --cache_dir.
Settings: flags, --config YAMLs (repeatable, layered) and key=value overrides, as in every script.
"""
import sys
from pathlib import Path

from dataloader.eval.splits import plan_splits
from evaluation.feature_sets import read_set_features, split_off_test
from evaluation.inference_model import load_for_inference
from evaluation.linear_probe import run_probe
from evaluation.report import (nonfinite_warning, run_info, summary_lines, warn_unreadable, write_k_shot_results,
                               write_reports)
from evaluation.settings import LinearProbeSettings
from evaluation.zeroshot import features_top1
from utils.cli import SettingsParser, run_command

PARSER = SettingsParser(__doc__, LinearProbeSettings)
PARSER.add_field_flags()


def evaluate(config: LinearProbeSettings) -> None:
    device = config.torch_device
    model, preprocess, decision = load_for_inference(config.checkpoint_path, device, config.precision,
                                                     config.batch_size)
    precision = decision.precision
    print(f"image features in {decision.describe()}")
    def read(folder, split):
        eval_set, cached = read_set_features(
            model, preprocess, config.dataset_type, folder, split, checkpoint=config.checkpoint_path, device=device,
            precision=precision, batch_size=config.batch_size, num_workers=config.num_workers,
            cache_dir=config.cache_dir, dataset_name=config.dataset, class_names_file=config.classnames)
        print(f"{eval_set.name} {split or folder}: {len(cached.features.labels)} images, {cached.describe()}")
        warn_unreadable(cached.features.unreadable)
        return eval_set, cached.features

    plan = plan_splits(config.dataset_type, config.data_dir, config.test_dir)
    eval_set, train = read(config.data_dir, plan.train_split)
    train, test = split_off_test(plan, train, lambda folder, split: read(folder, split)[1], config.test_fraction,
                                 config.split_seed)
    run = run_probe(train, test, eval_set.class_names, config.validation_fraction, config.split_seed,
                    config.regularisation)
    if run.sweep is not None:
        print(f"regularisation {run.sweep.regularisation:.3g} chosen on the validation images "
              f"({100 * run.sweep.validation_accuracy:.2f}% there, {len(run.sweep.history)} values tried)")
    result, zero_shot = run.result, features_top1(model, eval_set, config.templates, test, device, precision)
    info = run_info(config.checkpoint_path, eval_set.name, precision, dataset_type=config.dataset_type,
                    data_dir=str(config.data_dir), test_dir=config.test_dir, num_classes=len(eval_set.class_names),
                    num_train_images=len(train.labels), regularisation=run.probe.regularisation,
                    regularisation_sweep=None if run.sweep is None else [
                        {"regularisation": value, "validation_accuracy": 100.0 * score}
                        for value, score in run.sweep.history],
                    fit_seconds=round(run.fit_seconds, 2), zeroshot_top1=zero_shot)
    output_dir, name = Path(config.output_dir), f"{eval_set.name}_linear_probe"
    if config.k_shot:
        info["k_shot"] = write_k_shot_results(train, test, eval_set.class_names, config.k_shot, config.k_shot_seeds,
                                              run.probe.regularisation, zero_shot, result.top1, output_dir / name,
                                              f"k-shot linear probe, {eval_set.name}: {config.checkpoint_path}")
    text_path, json_path = write_reports(result, output_dir, name, info)
    print("\n".join(summary_lines(result)))
    for line in nonfinite_warning(result.num_nonfinite, result.num_images, "test images"):
        print(line, file=sys.stderr)
    print(f"zero-shot top-1 on the same test images: {zero_shot:.2f} %")
    print(f"wrote {text_path}, {json_path}")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: evaluate(PARSER.settings(argv)))


if __name__ == "__main__":
    sys.exit(main())
