"""extract_features.py on your own data: an unlabelled folder of images (unreadable ones skipped and reported) and
captions from a .txt or a table's caption column, in the same npz/safetensors files."""
import numpy as np
import pytest
import torch

import extract_features
from evaluation import inference_model
from caption_fixtures import caption_rows, write_csv, write_images
from evaluation.features import extract_text_features
from model import load_model


@pytest.fixture(scope="module")
def tiny():
    """One tiny model for every run, so that its features can be checked."""
    torch.manual_seed(0)
    return load_model("tiny", device="cpu")


def run(monkeypatch, loaded, *flags):
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: loaded)
    return extract_features.main(["--checkpoint_path", "tiny", "--device", "cpu", "--precision", "fp32",
                                  "--num_workers", "0", *flags])


def test_folder_and_captions_features_with_paths_and_texts(tmp_path, monkeypatch, capsys, tiny):
    model = tiny[0]
    names = write_images(tmp_path / "photos" / "nested", 3)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "captions.txt").write_text("a red square\n\na grey checkerboard\n")
    output = tmp_path / "mine.npz"
    assert run(monkeypatch, tiny, "--img_dir", str(tmp_path / "photos"), "--captions",
               str(tmp_path / "captions.txt"), "--output", str(output)) == 0
    data = np.load(output)
    assert [path.rsplit("/", 1)[1] for path in data["paths"]] == names
    assert data["image_features"].shape[0] == 3
    assert list(data["captions"]) == ["a red square", "a grey checkerboard"]
    expected = extract_text_features(model, ["a red square", "a grey checkerboard"], "cpu", progress=False)
    assert np.allclose(data["text_features"], expected.numpy(), atol=1e-5)
    assert "skipped unreadable image" in capsys.readouterr().err


def test_captions_of_a_table_column(tmp_path, monkeypatch, tiny):
    table = write_csv(tmp_path / "pairs.csv", caption_rows(2, 2))
    assert run(monkeypatch, tiny, "--captions", str(table), "--output", str(tmp_path / "t.npz")) == 0
    assert list(np.load(tmp_path / "t.npz")["captions"]) == [text for _, text in caption_rows(2, 2)]


@pytest.mark.parametrize("flags, message", [
    (["--captions", "absent.txt"], "captions file not found: absent.txt"),
    (["--captions", "captions.xml"], "expected a .txt file of one caption per line"),
    (["--img_dir", "absent"], "image folder not found: absent"),
    ([], "give --data_dir (with --dataset_type), or --img_dir and/or --captions"),
])
def test_bad_inputs_are_one_line(tmp_path, monkeypatch, capsys, tiny, flags, message):
    monkeypatch.chdir(tmp_path)
    assert run(monkeypatch, tiny, *flags, "--output", "out.npz") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
