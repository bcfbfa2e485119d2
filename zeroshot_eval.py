"""Zero-shot classification accuracy of a CLIP checkpoint on CIFAR, the ImageNet family, any class-per-folder set
or a CLIP_benchmark webdataset set.

  python zeroshot_eval.py --checkpoint_path CKPT --dataset_type cifar --dataset cifar10 --data_dir data/cifar
  python zeroshot_eval.py --checkpoint_path CKPT --dataset_type imagenet --data_dir data/imagenet-r
  python zeroshot_eval.py --checkpoint_path CKPT --dataset_type folder --data_dir data/PACS/sketch
  python zeroshot_eval.py --checkpoint_path CKPT --dataset_type wds --data_dir data/wds_cifar10

Settings: flags, --config YAMLs (repeatable, layered) and key=value overrides, as in every script.
"""
import sys
import time

from dataloader.eval.eval_datasets import read_eval_set
from evaluation.inference_model import load_for_inference
from evaluation.report import (nonfinite_warning, run_info, safe_file_name, summary_lines, warn_unreadable,
                               write_template_comparison, write_zero_shot_report)
from evaluation.settings import ZeroShotEvalSettings
from evaluation.template_sets import load_templates
from evaluation.zeroshot import zero_shot_scores
from utils.cli import SettingsParser, run_command
from utils.errors import UserError

PARSER = SettingsParser(__doc__, ZeroShotEvalSettings)
PARSER.add_field_flags()


def evaluate(config: ZeroShotEvalSettings) -> None:
    model, preprocess, decision = load_for_inference(config.checkpoint_path, config.torch_device,
                                                     config.precision, config.batch_size, fold_batch_norms=True,
                                                     channels_last=config.channels_last)
    eval_set = read_eval_set(config.dataset_type, config.data_dir, preprocess, dataset_name=config.dataset,
                             min_side=model.config.image_size, class_names_file=config.classnames)
    template_sets = [load_templates(spec) for spec in config.templates or [eval_set.default_templates]]
    names = [name for name, _ in template_sets]
    if len(set(names)) < len(names):
        raise UserError(f"--templates names a template set twice: {', '.join(names)}")
    print(f"{eval_set.name}: {len(eval_set.dataset)} images, {len(eval_set.class_names)} classes, "
          + ", ".join(f"{len(templates)} template(s) '{name}'" for name, templates in template_sets)
          + f", {decision.describe()}")

    start = time.perf_counter()
    results, unreadable = zero_shot_scores(model, eval_set, [templates for _, templates in template_sets],
                                           config.torch_device, decision.precision, batch_size=config.batch_size,
                                           num_workers=config.num_workers, channels_last=config.channels_last)
    seconds = time.perf_counter() - start
    warn_unreadable(unreadable)
    for (template_name, templates), result in zip(template_sets, results):
        info = run_info(config.checkpoint_path, eval_set.name, decision.precision, dataset_type=config.dataset_type,
                        data_dir=str(config.data_dir), templates={"name": template_name, "count": len(templates)},
                        num_classes=len(eval_set.class_names), num_unreadable_images=len(unreadable),
                        images_per_second=round(result.num_images / seconds, 1))
        # One template set keeps the plain name; several get one report each, named after their set.
        report_name = eval_set.name if len(template_sets) == 1 else \
            f"{eval_set.name}_{safe_file_name(template_name.removesuffix('.txt'))}"
        paths = write_zero_shot_report(result, config.output_dir, report_name, info,
                                       f"Zero-shot {eval_set.name}, templates '{template_name}': "
                                       f"{config.checkpoint_path}")
        if len(template_sets) > 1:
            print(f"templates '{template_name}':")
        print("\n".join(summary_lines(result)))
        for line in nonfinite_warning(result.num_nonfinite, result.num_images, "images"):
            print(line, file=sys.stderr)
        print("wrote " + ", ".join(map(str, paths)))
    if len(template_sets) > 1:
        print("\n".join(write_template_comparison(names, results, config.output_dir, eval_set.name)))
    print(f"{results[0].num_images} images in {seconds:.1f} s ({results[0].num_images / seconds:.1f} images/s)")


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: evaluate(PARSER.settings(argv)))


if __name__ == "__main__":
    sys.exit(main())
