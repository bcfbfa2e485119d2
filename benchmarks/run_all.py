"""Every benchmark in one run, on this machine, and one markdown table of the results (ratio = ours / reference).

    python -m benchmarks.run_all [--output benchmark_results.md] [--quick] [--interleave 3]

--quick runs each benchmark at its tiniest (a smoke test of the scripts, not a measurement). --interleave sets the
rounds of the training-step benchmarks (every variant once per round, the median over rounds): 3 by default, 1 with
--quick.
"""
import argparse
import datetime
from pathlib import Path

from benchmarks import data_throughput, eval_throughput, tokenizer_throughput, train_step
from benchmarks.common import machine_report, markdown_table

FULL = {  # the training steps run --interleave rounds: an RN50 one times one step per round after its warm-up
    "train_step": ["--model", "RN50", "--batch-size", "32", "--steps", "1", "--levers"],
    "train_step quickstart": ["--model", "quickstart", "--batch-size", "128", "--steps", "5", "--levers",
                              "--compile"],
    "eval": ["--model", "RN50", "--batch-size", "64", "--batches", "2", "--repeats", "3"],
    "data": ["--images", "128", "--repeats", "3"],
    "tokenizer": ["--captions", "20000", "--repeats", "3"],
}
QUICK = {
    "train_step": ["--model", "tiny", "--batch-size", "2", "--steps", "1", "--in-process"],
    "eval": ["--model", "tiny", "--batch-size", "4", "--batches", "1", "--repeats", "1"],
    "data": ["--images", "8", "--workers", "1", "--batch-size", "4", "--repeats", "1", "--quickstart-steps", "2",
             "--wait-model", "tiny", "--wait-steps", "1"],
    "tokenizer": ["--captions", "200", "--repeats", "1"],
}
MAINS = {"train_step": train_step.main, "eval": eval_throughput.main, "data": data_throughput.main,
         "tokenizer": tokenizer_throughput.main}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--quick", action="store_true", help="tiniest settings: checks that each script runs")
    parser.add_argument("--interleave", type=int, metavar="ROUNDS",
                        help="rounds of the training-step benchmarks (default 3; 1 with --quick)")
    args = parser.parse_args(argv)
    peak_size = ["--peak-size", "128" if args.quick else "4096"]
    rounds = args.interleave if args.interleave is not None else 1 if args.quick else 3
    rows = []
    for name, benchmark_args in (QUICK if args.quick else FULL).items():
        print(f"\n== {name}")
        script = name.split()[0]
        rounds_args = ["--interleave", str(rounds)] if script == "train_step" else []
        rows += MAINS[script](benchmark_args + rounds_args + peak_size)
    report = (f"{datetime.date.today().isoformat()}, {machine_report(int(peak_size[1]))}\n\n"
              f"{markdown_table(rows)}\n")
    print("\n" + report)
    if args.output:
        args.output.write_text(report)
    return report


if __name__ == "__main__":
    main()
