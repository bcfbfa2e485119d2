"""zeroshot_eval.py end to end: every layout scores each image against its own class name, batched results equal
one-image-at-a-time results, the report files have their layout, and bad input is one error line."""
import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import zeroshot_eval
from dataloader.eval.class_names import imagenet_class_names
from evaluation import inference_model
from evaluation.template_sets import load_templates
from model import build_model, load_model, model_config_by_name
from utils.checkpoint import save_checkpoint_atomic
from utils.tokenizer import tokenize
from zeroshot_fixtures import ColourClassModel, colour, plain_transform, write_cifar, write_image

WNIDS = list(imagenet_class_names())
NAMES_IN_LABEL_ORDER = list(imagenet_class_names().values())


def folder_layout(root):
    names = ["bird", "fire_truck", "mug"]
    for index, folder in enumerate(names):
        for copy in range(index + 2):
            write_image(root / "officehome" / folder / f"{copy}.jpg", colour(index))
    return root / "officehome", "folder", None, [name.replace("_", " ") for name in names], 9


def imagenet_subset_layout(root):
    chosen = sorted(WNIDS[7::50])  # 20 classes of 1000, as ImageNet-A/R hold 200
    for index, wnid in enumerate(chosen):
        write_image(root / "imagenet-r" / wnid / "0.png", colour(index))
    return root / "imagenet-r", "imagenet", None, [imagenet_class_names()[w] for w in chosen], len(chosen)


def imagenet_v2_layout(root):
    numbers = [0, 1, 2, 10, 11, 100, 101, 999]
    for index, number in enumerate(numbers):
        write_image(root / "imagenetv2-matched-frequency-format-val" / str(number) / "a.jpeg", colour(index))
    return (root / "imagenetv2-matched-frequency-format-val", "imagenet", None,
            [NAMES_IN_LABEL_ORDER[n] for n in numbers], len(numbers))


def cifar10_layout(root):
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    labels = [9, 0, 3, 3, 7, 1, 2, 4, 5, 6, 8, 0]
    images = np.stack([np.full((32, 32, 3), colour(label), dtype=np.uint8) for label in labels])
    write_cifar(root, "cifar10", images, labels, names)
    return root, "cifar", "cifar10", names, len(labels)


def cifar100_reference_command_layout(root):
    """The reference command `--dataset_type cifar --data_dir data/CIFAR100`, no --dataset: CIFAR-100 it is."""
    names = [f"class_{index}" for index in range(100)]
    labels = [99, 0, 42, 57, 10]
    images = np.stack([np.full((32, 32, 3), colour(label), dtype=np.uint8) for label in labels])
    write_cifar(root / "CIFAR100", "cifar100", images, labels, names)
    return root / "CIFAR100", "cifar", None, [name.replace("_", " ") for name in names], len(labels)


@pytest.mark.parametrize("layout", [folder_layout, imagenet_subset_layout, imagenet_v2_layout, cifar10_layout,
                                    cifar100_reference_command_layout])
def test_each_image_is_scored_against_its_own_class_name(tmp_path, monkeypatch, layout):
    data_dir, dataset_type, dataset, class_names, num_images = layout(tmp_path / "data")
    default_templates = "cifar" if dataset_type == "cifar" else "imagenet"
    model = ColourClassModel(class_names, load_templates(default_templates)[1])
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: (model, plain_transform()))
    argv = ["--checkpoint_path", "stub.pt", "--dataset_type", dataset_type, "--data_dir", str(data_dir),
            "--batch_size", "4", "--num_workers", "0", "--precision", "fp32", "--output_dir", str(tmp_path / "out")]
    assert zeroshot_eval.main(argv + (["--dataset", dataset] if dataset else [])) == 0
    assert model.images_seen == num_images
    report = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert report["top1"] == 100.0 and report["num_images"] == num_images
    assert [c["name"] for c in report["per_class"]] == class_names


def test_workers_and_a_class_names_file(tmp_path, monkeypatch):
    data_dir, *_ = folder_layout(tmp_path / "data")
    (tmp_path / "names.txt").write_text("small bird\nred fire engine\ncoffee mug\n")
    model = ColourClassModel(["small bird", "red fire engine", "coffee mug"], ["a photo of a {}."])
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: (model, plain_transform()))
    assert zeroshot_eval.main([
        "--checkpoint_path", "stub.pt", "--dataset_type", "folder", "--data_dir", str(data_dir),
        "--classnames", str(tmp_path / "names.txt"), "--templates", "a photo of a {}.", "--batch_size", "2",
        "--num_workers", "2", "--output_dir", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "officehome.txt").read_text()
    assert "100.0     100.0     red fire engine" in text


def tiny_checkpoint(path):
    torch.manual_seed(0)
    model = build_model(model_config_by_name("tiny"))
    save_checkpoint_atomic({"model": model.state_dict(), "model_config": vars(model.config)}, path)
    return path


def one_at_a_time_hits(checkpoint, data_dir, class_names, templates):
    """The plain reading of zero-shot accuracy, one image per step, to hold the batched pipeline to."""
    model, preprocess = load_model(checkpoint)
    with torch.no_grad():
        columns = []
        for name in class_names:
            tokens = tokenize([t.replace("{}", name) for t in templates], model.config.context_length)
            columns.append(F.normalize(F.normalize(model.encode_text(tokens), dim=-1).mean(0), dim=0))
        head = torch.stack(columns, dim=1)
        hits = {}
        for label, folder in enumerate(sorted(p for p in data_dir.iterdir())):
            for path in sorted(folder.glob("*.jpg")):
                try:
                    image = preprocess(Image.open(path).convert("RGB"))
                except OSError:
                    continue
                scores = F.normalize(model.encode_image(image[None]), dim=-1) @ head
                others_at_least = int((scores[0] >= scores[0, label]).sum()) - 1
                hits.setdefault(folder.name, []).append((others_at_least < 1, others_at_least < 5))
    return hits


def test_tiny_model_end_to_end_batched_equals_one_at_a_time(tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    data_dir = tmp_path / "PACS_photo"
    rng = np.random.default_rng(0)
    class_folders = ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"]
    for folder in class_folders:
        (data_dir / folder).mkdir(parents=True)
        for copy in range(3):
            pixels = rng.integers(0, 256, (40 + copy, 36, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data_dir / folder / f"{copy}.jpg")
    (data_dir / "dog" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    out = tmp_path / "out"
    assert zeroshot_eval.main(["--checkpoint_path", str(checkpoint), "--dataset_type", "folder",
                               "--data_dir", str(data_dir), "--templates", "cifar_clip", "--batch_size", "8",
                               "--num_workers", "2", "--precision", "fp32", "--output_dir", str(out)]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable image" in captured.err and "corrupt.jpg" in captured.err

    report = json.loads((out / "PACS_photo.json").read_text())
    assert report["checkpoint"] == str(checkpoint) and report["dataset"] == "PACS_photo"
    assert report["templates"] == {"name": "cifar_clip", "count": 18}
    assert report["num_images"] == 21 and report["num_unreadable_images"] == 1 and report["num_classes"] == 7

    expected = one_at_a_time_hits(checkpoint, data_dir, class_folders, load_templates("cifar_clip")[1])
    for score in report["per_class"]:
        hits = expected[score["name"]]
        assert score["images"] == len(hits) == 3
        assert score["top1"] == pytest.approx(100 * sum(top1 for top1, _ in hits) / 3)
        assert score["top5"] == pytest.approx(100 * sum(top5 for _, top5 in hits) / 3)
    all_hits = [hit for hits in expected.values() for hit in hits]
    assert report["top1"] == pytest.approx(100 * sum(top1 for top1, _ in all_hits) / 21)

    lines = (out / "PACS_photo.txt").read_text().splitlines()
    assert re.fullmatch(r"Top 1 accuracy = \d+\.\d\d %", lines[0])
    assert re.fullmatch(r"Top 5 accuracy = \d+\.\d\d %", lines[1])
    assert lines[3:7] == ["-" * 53, "Class wise accuracies (in %)", "", "Top-1     Top-5     Class name"]
    assert [line[20:] for line in lines[7:]] == class_folders
    with Image.open(out / "PACS_photo.png") as chart:
        assert 500 < chart.width < 1500 and 250 < chart.height < 1000


def run_expecting_error(argv, capsys):
    assert zeroshot_eval.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_input_is_one_error_line(tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    common = ["--checkpoint_path", str(checkpoint), "--num_workers", "0", "--output_dir", str(tmp_path / "out")]
    err = run_expecting_error(common + ["--dataset_type", "folder", "--data_dir", str(tmp_path / "nope")], capsys)
    assert "nope does not exist" in err

    (tmp_path / "no_images" / "cat").mkdir(parents=True)
    (tmp_path / "no_images" / "cat" / "list.csv").write_text("a,b\n")
    err = run_expecting_error(common + ["--dataset_type", "folder", "--data_dir", str(tmp_path / "no_images")],
                              capsys)
    assert "no images" in err

    write_image(tmp_path / "two" / "cat" / "a.png", colour(1))
    write_image(tmp_path / "two" / "dog" / "a.png", colour(2))
    (tmp_path / "names.txt").write_text("cat\ndog\nbird\n")
    err = run_expecting_error(common + ["--dataset_type", "folder", "--data_dir", str(tmp_path / "two"),
                                        "--classnames", str(tmp_path / "names.txt")], capsys)
    assert "names.txt has 3 class names but" in err and "has 2 classes" in err

    (tmp_path / "broken.pt").write_bytes(b"this is not a checkpoint")
    err = run_expecting_error(["--checkpoint_path", str(tmp_path / "broken.pt"), "--dataset_type", "folder",
                               "--data_dir", str(tmp_path / "two")], capsys)
    assert "broken.pt" in err


class NanImageModel(ColourClassModel):
    def encode_image(self, images):
        return torch.full((len(images), len(self.palette)), float("nan"))


def test_nan_features_score_zero_and_say_so(tmp_path, monkeypatch, capsys):
    data_dir, _, _, class_names, num_images = folder_layout(tmp_path / "data")
    model = NanImageModel(class_names, load_templates("imagenet")[1])
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: (model, plain_transform()))
    assert zeroshot_eval.main(["--checkpoint_path", "stub.pt", "--dataset_type", "folder", "--data_dir",
                               str(data_dir), "--num_workers", "0", "--precision", "fp32",
                               "--output_dir", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "officehome.json").read_text())
    assert report["top1"] == 0.0 and report["top5"] == 0.0 and report["num_nonfinite"] == num_images
    assert f"WARNING: {num_images} of {num_images} images had non-finite" in capsys.readouterr().err
    assert "non-finite" in (tmp_path / "out" / "officehome.txt").read_text()
