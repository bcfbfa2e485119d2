"""Every benchmark script runs at its tiniest settings and reports its rows (a check of the scripts, not a
measurement); the reference columns that need benchmark-only packages are left out where those are missing."""
import torch

from benchmarks import run_all, train_step


def test_every_benchmark_runs_and_reports_a_table(tmp_path, capsys):
    threads = torch.get_num_threads()
    report = run_all.main(["--quick", "--interleave", "2", "--output", str(tmp_path / "results.md")])
    assert torch.get_num_threads() == threads  # the one-thread benchmarks give the count back
    assert (tmp_path / "results.md").read_text() == report
    assert "dense matmul peak" in report
    for benchmark in ("train_step", "memory", "eval", "data", "tokenizer"):
        assert f"| {benchmark} |" in report, benchmark
    assert "ids identical: True" in report
    assert "same top-1 on 100.0% of images" in report
    assert "median of 2 interleaved rounds" in report
    printed = capsys.readouterr().out
    assert "round 1/2" in printed and "round 2/2" in printed


def test_interleaved_rounds_take_turns_and_report_the_median_per_variant(monkeypatch):
    seconds_per_round = {"open_clip fp32": [2.0, 1.0, 0.25], "ours fp32": [0.1, 0.5, 1.0]}
    calls = []

    def measure(model_name, batch_size, variant, steps, warmup=True, device="cpu"):
        round_index = sum(name == variant.name for name in calls)
        calls.append(variant.name)
        return {"seconds": seconds_per_round.get(variant.name, [2.0] * 3)[round_index], "first_step_s": 0.0,
                "precision": "fp32" if variant.precision == "fp32" else "bf16", "max_rss_mb": 100.0 + len(calls)}

    monkeypatch.setattr(train_step, "measure_variant", measure)
    rows = train_step.run("tiny", batch_size=4, steps=1, in_process=True, peak_size=128, rounds=3)

    assert calls == ["open_clip fp32", "open_clip amp_bf16", "ours fp32", "ours bf16"] * 3
    fp32 = next(row for row in rows if "ours fp32 -> fp32" in row.case)
    assert fp32.ours == 4 / 0.5 and fp32.reference == 4 / 1.0  # batch 4 over the median round's seconds
    assert "median of 3 interleaved rounds" in fp32.note
    memory = next(row for row in rows if row.benchmark == "memory")
    assert memory.reference == 100.0 + 9  # open_clip fp32's largest max RSS: its third measurement, call 9
