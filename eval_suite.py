"""The reference tables in one command: checkpoints (rows) x data folders (their domains as columns) x tasks.

  python eval_suite.py --checkpoints coco=runs/coco/checkpoint_final.pt openai=ViT-B-32.pt \\
      --data_dir data/PACS data/OfficeHome --tasks zeroshot linear_probe --output_dir results/dg
  python eval_suite.py --checkpoints runs/a/checkpoint_final.pt --dataset_type cifar --data_dir data/CIFAR100 \\
      --output_dir results/cifar100

A folder whose sub-folders each hold class folders (PACS/ -> art_painting, cartoon, photo, sketch) gives one
column per sub-folder; any other folder is one column. Writes results.md, results.csv, results.png and, for the
linear probe, per_class/ (zero-shot beside linear probe, per class) into --output_dir. Cell results and features
are cached in --cache_dir: a rerun with one more checkpoint computes only its cells. Exit code 1 when a cell failed
(its error is in results.md, the other cells are complete).
"""
import argparse
import sys
from pathlib import Path

import torch

from dataloader.eval.eval_datasets import READERS
from evaluation.suite import TASKS, SuiteSettings, data_root, parse_checkpoint, plan_cells, run_suite
from evaluation.suite_report import write_suite_report
from utils.cli import ScriptArgumentParser, add_inference_arguments, parse_with_config, run_command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ScriptArgumentParser(__doc__)
    parser.add_argument("--checkpoints", required=True, nargs="+", metavar="[NAME=]PATH",
                        help="anything load_model reads; NAME= labels the table's row (default: the file's name)")
    parser.add_argument("--data_dir", required=True, nargs="+", action="extend",
                        help="one or more data folders, each a table (a folder of domain folders: one column each)")
    parser.add_argument("--dataset_type", default="folder", choices=sorted(READERS))
    parser.add_argument("--tasks", nargs="+", default=["zeroshot"], choices=TASKS)
    parser.add_argument("--templates", default=None,
                        help="zero-shot templates: a set name, a file or one template (default: each dataset's set)")
    parser.add_argument("--test_fraction", type=float, default=0.2,
                        help="linear probe: share of each class held out for testing (and for validation) when the "
                             "folder has no test split")
    parser.add_argument("--split_seed", type=int, default=0)
    add_inference_arguments(parser, batch_size=128)
    parser.add_argument("--output_dir", default="eval_suite_output")
    parser.add_argument("--cache_dir", default=None, help="cell results and features (default: OUTPUT_DIR/cache)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="a progress bar over the cells")
    args = parse_with_config(parser, argv)
    if not 0 < args.test_fraction < 1:
        parser.error("--test_fraction must lie strictly between 0 and 1")
    return args


def evaluate(args: argparse.Namespace) -> int:
    checkpoints = [parse_checkpoint(text) for text in args.checkpoints]
    roots = [data_root(folder, args.dataset_type) for folder in args.data_dir]
    cells = plan_cells(checkpoints, roots, args.tasks)
    settings = SuiteSettings(torch.device(args.device), args.precision, args.batch_size, args.num_workers,
                             Path(args.cache_dir or Path(args.output_dir) / "cache"), args.templates,
                             args.test_fraction, args.split_seed)
    print(f"{len(cells)} cells: {len(checkpoints)} checkpoint(s) x "
          + ", ".join(f"{root.dataset} ({len(root.domains)} domain(s))" for root in roots)
          + f" x {', '.join(args.tasks)}")
    results = run_suite(cells, settings, progress=args.progress, on_computed=print_cell)
    written = write_suite_report(results, args.output_dir, f"{', '.join(r.dataset for r in roots)}: top-1 (%)")
    cached = sum(result.from_cache for result in results)
    failed = [result for result in results if result.error is not None]
    print(f"{len(results) - cached} cell(s) computed, {cached} read from {settings.cache_dir}, {len(failed)} failed")
    print("wrote " + ", ".join(str(path) for path in written[:3])
          + (f" and {len(written) - 3} per-class file(s)" if len(written) > 3 else ""))
    return 1 if failed else 0


def print_cell(result) -> None:
    cell = result.cell
    where = f"{cell.checkpoint.label} · {cell.dataset}/{cell.domain} · {cell.task}"
    if result.error is not None:
        print(f"failed: {where}: {result.error}", file=sys.stderr)
    else:
        print(f"{where}: top-1 {result.metrics['top1']:.2f} % ({result.n_images} images)", file=sys.stderr)
        if result.num_nonfinite:
            print(f"WARNING: {where}: {result.num_nonfinite} of {result.n_images} images had non-finite scores",
                  file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda arguments: evaluate(parse_args(arguments)), argv)


if __name__ == "__main__":
    sys.exit(main())
