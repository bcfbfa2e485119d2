"""Every training format through `python train.py --train_data`: CSV (commas), TSV (tabs), JSONL, a COCO JSON and
three webdataset shards train to the end; CSV and shard runs killed after their first checkpoint resume to
bit-identical weights; a malformed table or shard source is one error line naming the file and the line, columns
or sample, exit code 2."""
import json
import tarfile

import pytest

from caption_fixtures import caption_rows, write_coco, write_csv, write_images, write_jsonl, write_shards
from trainer.checkpointing import list_checkpoints
from trainer.run_log import read_log
from training_runs import (IMAGES, TOTAL_STEPS, assert_bit_identical, final_weights, run, start,
                           train_data_command, wait_for)
from utils.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """One folder of images listed by a table in each format, all with relative paths, and the same images in
    three shards (with their sizes.json)."""
    root = tmp_path_factory.mktemp("tables")
    write_images(root / "images", IMAGES)
    rows = caption_rows(IMAGES, 2, prefix="images/")
    write_shards(root / "shards", IMAGES, per_shard=IMAGES // 3)
    return {
        "csv": write_csv(root / "train.csv", rows),
        "tsv": write_csv(root / "train.tsv", rows, delimiter="\t"),
        "jsonl": write_jsonl(root / "train.jsonl", rows),
        "coco": write_coco(root / "captions.json", IMAGES, 2),
        "shards": root / "shards" / "{00000..00002}.tar",
    }


# Shards are read by two workers, each with its own shards and shuffle buffer.
RESUMED_FORMATS = {"csv": (), "shards": ("data.num_workers=2", "data.shuffle_buffer=10")}


@pytest.fixture(scope="module")
def uninterrupted_runs(tables, tmp_path_factory):
    run_dirs = {}
    for name, extra in RESUMED_FORMATS.items():
        run_dirs[name] = tmp_path_factory.mktemp(f"{name}_run")
        result = run(train_data_command(tables[name], run_dirs[name], *extra))
        assert result.returncode == 0, result.stderr
    return run_dirs


def finished_steps(run_dir):
    return json.loads((run_dir / "summary.json").read_text())["steps"]


def test_csv_and_shards_train_to_the_end(uninterrupted_runs):
    assert [finished_steps(run_dir) for run_dir in uninterrupted_runs.values()] == [TOTAL_STEPS] * 2


@pytest.mark.slow  # 20 s: the same path as CSV's run once the table is read, and the readers have their own tests
@pytest.mark.parametrize("name", ["tsv", "jsonl", "coco"])
def test_other_formats_train_to_the_end(tables, tmp_path, name):
    extra = ["--train_img_dir", str(tables["coco"].parent / "images")] if name == "coco" else []
    result = run(train_data_command(tables[name], tmp_path, *extra, "train.epochs=1"))
    assert result.returncode == 0, result.stderr
    assert finished_steps(tmp_path) == TOTAL_STEPS // 2


@pytest.mark.parametrize("name", list(RESUMED_FORMATS))
def test_resume_after_sigkill_is_bit_identical(tables, uninterrupted_runs, tmp_path, name):
    command = train_data_command(tables[name], tmp_path, *RESUMED_FORMATS[name])
    process = start(command)
    wait_for(lambda: list_checkpoints(tmp_path), process)
    process.kill()
    process.wait()
    assert 0 < load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] < TOTAL_STEPS
    resumed = run(command + ["--resume", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    assert_bit_identical(final_weights(tmp_path), final_weights(uninterrupted_runs[name]))
    assert [record["step"] for record in read_log(tmp_path)] == list(range(1, TOTAL_STEPS + 1))


def test_malformed_tables_are_one_line_errors_and_exit_code_2(tables, tmp_path, capsys):
    import train
    no_column = write_csv(tmp_path / "no_column.csv", [("a.jpg", "x")], header=("image", "text"))
    bad_row = tmp_path / "bad_row.tsv"
    bad_row.write_text("filepath\tcaption\na.jpg\tfine\nb.jpg\n")
    bad_line = tmp_path / "bad_line.jsonl"
    bad_line.write_text('{"filepath": "a.jpg", "caption": "x"}\n{"filepath": "b.jpg"}\n')
    expected = {
        no_column: f"error: {no_column}: no 'filepath' column (columns found: image, text); expected 'filepath' "
                   "and 'caption' or 'title' (set data.image_key / data.caption_key) in the header row",
        bad_row: f"error: {bad_row}, line 3: 1 fields, the header has 2 (separated by '\\t'; quote fields that "
                 "contain it)",
        bad_line: f"error: {bad_line}, line 2: keys found: filepath; expected 'filepath' and 'caption' or 'title' "
                  "(set data.image_key / data.caption_key)",
        tmp_path / "captions.txt": f"error: {tmp_path / 'captions.txt'}: cannot tell the format from the name",
    }
    for path, message in expected.items():
        assert train.main(train_data_command(path, tmp_path / "run")[2:]) == 2
        stderr = capsys.readouterr().err
        assert stderr.startswith(message) and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "run").exists()


def test_malformed_shards_are_one_line_errors_and_exit_code_2(tables, tmp_path, capsys):
    import train
    first_shard = tables["shards"].parent / "00000.tar"
    (tmp_path / "empty.tar").write_bytes(b"")
    with tarfile.open(first_shard) as source, tarfile.open(tmp_path / "captionless.tar", "w") as target:
        for member in source.getmembers():
            if member.name != "000000.txt":
                target.addfile(member, source.extractfile(member))
    (tmp_path / "no_shards").mkdir()
    expected = {
        tmp_path / "empty.tar": f"error: {tmp_path / 'empty.tar'}: empty shard (0 bytes)",
        tmp_path / "captionless.tar": f"error: {tmp_path / 'captionless.tar'}: sample '000000' has no caption",
        tmp_path / "no_shards": f"error: {tmp_path / 'no_shards'}: no .tar shards in this folder",
    }
    for path, message in expected.items():
        assert train.main(train_data_command(path, tmp_path / "run", "data.num_samples=16")[2:]) == 2
        stderr = capsys.readouterr().err
        assert stderr.startswith(message) and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "run").exists()
