"""eval_suite.py --tasks retrieval: each checkpoint x caption set cell equals retrieval_eval.py's recalls, their mean
is the table's headline; retrieval runs beside zero-shot in one command; a rerun loads no model; data of the wrong
kind for a task is one line."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

import eval_suite
import retrieval_eval
from caption_fixtures import caption_rows, write_csv, write_images, write_jsonl
from evaluation import inference_model, suite
from suite_fixtures import markdown_table, random_checkpoint

COUNT, CAPTIONS_PER_IMAGE = 6, 2
RUN = ["--precision", "fp32", "--num_workers", "0", "--batch_size", "4", "--device", "cpu"]
DIRECTIONS = ("image_to_text", "text_to_image")
KS = (1, 5, 10)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    return {label: random_checkpoint(folder / f"{label}.pt", seed) for seed, label in enumerate("ab", start=1)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A CSV and a JSONL caption set of real images (the JSONL: the first four images, paths relative to it) and a
    folder of two class folders."""
    root = tmp_path_factory.mktemp("data")
    write_images(root / "images", COUNT)
    pairs = write_csv(root / "pairs.csv", caption_rows(COUNT, CAPTIONS_PER_IMAGE, prefix="images/"))
    few = write_jsonl(root / "few.jsonl", caption_rows(4, CAPTIONS_PER_IMAGE, prefix="images/"))
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / "Pets" / name).mkdir(parents=True)
        for copy in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "Pets" / name / f"{copy}.jpg")
    return {"pairs": pairs, "few": few, "folder": root / "Pets"}


def retrieval_eval_recalls(checkpoint, annotation_file, output_dir):
    assert retrieval_eval.main(["--checkpoint_path", str(checkpoint), "--annotation_file", str(annotation_file),
                                "--cache_dir", str(output_dir / "cache"), "--output_dir", str(output_dir),
                                "--name", "set"] + RUN) == 0
    report = json.loads((output_dir / "set_retrieval.json").read_text())
    return [report[f"{direction}_R@{k}"] for direction in DIRECTIONS for k in KS]


def test_retrieval_cells_equal_retrieval_eval_beside_zero_shot_and_a_rerun_loads_no_model(
        checkpoints, data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "suite"
    argv = ["--checkpoints", f"A={checkpoints['a']}", f"B={checkpoints['b']}", "--tasks", "zeroshot", "retrieval",
            "--data_dir", str(data["folder"]), "--annotation_file", str(data["pairs"]), f"some={data['few']}",
            "--templates", "a photo of a {}.", "--output_dir", str(out), "--no-progress"] + RUN
    assert eval_suite.main(argv) == 0
    assert "6 cell(s) computed, 0 read from" in capsys.readouterr().out  # 2 x (1 zero-shot + 2 retrieval)

    text = (out / "results.md").read_text()
    headline = markdown_table(text, "captions: retrieval, mean recall of image → text and text → image R@1, R@5, R@10")
    assert headline["checkpoint"] == ["pairs", "some", "avg"]
    assert markdown_table(text, "captions: retrieval, every recall")["checkpoint"] == [
        "caption set", "image → text R@1", "image → text R@5", "image → text R@10", "text → image R@1",
        "text → image R@5", "text → image R@10", "images", "captions"]
    assert len(markdown_table(text, "Pets: zero-shot")["A"]) == 2  # zero-shot on the folder, in the same run
    rows = list(csv.DictReader((out / "results.csv").open()))
    for label in ("A", "B"):
        means = []
        for column, source in (("pairs", data["pairs"]), ("some", data["few"])):
            expected = retrieval_eval_recalls(checkpoints[label.lower()], source, tmp_path / label / column)
            cell = {row["metric"]: row for row in rows if row["checkpoint"] == label and row["domain"] == column}
            assert [float(cell[f"{direction}_R@{k}"]["value"]) for direction in DIRECTIONS for k in KS] == \
                pytest.approx(expected)
            assert cell["mean_recall"]["n_images"] == str(COUNT if column == "pairs" else 4)
            assert f"| {label} | {column} | " + " | ".join(f"{value:.2f}" for value in expected) \
                + f" | {cell['mean_recall']['n_images']} | {COUNT * 2 if column == 'pairs' else 8} |" in text
            means.append(sum(expected) / len(expected))
        assert headline[label] == [f"{value:.2f}" for value in means] + [f"{sum(means) / 2:.2f}"]

    computed, loaded = [], []
    compute_retrieval, load = suite.COMPUTE["retrieval"], inference_model.load_model
    monkeypatch.setitem(suite.COMPUTE, "retrieval", lambda cell, *rest: computed.append(cell) or compute_retrieval(
        cell, *rest))
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: loaded.append(path) or load(
        path, device=device))
    capsys.readouterr()
    assert eval_suite.main(argv) == 0
    assert "0 cell(s) computed, 6 read from" in capsys.readouterr().out
    assert computed == [] and loaded == []
    assert (out / "results.md").read_text() == text

    # another caption for an image: that caption set's cells no longer describe it, the other set's do
    with open(data["few"], "a") as file:
        file.write(json.dumps({"filepath": "images/00000.jpg", "caption": "one more"}) + "\n")
    assert eval_suite.main(argv) == 0
    assert [(cell.checkpoint.label, cell.domain) for cell in computed] == [("A", "some"), ("B", "some")]


@pytest.mark.parametrize("flags, message", [
    (["--data_dir", "{pairs}", "--tasks", "retrieval"], "data_dir {pairs} is a file, not a folder of labelled images"),
    (["--annotation_file", "{pairs}", "--tasks", "zeroshot"], "task zeroshot scores labelled image folders"),
    (["--data_dir", "{folder}", "--tasks", "retrieval"], "task retrieval scores caption sets"),
    (["--annotation_file", "{folder}", "--tasks", "retrieval"], "annotation_file {folder} holds class folders"),
    (["--data_dir", "{folder}", "--annotation_file", "{pairs}"], "annotation_file {pairs} is a caption set, which "
                                                                 "only retrieval scores"),
])
def test_data_of_the_wrong_kind_for_a_task_is_one_line(data, flags, message, capsys):
    assert eval_suite.main(["--checkpoints", "x.pt"] + [flag.format(**data) for flag in flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and message.format(**data) in err, err
