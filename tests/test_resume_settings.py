"""Resume continues the same run or says why not: a setting that changes the trajectory (here the batch size and
the seed) is refused in one line listing each change, unless --resume_allow_changes; logging, checkpoint and
evaluation settings, and loader workers where the batches do not depend on them, change freely."""
import shutil

import pytest

from training_runs import BATCH, TOTAL_STEPS, run_in_process, train_command
from trainer.checkpointing import list_checkpoints
from trainer.resume_compatibility import ResumeRules, changes_that_alter_the_run
from utils.checkpoint import load_checkpoint


@pytest.fixture
def finished_run(uninterrupted_run, tmp_path):
    shutil.copytree(uninterrupted_run, tmp_path / "run")
    return tmp_path / "run"


def test_changed_batch_size_on_resume_is_refused_listing_each_change(coco_dataset, finished_run, capsys):
    before = [path.read_bytes() for path in list_checkpoints(finished_run)]
    command = train_command(coco_dataset, finished_run, "--resume", "auto", f"train.batch_size={BATCH // 2}",
                            "train.seed=1")
    assert run_in_process(command) == 2
    latest = list_checkpoints(finished_run)[-1]
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {latest} was written with other settings, and resuming with these would not continue the same run: "
        f"train.batch_size {BATCH} → {BATCH // 2}, train.seed 0 → 1; rerun with the original settings, or add "
        "--resume_allow_changes to continue with the new ones")
    assert [path.read_bytes() for path in list_checkpoints(finished_run)] == before


def test_allowed_changes_are_noted_and_the_run_continues(coco_dataset, finished_run, capsys):
    command = train_command(coco_dataset, finished_run, "--resume", "auto", "--resume_allow_changes",
                            "train.epochs=3")
    assert run_in_process(command) == 0
    assert "note: resuming with changed settings (--resume_allow_changes): train.epochs 2 → 3" in \
        capsys.readouterr().out
    assert load_checkpoint(list_checkpoints(finished_run)[-1])["step"] == TOTAL_STEPS * 3 // 2


def test_logging_checkpoint_and_loader_settings_change_silently(coco_dataset, finished_run, capsys):
    command = train_command(coco_dataset, finished_run, "--resume", "auto", "train.log_every_steps=5",
                            "checkpoint.every_steps=3", "checkpoint.keep_last=4", "data.num_workers=1")
    assert run_in_process(command) == 0
    output = capsys.readouterr().out
    assert f"at step {TOTAL_STEPS}" in output and "note:" not in output


def test_evaluation_settings_are_free_to_change():
    saved = {"eval": {"every_steps": None, "tasks": []}, "train": {"seed": 0}}
    current = {"eval": {"every_steps": 5, "tasks": [{"kind": "zeroshot", "data_dir": "data/eval"}]}, "train": {"seed": 0}}
    assert changes_that_alter_the_run(saved, 1, rules(current)) == []


def rules(config, processes=1, workers_shape_order=False):
    return ResumeRules(config, processes, workers_shape_order, allow_changes=False)


def test_processes_count_as_a_change():
    assert changes_that_alter_the_run({"train": {"seed": 0}}, 2, rules({"train": {"seed": 0}}, processes=1)) == \
        ["processes 2 → 1"]


def test_loader_workers_matter_only_where_they_shape_the_batches():
    saved, current = {"data": {"num_workers": 4}}, {"data": {"num_workers": 0}}
    assert changes_that_alter_the_run(saved, 1, rules(current, workers_shape_order=False)) == []
    assert changes_that_alter_the_run(saved, 1, rules(current, workers_shape_order=True)) == \
        ["data.num_workers 4 → 0"]


def test_a_key_only_one_side_has_is_a_change():
    saved = {"model": {"name": "quickstart", "overrides": {}}}
    assert changes_that_alter_the_run(saved, 1, rules({"model": {"overrides": {}}})) == \
        ["model.name quickstart → (absent)"]


def test_a_key_added_since_reads_as_the_behaviour_before_it():
    saved = {"loss": {"kind": "clip"}}
    assert changes_that_alter_the_run(saved, 1, rules({"loss": {"kind": "clip", "duplicate_captions": "negative"}})) \
        == []
    assert changes_that_alter_the_run(saved, 1, rules({"loss": {"kind": "clip", "duplicate_captions": "positive"}})) \
        == ["loss.duplicate_captions negative → positive"]
