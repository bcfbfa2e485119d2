"""A training run at `auto` on a CPU with native bf16 measures fp32 against bf16 on its own model and batch, says
so, records the choice, and ends exactly where the same run at the chosen precision ends."""
import json
import os
import subprocess
import sys

import yaml

from training_runs import REPO, final_weights, assert_bit_identical, train_command

# train.py on a CPU that reports AMX (so that the measurement runs on any machine: on one without native bf16,
# bf16 is merely slow and fp32 is chosen)
AS_IF_NATIVE_BF16 = ("import runpy, sys, torch; torch.cpu._is_amx_tile_supported = lambda: True; "
                     f"sys.argv[0] = {str(REPO / 'train.py')!r}; runpy.run_path(sys.argv[0], run_name='__main__')")


def run_with_native_bf16(command, cache_dir):
    command = [sys.executable, "-c", AS_IF_NATIVE_BF16, *command[2:]]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CLIP_TOOLKIT_CACHE": str(cache_dir)})


def test_calibrated_run_equals_the_run_at_the_chosen_precision(coco_dataset, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    calibrated = run_with_native_bf16(train_command(coco_dataset, tmp_path / "auto", "train.precision=auto"), cache)
    assert calibrated.returncode == 0, calibrated.stderr
    summary = json.loads((tmp_path / "auto" / "summary.json").read_text())
    chosen = summary["precision"]
    assert set(summary["precision_samples_per_s"]) == {"fp32", "bf16"}
    assert f"precision: {chosen} (CPU has native bf16 (AMX)" in calibrated.stdout and "measured:" in calibrated.stdout
    saved = (tmp_path / "auto" / "config.yaml").read_text()
    assert saved.startswith(f"# train.precision: {chosen}") and yaml.safe_load(saved)["train"]["precision"] == chosen

    explicit = run_with_native_bf16(train_command(coco_dataset, tmp_path / "explicit", f"train.precision={chosen}"),
                                    cache)
    assert explicit.returncode == 0, explicit.stderr
    assert_bit_identical(final_weights(tmp_path / "auto"), final_weights(tmp_path / "explicit"))

    again = run_with_native_bf16(train_command(coco_dataset, tmp_path / "again", "train.precision=auto"), cache)
    assert again.returncode == 0, again.stderr
    assert f"precision: {chosen}" in again.stdout and "remembered from an earlier measurement" in again.stdout
