"""The reference tables in one command: checkpoints (rows) x data folders (their domains as columns) x tasks.

  python eval_suite.py --checkpoints coco=runs/coco/checkpoints/step_00016170.pt openai=ViT-B-32.pt \\
      --data_dir data/PACS data/OfficeHome --tasks zeroshot linear_probe --output_dir results/dg
  python eval_suite.py --checkpoints runs/a/checkpoints/step_00001000.pt --dataset_type cifar \\
      --data_dir data/CIFAR100 --output_dir results/cifar100
  python eval_suite.py --checkpoints a=CKPT_A b=CKPT_B --tasks retrieval --annotation_file data/mine/val.csv \\
      coco=data/coco/annotations/captions_val2017.json --img_dir data/mine data/coco/val2017

A folder whose sub-folders each hold class folders (PACS/ -> art_painting, cartoon, photo, sketch) gives one
column per sub-folder; any other folder is one column. Retrieval scores caption sets (--annotation_file, any
format retrieval_eval.py reads), one column each: the mean of its image -> text and text -> image recall@K.
Writes results.md, results.csv, results.png and, for the linear probe, per_class/ (zero-shot beside linear probe,
per class) into --output_dir. Cell results and features
are cached in --cache_dir: a rerun with one more checkpoint computes only its cells. Exit code 1 when a cell failed
(its error is in results.md, the other cells are complete). Settings: flags, --config YAMLs (repeatable, layered)
and key=value overrides, as in every script.
"""
import sys
from pathlib import Path

import torch

from evaluation.settings import EvalSuiteSettings
from evaluation.suite import print_cell, run_suite
from evaluation.suite_plan import (CAPTIONS_TABLE, HEADLINES, SuiteSettings, caption_sets, data_root, parse_checkpoint,
                                   plan_cells)
from evaluation.suite_report import write_suite_report
from utils.cli import SettingsParser, run_command

PARSER = SettingsParser(__doc__, EvalSuiteSettings)
PARSER.add_field_flags()


def parse_args(argv: list[str] | None) -> EvalSuiteSettings:
    return PARSER.load(PARSER.parse(argv))


def evaluate(config: EvalSuiteSettings) -> int:
    checkpoints = [parse_checkpoint(text) for text in config.checkpoints]
    roots = [data_root(folder, config.dataset_type) for folder in config.data_dir]
    captions = caption_sets(config.annotation_file, config.img_dir, config.format)
    cells = plan_cells(checkpoints, roots, config.tasks, captions)
    settings = SuiteSettings(torch.device(config.device), config.precision, config.batch_size, config.num_workers,
                             Path(config.cache_dir or Path(config.output_dir) / "cache"), config.templates,
                             config.test_fraction, config.split_seed, tuple(config.recall_k), config.image_key,
                             config.caption_key, config.split)
    tables = [f"{root.dataset} ({len(root.domains)} domain(s))" for root in roots]
    tables += [f"{CAPTIONS_TABLE} ({len(captions)} caption set(s))"] if captions else []
    print(f"{len(cells)} cells: {len(checkpoints)} checkpoint(s) x {', '.join(tables)} x {', '.join(config.tasks)}")
    results = run_suite(cells, settings, progress=config.progress, on_computed=print_cell)
    datasets = [root.dataset for root in roots] + ([CAPTIONS_TABLE] if captions else [])
    headlines = dict.fromkeys(HEADLINES[task].name for task in config.tasks)
    written = write_suite_report(results, config.output_dir, f"{', '.join(datasets)}: {', '.join(headlines)} (%)")
    cached = sum(result.from_cache for result in results)
    failed = [result for result in results if result.error is not None]
    print(f"{len(results) - cached} cell(s) computed, {cached} read from {settings.cache_dir}, {len(failed)} failed")
    print("wrote " + ", ".join(str(path) for path in written[:3])
          + (f" and {len(written) - 3} per-class file(s)" if len(written) > 3 else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = PARSER.parse(argv)
    return run_command(lambda: evaluate(PARSER.load(args)))


if __name__ == "__main__":
    sys.exit(main())
