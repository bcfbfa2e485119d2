"""eval_suite.py: the table of checkpoints x domains equals per-cell zeroshot_eval.py numbers, with their average;
a rerun computes only new cells; a failing cell is reported in its place; the CSV and per-class files."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

import eval_suite
import zeroshot_eval
from evaluation import inference_model, suite
from suite_fixtures import markdown_table, random_checkpoint
from zeroshot_fixtures import write_cifar

DOMAINS = ["art_painting", "cartoon", "photo", "sketch"]
CLASSES = ["dog", "guitar", "house"]
COMMON = ["--precision", "fp32", "--num_workers", "0", "--batch_size", "16", "--templates", "a photo of a {}."]


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """A PACS-like root: 4 domains x 3 classes x 3 real JPEG files, each a random colour with a random stripe (so
    that random models disagree, and the table's cells differ)."""
    root = tmp_path_factory.mktemp("data") / "PACS"
    rng = np.random.default_rng(0)
    for domain in DOMAINS:
        for name in CLASSES:
            (root / domain / name).mkdir(parents=True)
            for copy in range(3):
                pixels = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (40, 36 + copy, 3)).copy()
                pixels[rng.integers(0, 30):, :rng.integers(5, 30)] = rng.integers(0, 256, 3, dtype=np.uint8)
                Image.fromarray(pixels).save(root / domain / name / f"{copy}.jpg")
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    return {label: random_checkpoint(folder / f"{label}.pt", seed) for seed, label in enumerate("abc", start=1)}


def test_suite_table_equals_per_cell_zeroshot_eval_and_a_rerun_computes_only_new_cells(
        pacs, checkpoints, tmp_path, monkeypatch, capsys):
    out = tmp_path / "suite"
    argv = ["--data_dir", str(pacs), "--tasks", "zeroshot", "--output_dir", str(out), "--no-progress"] + COMMON
    assert eval_suite.main(["--checkpoints", f"A={checkpoints['a']}", f"B={checkpoints['b']}"] + argv) == 0

    table = markdown_table((out / "results.md").read_text(), "PACS: zero-shot")
    assert table["checkpoint"] == DOMAINS + ["avg"]
    for label, checkpoint in (("A", checkpoints["a"]), ("B", checkpoints["b"])):
        expected = []
        for domain in DOMAINS:
            assert zeroshot_eval.main(["--checkpoint_path", str(checkpoint), "--dataset_type", "folder",
                                       "--data_dir", str(pacs / domain), "--output_dir", str(tmp_path / label)]
                                      + COMMON) == 0
            expected.append(json.loads((tmp_path / label / f"{domain}.json").read_text())["top1"])
        assert table[label] == [f"{value:.2f}" for value in expected] + [f"{sum(expected) / 4:.2f}"]

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert list(rows[0]) == ["checkpoint", "dataset", "domain", "task", "metric", "value", "n_images"]
    top1 = [row for row in rows if row["metric"] == "top1"]
    assert len(top1) == 8 and all(row["n_images"] == "9" and row["dataset"] == "PACS" for row in top1)
    assert {row["domain"] for row in top1} == set(DOMAINS)
    with Image.open(out / "results.png") as heatmap:
        assert heatmap.width > 300 and heatmap.height > 150

    computed, loaded = [], []
    compute_zero_shot, load = suite.COMPUTE["zeroshot"], inference_model.load_model
    monkeypatch.setitem(suite.COMPUTE, "zeroshot", lambda cell, *rest: computed.append(cell) or compute_zero_shot(
        cell, *rest))
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: loaded.append(path) or load(path, device=device))
    capsys.readouterr()
    assert eval_suite.main(["--checkpoints", f"A={checkpoints['a']}", f"B={checkpoints['b']}",
                            f"C={checkpoints['c']}"] + argv) == 0
    assert "4 cell(s) computed, 8 read from" in capsys.readouterr().out
    assert [(cell.checkpoint.label, cell.domain) for cell in computed] == [("C", domain) for domain in DOMAINS]
    assert loaded == [str(checkpoints["c"])]  # the cached rows need no model
    rerun = markdown_table((out / "results.md").read_text(), "PACS: zero-shot")
    assert rerun["A"] == table["A"] and rerun["B"] == table["B"] and len(rerun["C"]) == 5


def test_a_failing_cell_is_reported_in_its_place_and_the_rest_run(pacs, checkpoints, tmp_path, capsys):
    broken = tmp_path / "Broken"
    for domain in ("fine", "corrupt"):
        for name in CLASSES:
            (broken / domain / name).mkdir(parents=True)
            (broken / domain / name / "0.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    for name in CLASSES:
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(broken / "fine" / name / "1.jpg")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "suite"
    argv = ["--checkpoints", str(checkpoints["a"]), f"bad={tmp_path / 'bad.pt'}", "--data_dir", str(broken),
            str(tmp_path / "Missing"), "--output_dir", str(out), "--no-progress"] + COMMON
    assert eval_suite.main(argv) == 1
    text = (out / "results.md").read_text()
    broken_table = markdown_table(text, "Broken: zero-shot")
    assert broken_table["checkpoint"] == ["corrupt", "fine", "avg"]
    assert broken_table["a"][0] == "failed" and broken_table["a"][1].replace(".", "").isdigit()
    assert broken_table["a"][2] == ""  # no average over a failed domain
    assert broken_table["bad"] == ["failed", "failed", ""]
    assert markdown_table(text, "Missing: zero-shot")["a"] == ["failed", ""]
    assert "none of the 3 images" in text and "Missing does not exist" in text and "bad.pt" in text
    assert "3 unreadable image(s) skipped" in text  # the fine domain's corrupt files
    errors = [row for row in csv.DictReader((out / "results.csv").open()) if row["metric"] == "error"]
    assert [(row["checkpoint"], row["dataset"], row["domain"]) for row in errors] == [
        ("a", "Broken", "corrupt"), ("a", "Missing", "Missing"), ("bad", "Broken", "corrupt"),
        ("bad", "Broken", "fine"), ("bad", "Missing", "Missing")]
    assert "5 failed" in capsys.readouterr().out

    # a new image in a domain: its cached cell no longer describes the folder, and is computed again
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(broken / "fine" / "dog" / "2.jpg")
    assert eval_suite.main(argv) == 1
    assert "6 cell(s) computed, 0 read from" in capsys.readouterr().out  # 5 failures (never cached) + fine
    fine = [row for row in csv.DictReader((out / "results.csv").open())
            if row["checkpoint"] == "a" and row["domain"] == "fine" and row["metric"] == "top1"]
    assert fine[0]["n_images"] == "4"


def test_linear_probe_beside_zero_shot_per_class(pacs, checkpoints, tmp_path):
    out = tmp_path / "suite"
    assert eval_suite.main(["--checkpoints", f"A={checkpoints['a']}", "--data_dir", str(pacs / "photo"),
                            "--tasks", "zeroshot", "linear_probe", "--output_dir", str(out), "--no-progress"]
                           + COMMON) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    probe = {row["metric"]: row for row in rows if row["task"] == "linear_probe"}
    assert probe["top1"]["n_images"] == "3"  # one held-out image per class
    assert 0 <= float(probe["top1"]["value"]) <= 100 and float(probe["regularisation"]["value"]) > 0
    per_class = (out / "per_class" / "A_photo_photo.md").read_text().splitlines()
    assert per_class[4:6] == ["| class | zero-shot | linear probe |", "|---|---:|---:|"]
    assert [line.split("|")[1].strip() for line in per_class[6:]] == CLASSES + ["**overall**"]
    overall = per_class[-1].split("|")
    assert float(overall[3]) == pytest.approx(float(probe["top1"]["value"]), abs=0.006)
    with Image.open(out / "per_class" / "A_photo_photo.png") as figure:
        assert figure.height > 150


def test_bad_input_is_one_line(tmp_path, capsys):
    assert eval_suite.main(["--checkpoints", "x=a.pt", "x=b.pt", "--data_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "share a row name" in err


def test_cifar_cells_score_its_test_split_and_probe_on_its_train_split(checkpoints, tmp_path):
    names = [f"class_{index}" for index in range(10)]
    rng = np.random.default_rng(1)
    for split, per_class in (("train", 3), ("test", 1)):
        labels = [label for label in range(10) for _ in range(per_class)]
        write_cifar(tmp_path / "data" / "cifar10", "cifar10", rng.integers(0, 256, (len(labels), 32, 32, 3),
                                                                           dtype=np.uint8), labels, names, split)
    out = tmp_path / "suite"
    assert eval_suite.main(["--checkpoints", f"A={checkpoints['a']}", "--dataset_type", "cifar", "--data_dir",
                            str(tmp_path / "data" / "cifar10"), "--tasks", "zeroshot", "linear_probe",
                            "--output_dir", str(out), "--no-progress"] + COMMON) == 0
    top1 = {row["task"]: row for row in csv.DictReader((out / "results.csv").open()) if row["metric"] == "top1"}
    assert top1["zeroshot"]["n_images"] == top1["linear_probe"]["n_images"] == "10"  # the test batch
    assert top1["zeroshot"]["domain"] == "cifar10"
