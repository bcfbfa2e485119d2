"""zero_shot_demo.py: top-5 per image, a figure for one image and for several, unreadable files skipped."""
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import zero_shot_demo
from dataloader.eval.splits import spread_over_classes
from evaluation import inference_model
from evaluation.template_sets import load_templates
from evaluation.zeroshot import class_probabilities, zero_shot_head
from model import load_model
from zeroshot_fixtures import ColourClassModel, colour, plain_transform, write_image

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
    assert "skipped unreadable image" in captured.err and "notes.txt" in captured.err and "cut.jpg" in captured.err
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


def test_labelled_set_grid_is_captioned_predicted_true(tmp_path, monkeypatch, capsys):
    names = ["cat", "dog", "car"]
    for label, name in enumerate(names):
        for copy in range(3):
            write_image(tmp_path / "pets" / name / f"{copy}.png", colour(label), size=(40, 40))
    write_image(tmp_path / "pets" / "dog" / "3.png", colour(2), size=(40, 40))  # looks like a car
    model = ColourClassModel(names, load_templates("cifar")[1])
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: (model, plain_transform()))
    out = tmp_path / "demo"
    assert zero_shot_demo.main(["--checkpoint_path", "stub.pt", "--labelled_dir", str(tmp_path / "pets"),
                                "--examples", "12", "--output_dir", str(out), "--precision", "fp32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.endswith(": car (car)") for line in lines) == 3
    assert any(line.endswith("3.png: car (dog)") for line in lines)
    assert lines[-1].startswith("9 of 10 right")
    with Image.open(out / "pets_predicted_true.png") as figure:
        assert figure.width > 600 and figure.height > 500


def test_examples_take_the_classes_in_turn():
    labels = torch.tensor([0] * 10 + [1] * 2 + [2] * 5)
    chosen = spread_over_classes(labels, 7, seed=0)
    assert torch.bincount(labels[chosen], minlength=3).tolist() == [3, 2, 2]
    assert torch.equal(chosen, spread_over_classes(labels, 7, seed=0))
    assert len(spread_over_classes(labels, 100, seed=1)) == 17
