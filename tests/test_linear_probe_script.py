"""linear_probe.py end to end on CIFAR and class-folder layouts with a stub model whose features name the class."""
import json

import numpy as np
import pytest

import linear_probe
from evaluation import inference_model
from evaluation.template_sets import load_templates
from zeroshot_fixtures import ColourClassModel, colour, plain_transform, write_cifar, write_image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def stub_model(monkeypatch, class_names, templates):
    model = ColourClassModel(class_names, load_templates(templates)[1])
    model.config.image_mean, model.config.image_std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: (model, plain_transform()))
    return model


def cifar10(root, per_class_train, per_class_test):
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = [label for label in range(10) for _ in range(per_class)]
        images = np.stack([np.full((32, 32, 3), colour(label), dtype=np.uint8) for label in labels])
        write_cifar(root, "cifar10", images, labels, CIFAR10_NAMES, split=split)
    return root


def common_args(tmp_path, checkpoint):
    return ["--checkpoint_path", str(checkpoint), "--device", "cpu", "--precision", "fp32", "--num_workers", "0",
            "--batch_size", "16", "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out")]


def test_cifar_probe_k_shot_plot_and_cached_features(tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"stand-in weights: the model is stubbed")
    model = stub_model(monkeypatch, CIFAR10_NAMES, "cifar")
    data_dir = cifar10(tmp_path / "cifar", per_class_train=5, per_class_test=2)
    argv = common_args(tmp_path, checkpoint) + ["--dataset_type", "cifar", "--data_dir", str(data_dir),
                                                "--regularisation", "0.01", "--k_shot", "1,2", "4",
                                                "--k_shot_seeds", "0", "1"]
    assert linear_probe.main(argv) == 0
    assert model.images_seen == 70  # 50 training and 20 test images, each encoded once
    report = json.loads((tmp_path / "out" / "CIFAR10_linear_probe.json").read_text())
    assert report["top1"] == 100.0 and report["mean_per_class_recall"] == 100.0
    assert report["zeroshot_top1"] == 100.0
    assert report["num_train_images"] == 50 and report["num_images"] == 20
    assert [(entry["k"], entry["accuracies"]) for entry in report["k_shot"]] == [
        (1, [100.0, 100.0]), (2, [100.0, 100.0]), (4, [100.0, 100.0])]
    assert (tmp_path / "out" / "CIFAR10_linear_probe_k_shot.png").stat().st_size > 0
    assert (tmp_path / "out" / "CIFAR10_linear_probe.txt").read_text().startswith("Top 1 accuracy = 100.00 %")

    assert linear_probe.main(argv) == 0
    assert model.images_seen == 70, "the second run must read the cached features"
    assert capsys.readouterr().out.count("features read from") == 2


def test_folder_set_sweeps_lambda_and_carves_a_seeded_test_split(tmp_path, monkeypatch):
    names = ["apple", "boat", "cloud"]
    for label, name in enumerate(names):
        for copy in range(10):
            write_image(tmp_path / "fruit" / name / f"{copy}.png", colour(label))
    stub_model(monkeypatch, names, "imagenet")
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    argv = common_args(tmp_path, checkpoint) + ["--dataset_type", "folder", "--data_dir", str(tmp_path / "fruit"),
                                                "--test_fraction", "0.3"]
    assert linear_probe.main(argv) == 0
    report = json.loads((tmp_path / "out" / "fruit_linear_probe.json").read_text())
    assert report["num_images"] == 9 and report["num_train_images"] == 21
    assert report["top1"] == 100.0
    assert len(report["regularisation_sweep"]) == 13 + 14
    assert report["regularisation"] == max(entry["regularisation"] for entry in report["regularisation_sweep"]
                                           if entry["validation_accuracy"] == 100.0)


def test_yaml_config_gives_options_and_an_unknown_key_names_the_nearest(tmp_path, monkeypatch, capsys):
    stub_model(monkeypatch, CIFAR10_NAMES, "cifar")
    data_dir = cifar10(tmp_path / "cifar", per_class_train=2, per_class_test=1)
    config = tmp_path / "probe.yaml"
    config.write_text(f"dataset_type: cifar\ndata_dir: {data_dir}\nregularisation: 1e-2\nk_shot: [1, 2]\n"
                      f"k_shot_seeds: [5]\n")
    assert linear_probe.main(common_args(tmp_path, "tiny") + ["--config", str(config)]) == 0
    report = json.loads((tmp_path / "out" / "CIFAR10_linear_probe.json").read_text())
    assert report["regularisation"] == 0.01 and [entry["k"] for entry in report["k_shot"]] == [1, 2]

    config.write_text("dataset_typ: cifar\n")
    assert linear_probe.main(common_args(tmp_path, "tiny") + ["--config", str(config)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {config}: unknown key 'dataset_typ'; did you mean 'dataset_type'?")


@pytest.mark.parametrize("extra, message", [
    (["--k_shot", "3"], "error: class 'airplane' has 2 training image(s), fewer than k=3"),
    (["--k_shot", "0", "2"], "error: command line: k_shot values must be at least 1, got 0"),
    (["--dataset", "cifar11"], "error: --dataset 'cifar11' is not a CIFAR set"),
])
def test_user_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, extra, message):
    stub_model(monkeypatch, CIFAR10_NAMES, "cifar")
    data_dir = cifar10(tmp_path / "cifar", per_class_train=2, per_class_test=1)
    argv = common_args(tmp_path, "tiny") + ["--dataset_type", "cifar", "--data_dir", str(data_dir),
                                            "--regularisation", "1"] + extra
    assert linear_probe.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith(message) and "Traceback" not in "\n".join(error)
