"""extract_features.py: the features, labels and paths of every readable image, and the class text embeddings,
read back from safetensors and npz exactly as the model computes them."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import extract_features
from evaluation.zeroshot import zero_shot_head
from model import build_model, load_model, model_config_by_name
from utils.checkpoint import save_checkpoint_atomic
from zeroshot_fixtures import colour, write_cifar, write_image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.pt"
    torch.manual_seed(0)
    model = build_model(model_config_by_name("tiny"))
    save_checkpoint_atomic({"model": model.state_dict(), "model_config": vars(model.config)}, path)
    return path


def read_back(path):
    if path.suffix == ".npz":
        data = np.load(path)
        return ({name: torch.from_numpy(data[name]) for name in ("image_features", "labels", "text_embeddings")},
                {name: data[name].tolist() for name in ("paths", "class_names")})
    with safe_open(str(path), "pt") as file:
        return ({name: file.get_tensor(name) for name in file.keys()},
                {name: json.loads(value) for name, value in file.metadata().items()})


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_folder_set_features_labels_paths_and_text_embeddings(checkpoint, tmp_path, suffix):
    for label, name in enumerate(["cat", "dog"]):
        for copy in range(2):
            write_image(tmp_path / "pets" / name / f"{copy}.jpg", colour(5 * label + copy), size=(40, 36))
    (tmp_path / "pets" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 cut short")
    output = tmp_path / f"pets{suffix}"
    assert extract_features.main(["--checkpoint_path", str(checkpoint), "--dataset_type", "folder", "--data_dir",
                                  str(tmp_path / "pets"), "--templates", "a photo of a {}.", "--output", str(output),
                                  "--precision", "fp32", "--num_workers", "0",
                                  "--cache_dir", str(tmp_path / "cache")]) == 0
    tensors, strings = read_back(output)
    files = [tmp_path / "pets" / "cat" / "0.jpg", tmp_path / "pets" / "cat" / "1.jpg",
             tmp_path / "pets" / "dog" / "0.jpg", tmp_path / "pets" / "dog" / "1.jpg"]
    assert strings["paths"] == [str(path) for path in files] and strings["class_names"] == ["cat", "dog"]
    assert tensors["labels"].tolist() == [0, 0, 1, 1]
    model, preprocess = load_model(checkpoint)
    with torch.no_grad():
        expected = model.encode_image(torch.stack([preprocess(Image.open(path).convert("RGB")) for path in files]))
    assert torch.allclose(tensors["image_features"], expected, atol=1e-4)
    head = zero_shot_head(model, ["cat", "dog"], ["a photo of a {}."], "cpu")
    assert torch.allclose(tensors["text_embeddings"], head.T, atol=1e-5)


def test_cifar_train_split_names_its_images_by_index(checkpoint, tmp_path):
    labels = [1, 0, 2]
    images = np.stack([np.full((32, 32, 3), colour(label), dtype=np.uint8) for label in labels])
    write_cifar(tmp_path / "CIFAR100", "cifar100", images, labels, [f"c{i}" for i in range(100)], split="train")
    output = tmp_path / "train.npz"
    assert extract_features.main(["--checkpoint_path", str(checkpoint), "--dataset_type", "cifar", "--data_dir",
                                  str(tmp_path / "CIFAR100"), "--split", "train", "--output", str(output),
                                  "--precision", "fp32", "--num_workers", "0",
                                  "--cache_dir", str(tmp_path / "cache")]) == 0
    tensors, strings = read_back(output)
    assert strings["paths"] == ["CIFAR100/train/0", "CIFAR100/train/1", "CIFAR100/train/2"]
    assert tensors["labels"].tolist() == labels and tensors["text_embeddings"].shape == (100, 128)


def test_an_unknown_output_format_is_one_line(tmp_path, capsys):
    assert extract_features.main(["--checkpoint_path", "tiny", "--dataset_type", "folder", "--data_dir",
                                  str(tmp_path), "--output", str(tmp_path / "features.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "must end in .safetensors or .npz" in err
    assert not (tmp_path / "features.pt").exists()
