"""zero_shot_demo.py: top-5 per image, a figure for one image and for several, unreadable files skipped."""
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import zero_shot_demo
from evaluation.zeroshot import class_probabilities, zero_shot_head
from model import load_model

TEST_IMAGES = Path(__file__).parents[1] / "test_images"
PHOTOS = sorted(TEST_IMAGES.glob("*.jpg"))


def printed_predictions(stdout: str) -> dict[str, list[tuple[float, str]]]:
    predictions, current = {}, None
    for line in stdout.splitlines():
        match = re.fullmatch(r"\s+(\d+\.\d\d)%  (.+)", line)
        if match:
            predictions[current].append((float(match[1]), match[2]))
        elif not line.startswith("wrote "):
            current = Path(line).name
            predictions[current] = []
    return predictions


def test_single_image_gets_a_compact_figure(tmp_path, capsys):
    out = tmp_path / "demo_output"
    assert zero_shot_demo.main(["--checkpoint_path", "tiny", "--img_path", str(TEST_IMAGES / "cat.jpg"),
                                "--show_prediction", "--output_dir", str(out), "--precision", "fp32"]) == 0
    predictions = printed_predictions(capsys.readouterr().out)
    assert list(predictions) == ["cat.jpg"] and len(predictions["cat.jpg"]) == 5
    probabilities = [p for p, _ in predictions["cat.jpg"]]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 100.01
    with Image.open(out / "cat_predictions.png") as figure:
        assert 600 < figure.width < 1100 and 200 < figure.height < 400


def test_five_images_and_unreadable_files_in_a_folder(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in PHOTOS[:5]:
        shutil.copy(photo, folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "cut.jpg").write_bytes(PHOTOS[0].read_bytes()[:40])
    out = tmp_path / "demo_output"
    assert zero_shot_demo.main(["--checkpoint_path", "tiny", "--img_dir", str(folder), "--show_prediction",
                                "--output_dir", str(out), "--classes", "cat, rocket,flower,cup,pagoda,man,tree"]) == 0
    captured = capsys.readouterr()
    assert sorted(printed_predictions(captured.out)) == sorted(photo.name for photo in PHOTOS[:5])
    assert "skipping" in captured.err and "notes.txt" in captured.err and "cut.jpg" in captured.err
    with Image.open(out / "photos_predictions.png") as figure:  # three rows of two
        assert 1200 < figure.width < 2200 and 600 < figure.height < 1200


def test_probabilities_are_a_softmax_over_all_classes():
    model, preprocess = load_model("tiny")
    head = zero_shot_head(model, ["cat", "dog", "car"], ["a photo of a {}."], "cpu")
    images = torch.stack([preprocess(Image.open(photo).convert("RGB")) for photo in PHOTOS[:2]])
    probabilities = class_probabilities(model, images, head, "cpu")
    assert probabilities.shape == (2, 3)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2))


@pytest.mark.parametrize("argv, message", [
    (["--img_dir", "does/not/exist"], "is not a directory"),
    (["--img_path", "missing.jpg"], "is not a file"),
    (["--img_path", str(TEST_IMAGES / "cat.jpg"), "--classes", " , "], "holds no class names"),
])
def test_bad_input_is_one_error_line(argv, message, capsys):
    assert zero_shot_demo.main(["--checkpoint_path", "tiny"] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
