"""Evaluation on your own captions: retrieval_eval.py and the `eval:` retrieval and loss tasks read CSV/TSV, JSONL
and webdataset shards through training's readers, and score them exactly as the same pairs written as COCO JSON;
--pair_scores writes each pair's CLIP score."""
import csv
import json

import pytest
import torch
import webdataset as wds
from PIL import Image

import retrieval_eval
from caption_fixtures import caption_rows, write_coco, write_csv, write_images, write_jsonl
from dataloader.eval.caption_sets import read_caption_set
from evaluation import inference_model
from evaluation.eval_config import LossTask, RetrievalTask
from evaluation.during_training import read_captioned
from evaluation.retrieval import caption_image_features, caption_pairs, feature_retrieval_ranks, text_features
from evaluation.validation_loss import validation_loss
from model import load_model

COUNT, CAPTIONS_PER_IMAGE = 6, 2


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("tiny", device="cpu")


@pytest.fixture
def captions(tmp_path):
    """The same pairs as COCO JSON (with its image folder), CSV, TSV, JSONL (paths relative to the table) and
    shards holding the image files' own bytes with all of each image's captions."""
    images = tmp_path / "images"
    names = write_images(images, COUNT)
    rows = caption_rows(COUNT, CAPTIONS_PER_IMAGE, prefix="images/")
    (tmp_path / "shards").mkdir()
    with wds.ShardWriter(str(tmp_path / "shards" / "%05d.tar"), maxcount=4, verbose=0) as writer:
        for n, name in enumerate(names):
            writer.write({"__key__": f"{n:06d}", name.rsplit(".", 1)[1]: (images / name).read_bytes(),
                          "json": {"captions": [text for path, text in rows if path.endswith(name)]}})
    return {"coco": (write_coco(tmp_path / "captions.json", COUNT, CAPTIONS_PER_IMAGE), images),
            "csv": (write_csv(tmp_path / "pairs.csv", rows), None),
            "tsv": (write_csv(tmp_path / "pairs.tsv", rows, delimiter="\t"), None),
            "jsonl": (write_jsonl(tmp_path / "pairs.jsonl", rows), None),
            "shards": (tmp_path / "shards", None)}


def query_ranks(model, preprocess, source, image_dir):
    captioned = read_caption_set(str(source), None if image_dir is None else str(image_dir))
    features = caption_image_features(model, captioned, preprocess, "cpu", batch_size=4, progress=False)
    texts, caption_image = caption_pairs(features, captioned.captions)
    return texts, feature_retrieval_ranks(features.features, text_features(model, texts, "cpu", batch_size=4,
                                                                            progress=False), caption_image)


def run(tmp_path, monkeypatch, loaded, source, image_dir=None, *extra):
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: loaded)
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"stand-in weights")
    return retrieval_eval.main(["--checkpoint_path", str(checkpoint), "--annotation_file", str(source),
                                *(["--img_dir", str(image_dir)] if image_dir else []), "--device", "cpu",
                                "--precision", "fp32", "--num_workers", "0", "--batch_size", "4",
                                "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out"),
                                "--name", source.stem, *extra])


def test_every_format_ranks_each_query_as_its_coco_twin(tiny, captions):
    model, preprocess = tiny
    coco_texts, (coco_images, coco_captions) = query_ranks(model, preprocess, *captions["coco"])
    assert len(coco_images) == COUNT and len(coco_captions) == COUNT * CAPTIONS_PER_IMAGE
    for name in ("csv", "tsv", "jsonl", "shards"):
        texts, (image_ranks, caption_ranks) = query_ranks(model, preprocess, *captions[name])
        assert texts == coco_texts, name
        assert torch.equal(image_ranks, coco_images) and torch.equal(caption_ranks, coco_captions), name


def test_retrieval_eval_reports_the_same_recall_on_a_csv_as_on_coco(tiny, captions, tmp_path, monkeypatch):
    reports = {}
    for name in ("coco", "csv", "jsonl", "shards"):
        source, image_dir = captions[name]
        assert run(tmp_path, monkeypatch, tiny, source, image_dir) == 0
        report = json.loads((tmp_path / "out" / f"{source.stem}_retrieval.json").read_text())
        reports[name] = {key: value for key, value in report.items() if "R@" in key or "rank" in key}
    assert len(reports["coco"]) == 10
    assert reports["csv"] == reports["coco"] and reports["jsonl"] == reports["coco"]
    assert reports["shards"] == reports["coco"]


def test_pair_scores_are_100_times_the_cosine_of_each_row(tiny, captions, tmp_path, monkeypatch):
    model, preprocess = tiny
    source, _ = captions["csv"]
    assert run(tmp_path, monkeypatch, tiny, source, None, "--pair_scores", str(tmp_path / "scores.csv")) == 0
    with open(tmp_path / "scores.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["filepath", "caption", "clip_score"]
    assert sorted((row["filepath"], row["caption"]) for row in rows) == sorted(caption_rows(COUNT, 2, "images/"))
    row = rows[0]
    image = preprocess(Image.open(tmp_path / row["filepath"]).convert("RGB"))
    with torch.no_grad():
        expected = 100 * torch.cosine_similarity(model.encode_image(image[None]),
                                                 text_features(model, [row["caption"]], "cpu", batch_size=1,
                                                               progress=False)).item()
    assert float(row["clip_score"]) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "absent.csv", "captions file not found: "),
    (lambda tmp: write_csv(tmp / "pairs.txt", [("a.jpg", "a")]), "cannot tell the format from the name"),
    (lambda tmp: write_csv(tmp / "pairs.csv", [("a.jpg", "a")], header=("image", "caption")), "no 'filepath' column"),
    (lambda tmp: write_coco(tmp / "captions.json", 1, 1), "needs the folder of its images (img_dir)"),
])
def test_bad_captions_are_one_line(tiny, tmp_path, monkeypatch, capsys, make, message):
    assert run(tmp_path, monkeypatch, tiny, make(tmp_path)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0]


def test_eval_tasks_read_tables_and_shards_as_their_coco_twin(tiny, captions):
    model, preprocess = tiny
    coco, image_dir = captions["coco"]
    twin = read_captioned(LossTask(kind="loss", name="coco", annotation_file=str(coco), image_dir=str(image_dir)))
    losses = {}
    for name in ("csv", "shards"):
        task = RetrievalTask(kind="retrieval", name=name, annotation_file=str(captions[name][0]))
        captioned = read_captioned(task)
        assert captioned.captions == twin.captions
        losses[name] = validation_loss(model, captioned, preprocess, "cpu", batch_size=3)
    assert losses["csv"] == losses["shards"] == validation_loss(model, twin, preprocess, "cpu", batch_size=3)
