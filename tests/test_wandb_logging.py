"""Weights & Biases (logging.wandb), offline: the run's wandb records, read back from the files wandb writes in the
run folder, hold exactly the scalars of log.jsonl and the resolved config; a run stopped by SIGTERM and resumed with
--resume auto continues the same wandb run, and wandb settings never block a resume; without the wandb package, or
with a bad setting, one line."""
import json
import signal
import struct
import sys

import pytest
import yaml

from training_runs import TOTAL_STEPS, run_in_process, shapes_task, sigterm_during_step, train_command
from trainer.resume_compatibility import ResumeRules, changes_that_alter_the_run
from trainer.run_log import read_log
from trainer.wandb_log import RUN_ID_FILE

WANDB = ("logging.wandb.project=clip-tests", "logging.wandb.mode=offline")
STOP_STEP = 5  # the first session ends here (SIGTERM), the resumed one goes on to TOTAL_STEPS


@pytest.fixture(scope="module")
def wandb_offline(tmp_path_factory):
    """wandb without network, its own folders in the test's, silent, leaving the test's output alone; its service
    process stopped at the end."""
    wandb = pytest.importorskip("wandb")  # a test requirement, not a runtime one
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
                            "WANDB_DIR": home, "WANDB_CONFIG_DIR": home / "config", "WANDB_CACHE_DIR": home / "cache",
                            "WANDB_DATA_DIR": home / "data", "WANDB_ARTIFACT_DIR": home / "artifacts"}.items():
            patch.setenv(name, str(value))
        yield wandb
        wandb.teardown()


@pytest.fixture(scope="module")
def resumed_run(coco_dataset, shapes_task, wandb_offline, tmp_path_factory):
    """A run with evaluations at the start and the end, stopped by SIGTERM after STOP_STEP, then resumed."""
    run_dir = tmp_path_factory.mktemp("wandb-run")
    command = train_command(coco_dataset, run_dir, shapes_task, "eval.at_start=true", *WANDB, "--resume", "auto")
    with pytest.MonkeyPatch.context() as patch:
        sigterm_during_step(patch, STOP_STEP)
        assert run_in_process(command) == 128 + signal.SIGTERM
    first_id = (run_dir / RUN_ID_FILE).read_text().strip()
    assert run_in_process(command) == 0
    wandb_offline.teardown()  # wandb's service process has the run files written out when it stops
    return run_dir, first_id


def wandb_records(path):
    """The protobuf records of a .wandb file: LevelDB's log format (32 KiB blocks of chunks, each with a 7-byte
    header: checksum, length, type) after wandb's own 7-byte header."""
    from wandb.proto import wandb_internal_pb2
    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    offset, pending = header, b""
    while offset + header <= len(data):
        if block - offset % block < header:  # a block's tail too short for a header is padding
            offset += block - offset % block
            continue
        _, length, chunk_type = struct.unpack("<IHB", data[offset:offset + header])
        pending += data[offset + header:offset + header + length]
        offset += header + length
        if chunk_type in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def sessions(run_dir) -> list[list]:
    """Each wandb session's records, in the order they ran (offline-run-<time>-<id> folders sort by time)."""
    return [list(wandb_records(path)) for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))]


def of_type(records, record_type: str) -> list:
    return [getattr(record, record_type) for record in records if record.WhichOneof("record_type") == record_type]


def as_dict(items) -> dict:
    """A record's items ({key or nested_key: value_json}) as a dict."""
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def history(records) -> list[dict]:
    """The logged rows without wandb's own keys (_step, _runtime, _timestamp)."""
    rows = [as_dict(row.item) for row in of_type(records, "history")]
    return [{key: value for key, value in row.items() if not key.startswith("_")} for row in rows]


def as_scalars(record: dict) -> dict:
    """A log.jsonl record as TensorBoard files it: train/<key> for a training record, eval/<key> for an evaluation."""
    group = "train" if "loss" in record else "eval"
    return {"step": record["step"], **{f"{group}/{key}": value for key, value in record.items() if key != "step"}}


def test_wandb_rows_are_the_log_records(resumed_run):
    run_dir, _ = resumed_run
    first, resumed = sessions(run_dir)
    records = read_log(run_dir)
    assert [as_scalars(record) for record in records] == history(first) + history(resumed)
    assert {record["step"] for record in records if "shapes/top1" in record} == {0, TOTAL_STEPS}
    assert history(first)[-1]["step"] == STOP_STEP


def test_the_wandb_config_is_the_resolved_config(resumed_run):
    run_dir, _ = resumed_run
    (run,) = of_type(sessions(run_dir)[0], "run")
    config = as_dict(run.config.update)
    config.pop("_wandb", None)
    assert config == yaml.safe_load((run_dir / "config.yaml").read_text())
    assert run.project == "clip-tests"


def test_a_resumed_run_continues_the_same_wandb_run(resumed_run):
    run_dir, first_id = resumed_run
    assert (run_dir / RUN_ID_FILE).read_text().strip() == first_id
    runs = [of_type(records, "run")[0] for records in sessions(run_dir)]
    assert [run.run_id for run in runs] == [first_id, first_id]
    assert [of_type(records, "exit")[0].exit_code for records in sessions(run_dir)] == [128 + signal.SIGTERM, 0]


def test_a_run_in_a_new_folder_is_a_new_wandb_run(coco_dataset, resumed_run, tmp_path):
    # a fresh run, through to its first checkpoint: a wandb run of its own
    command = train_command(coco_dataset, tmp_path, *WANDB, "train.epochs=1")
    with pytest.MonkeyPatch.context() as patch:
        sigterm_during_step(patch, 1)
        assert run_in_process(command) == 128 + signal.SIGTERM
    assert (tmp_path / RUN_ID_FILE).read_text().strip() != resumed_run[1]


def test_a_wandb_run_that_cannot_start_is_one_line(coco_dataset, wandb_offline, monkeypatch, capsys, tmp_path):
    def init(**settings):
        raise wandb_offline.errors.CommError("cannot reach api.wandb.ai\nTraceback ...")
    monkeypatch.setattr(wandb_offline, "init", init)
    assert run_in_process(train_command(coco_dataset, tmp_path, *WANDB)) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: wandb could not start the run (logging.wandb): cannot reach api.wandb.ai; "
        "logging.wandb.mode=offline logs without a connection")


def test_wandb_settings_do_not_block_resume():
    saved = {"train": {"seed": 0}}  # a checkpoint written before logging.wandb existed
    current = {"train": {"seed": 0}, "logging": {"wandb": {"project": "clip-tests", "entity": None, "mode": "offline"}}}
    assert changes_that_alter_the_run(saved, 1, ResumeRules(current, 1, False, allow_changes=False)) == []


def test_without_the_wandb_package_one_line_says_how_to_install_it(coco_dataset, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    assert run_in_process(train_command(coco_dataset, tmp_path, *WANDB)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "logging.wandb.project is 'clip-tests'" in error and "pip install wandb" in error
    assert not (tmp_path / "log.jsonl").exists()


@pytest.mark.parametrize("setting, message", [
    ("logging.wandb.mode=online_later", "'logging.wandb.mode' must be one of online | offline | disabled"),
    ("logging.wandb.project=' '", "logging.wandb.project must name a project"),
    ("logging.wandb.entity=team", "logging.wandb.entity is 'team' but logging.wandb.project is null"),
    ("logging.wandb.projct=x", "did you mean 'logging.wandb.project'?"),
])
def test_a_bad_wandb_setting_is_one_line(coco_dataset, capsys, tmp_path, setting, message):
    assert run_in_process(train_command(coco_dataset, tmp_path, setting)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
