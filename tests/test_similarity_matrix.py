"""similarity_matrix.py: each caption against each image, as a CSV of cosines and a figure; captions from a
tab-separated file or a COCO captions JSON; bad input is one error line."""
import csv
import json
import shutil
from pathlib import Path

import torch
from PIL import Image

import similarity_matrix
from evaluation.similarity import image_text_similarity
from model import load_model
from utils.tokenizer import tokenize

TEST_IMAGES = Path(__file__).parents[1] / "test_images"
CAPTIONS = {"cat.jpg": "a cat lying on a rug", "rocket.jpg": "a rocket lifting off",
            "coffee_cup.jpg": "a cup of coffee on a saucer", "flower.jpg": "a flower in bloom"}


def test_matrix_from_a_tab_separated_file_equals_the_cosines(tmp_path, capsys):
    captions = tmp_path / "captions.tsv"
    captions.write_text("# file\tcaption\n" + "".join(f"{name}\t{text}\n" for name, text in CAPTIONS.items()))
    out = tmp_path / "out"
    assert similarity_matrix.main(["--checkpoint_path", "tiny", "--img_dir", str(TEST_IMAGES), "--captions",
                                   str(captions), "--output_dir", str(out), "--precision", "fp32"]) == 0
    rows = list(csv.reader((out / "similarity_matrix.csv").open()))
    assert rows[0] == ["caption"] + list(CAPTIONS) and [row[0] for row in rows[1:]] == list(CAPTIONS.values())
    values = torch.tensor([[float(value) for value in row[1:]] for row in rows[1:]])
    assert values.abs().max() <= 1.0 and values.std() > 0
    with Image.open(out / "similarity_matrix.png") as figure:
        assert figure.width > 500 and figure.height > 400


def test_cosines_are_those_of_the_normalised_features():
    model, preprocess = load_model("tiny")
    images = [Image.open(TEST_IMAGES / name).convert("RGB") for name in ("cat.jpg", "rocket.jpg")]
    similarity = image_text_similarity(model, images, ["a cat", "a rocket", "a cup"], preprocess, "cpu")
    with torch.no_grad():
        image_features = model.encode_image(torch.stack([preprocess(image) for image in images]))
        text_features = model.encode_text(tokenize(["a cat", "a rocket", "a cup"], model.config.context_length))
    expected = torch.nn.functional.cosine_similarity(text_features[:, None], image_features[None], dim=-1)
    assert similarity.shape == (3, 2) and torch.allclose(similarity, expected, atol=1e-5)


def test_captions_from_a_coco_json_and_bad_lines(tmp_path, capsys):
    images = tmp_path / "val"
    images.mkdir()
    for name in ("cat.jpg", "pagoda.jpg"):
        shutil.copy(TEST_IMAGES / name, images)
    coco = {"images": [{"id": 1, "file_name": "cat.jpg"}, {"id": 2, "file_name": "pagoda.jpg"}],
            "annotations": [{"id": 10, "image_id": 1, "caption": "a cat"}, {"id": 11, "image_id": 1,
                                                                             "caption": "a second caption"},
                            {"id": 12, "image_id": 2, "caption": "a pagoda"}]}
    (tmp_path / "captions.json").write_text(json.dumps(coco))
    out = tmp_path / "out"
    assert similarity_matrix.main(["--checkpoint_path", "tiny", "--img_dir", str(images), "--captions",
                                   str(tmp_path / "captions.json"), "--output_dir", str(out)]) == 0
    rows = list(csv.reader((out / "similarity_matrix.csv").open()))
    assert [row[0] for row in rows[1:]] == ["a cat", "a pagoda"]

    (tmp_path / "bad.tsv").write_text("cat.jpg a cat without a tab\n")
    assert similarity_matrix.main(["--checkpoint_path", "tiny", "--img_dir", str(images), "--captions",
                                   str(tmp_path / "bad.tsv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.tsv:1: expected 'file name<TAB>caption'" in err
