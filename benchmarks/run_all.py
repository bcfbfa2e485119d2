"""Every benchmark in one run, on this machine, and one markdown table of the results (ratio = ours / reference).

    python -m benchmarks.run_all [--output benchmark_results.md] [--quick]

--quick runs each benchmark at its tiniest (a smoke test of the scripts, not a measurement).
"""
import argparse
import datetime
from pathlib import Path

from benchmarks import data_throughput, eval_throughput, tokenizer_throughput, train_step
from benchmarks.common import machine_report, markdown_table

FULL = {
    "train_step": ["--model", "RN50", "--batch-size", "32", "--steps", "3", "--levers"],
    "train_step quickstart": ["--model", "quickstart", "--batch-size", "128", "--steps", "5", "--levers",
                              "--compile"],
    "eval": ["--model", "RN50", "--batch-size", "64", "--batches", "2", "--repeats", "3"],
    "data": ["--images", "128", "--repeats", "3"],
    "tokenizer": ["--captions", "20000", "--repeats", "3"],
}
QUICK = {
    "train_step": ["--model", "tiny", "--batch-size", "2", "--steps", "1", "--in-process"],
    "eval": ["--model", "tiny", "--batch-size", "4", "--batches", "1", "--repeats", "1"],
    "data": ["--images", "8", "--workers", "1", "--batch-size", "4", "--repeats", "1", "--quickstart-steps", "2"],
    "tokenizer": ["--captions", "200", "--repeats", "1"],
}
MAINS = {"train_step": train_step.main, "eval": eval_throughput.main, "data": data_throughput.main,
         "tokenizer": tokenizer_throughput.main}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--quick", action="store_true", help="tiniest settings: checks that each script runs")
    args = parser.parse_args(argv)
    peak_size = ["--peak-size", "128" if args.quick else "4096"]
    rows = []
    for name, benchmark_args in (QUICK if args.quick else FULL).items():
        print(f"\n== {name}")
        rows += MAINS[name.split()[0]](benchmark_args + peak_size)
    report = (f"{datetime.date.today().isoformat()}, {machine_report(int(peak_size[1]))}\n\n"
              f"{markdown_table(rows)}\n")
    print("\n" + report)
    if args.output:
        args.output.write_text(report)
    return report


if __name__ == "__main__":
    main()
