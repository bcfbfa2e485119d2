"""Every benchmark script runs at its tiniest settings and reports its rows (a check of the scripts, not a
measurement); the reference columns that need benchmark-only packages are left out where those are missing."""
from benchmarks import run_all


def test_every_benchmark_runs_and_reports_a_table(tmp_path):
    report = run_all.main(["--quick", "--output", str(tmp_path / "results.md")])
    assert (tmp_path / "results.md").read_text() == report
    assert "dense matmul peak" in report
    for benchmark in ("train_step", "memory", "eval", "data", "tokenizer"):
        assert f"| {benchmark} |" in report, benchmark
    assert "ids identical: True" in report
    assert "same top-1 on 100.0% of images" in report
