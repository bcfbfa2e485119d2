"""retrieval_eval.py end to end: a COCO-format captions file and images on disk, a stub model whose similarities
are known, recall checked against a hand count; missing and unreadable images; cached image features."""
import json
from types import SimpleNamespace

import pytest
import torch

import retrieval_eval
from evaluation import inference_model
from utils.tokenizer import tokenize
from zeroshot_fixtures import colour, plain_transform, write_image

# Image i has colour(i) and is embedded as e_i. Image 0 has five captions of which only "red match" points at it;
# the other four point at e_3, which no image has.
CAPTIONS = {
    0: [("a blurry scene", 3), ("something else", 3), ("red match", 0), ("a third try", 3), ("nothing here", 3)],
    1: [("wrongly points at image 2", 2)],
    2: [("blue match", 2)],
}


class StubModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(context_length=77, image_size=16, image_mean=(0.0,) * 3, image_std=(1.0,) * 3)
        self.palette = torch.tensor([colour(i) for i in range(4)], dtype=torch.float32) / 255
        self.caption_vector = {tuple(tokenize(text)[0].tolist()): target
                               for captions in CAPTIONS.values() for text, target in captions}
        self.images_seen = 0

    def encode_image(self, images):
        self.images_seen += len(images)
        nearest = torch.cdist(images.mean(dim=(2, 3)), self.palette).argmin(dim=1)
        return torch.nn.functional.one_hot(nearest, 4).float() * 2.0

    def encode_text(self, tokens):
        targets = torch.tensor([self.caption_vector[tuple(row.tolist())] for row in tokens])
        return torch.nn.functional.one_hot(targets, 4).float()


def write_coco(tmp_path, extra_images=(), extra_annotations=()):
    images = [{"id": 100 + i, "file_name": f"{i:012d}.jpg", "height": 20, "width": 24} for i in CAPTIONS]
    annotations = [{"id": len(images) * 10 + n, "image_id": 100 + i, "caption": text}
                   for i, captions in CAPTIONS.items() for n, (text, _) in enumerate(captions)]
    for i in CAPTIONS:
        write_image(tmp_path / "val" / f"{i:012d}.jpg", colour(i))
    path = tmp_path / "captions_val.json"
    path.write_text(json.dumps({"info": {}, "licenses": [], "images": images + list(extra_images),
                                "annotations": annotations + list(extra_annotations)}))
    return path


def run(tmp_path, monkeypatch, annotation_file, model):
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: (model, plain_transform()))
    checkpoint = tmp_path / "model.pt"
    if not checkpoint.is_file():  # rewriting it would change its identity, and so the feature cache's key
        checkpoint.write_bytes(b"stand-in weights")
    return retrieval_eval.main([
        "--checkpoint_path", str(checkpoint), "--annotation_file", str(annotation_file),
        "--img_dir", str(tmp_path / "val"), "--device", "cpu", "--precision", "fp32", "--num_workers", "0",
        "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out")])


def test_recall_matches_a_hand_count_and_features_are_cached(tmp_path, monkeypatch):
    model = StubModel()
    annotation_file = write_coco(tmp_path)
    assert run(tmp_path, monkeypatch, annotation_file, model) == 0
    report = json.loads((tmp_path / "out" / "captions_val_retrieval.json").read_text())
    # image -> text ranks: image 0 -> 0 (its one matching caption), image 1 -> 6 (its caption scores 0, tied with
    # the six others), image 2 -> 1 (image 1's caption ties with its own).
    assert report["image_to_text_R@1"] == pytest.approx(100 / 3)
    assert report["image_to_text_R@5"] == pytest.approx(200 / 3)
    assert report["image_to_text_R@10"] == 100.0
    # text -> image ranks: the four e_3 captions tie at 0 with all 3 images -> 2; "red match" 0;
    # image 1's caption -> 2; "blue match" 0.
    assert report["text_to_image_R@1"] == pytest.approx(200 / 7)
    assert report["text_to_image_R@5"] == 100.0
    assert report["num_images"] == 3 and report["num_captions"] == 7
    assert model.images_seen == 3
    assert run(tmp_path, monkeypatch, annotation_file, model) == 0
    assert model.images_seen == 3, "the second run must read the cached image features"


def test_missing_and_unreadable_images_are_reported_and_left_out_with_their_captions(tmp_path, monkeypatch,
                                                                                    capsys):
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    annotation_file = write_coco(
        tmp_path,
        extra_images=[{"id": 7, "file_name": "gone.jpg"}, {"id": 8, "file_name": "broken.jpg"}],
        extra_annotations=[{"id": 1, "image_id": 7, "caption": "red match"},
                           {"id": 2, "image_id": 8, "caption": "blue match"}])
    assert run(tmp_path, monkeypatch, annotation_file, StubModel()) == 0
    report = json.loads((tmp_path / "out" / "captions_val_retrieval.json").read_text())
    assert report["num_images"] == 3 and report["num_captions"] == 7
    assert report["num_missing_images"] == 1 and report["num_unreadable_images"] == 1
    errors = capsys.readouterr().err
    assert "not found" in errors and "gone.jpg" in errors
    assert "skipped unreadable image" in errors and "broken.jpg" in errors


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a valid JSON file"),
    (json.dumps({"images": []}), "no 'annotations' list"),
    (json.dumps({"images": [{"id": 1}], "annotations": []}), "images[0] has no 'file_name' key"),
    (json.dumps({"images": [], "annotations": [{"id": 1, "image_id": 5, "caption": "x"}]}), "refers to image_id 5"),
])
def test_bad_captions_file_is_one_error_line(tmp_path, monkeypatch, capsys, content, message):
    (tmp_path / "val").mkdir()
    annotation_file = tmp_path / "captions.json"
    annotation_file.write_text(content)
    assert run(tmp_path, monkeypatch, annotation_file, StubModel()) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: {annotation_file}") and message in error[0]


def write_karpathy(tmp_path):
    """CAPTIONS as a Karpathy split file (dataset_coco.json's layout): the test images under val2014/, and one
    training image that the test split must leave out."""
    images = [{"filepath": "val2014", "filename": f"COCO_val2014_{i:012d}.jpg", "imgid": i, "split": "test",
               "sentences": [{"raw": text, "tokens": text.split()} for text, _ in captions], "cocoid": 100 + i}
              for i, captions in CAPTIONS.items()]
    images.insert(1, {"filepath": "train2014", "filename": "COCO_train2014_1.jpg", "imgid": 9, "split": "train",
                      "sentences": [{"raw": "red match", "tokens": ["red", "match"]}], "cocoid": 1})
    for i in CAPTIONS:
        write_image(tmp_path / "val" / "val2014" / f"COCO_val2014_{i:012d}.jpg", colour(i))
    write_image(tmp_path / "val" / "train2014" / "COCO_train2014_1.jpg", colour(0))
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def test_karpathy_split_file_gives_the_same_counts_as_coco_captions_and_any_recall_k(tmp_path, monkeypatch):
    model = StubModel()
    annotation_file = write_karpathy(tmp_path)
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: (model, plain_transform()))
    assert retrieval_eval.main(["--checkpoint_path", "tiny", "--annotation_file", str(annotation_file),
                                "--img_dir", str(tmp_path / "val"), "--precision", "fp32", "--num_workers", "0",
                                "--recall_k", "2", "1", "--output_dir", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "dataset_coco_retrieval.json").read_text())
    assert report["num_images"] == 3 and report["num_captions"] == 7 and report["split"] == "test"
    # the hand count above: image -> text ranks 0, 6, 1; text -> image ranks 2, 2, 0, 2, 2, 2, 0
    assert report["image_to_text_R@1"] == pytest.approx(100 / 3)
    assert report["image_to_text_R@2"] == pytest.approx(200 / 3)
    assert "image_to_text_R@5" not in report
    assert report["image_to_text_mean_rank"] == pytest.approx((1 + 7 + 2) / 3)
    assert report["image_to_text_median_rank"] == 2.0
    assert report["text_to_image_median_rank"] == 3.0
    text = (tmp_path / "out" / "dataset_coco_retrieval.txt").read_text()
    assert "image -> text R@2 = 66.67 %" in text and "text -> image mean rank = 2.4" in text


def test_nan_features_give_zero_recall_and_a_warning(tmp_path, monkeypatch, capsys):
    class NanImages(StubModel):
        def encode_image(self, images):
            return super().encode_image(images) * float("nan")

    annotation_file = write_coco(tmp_path)
    assert run(tmp_path, monkeypatch, annotation_file, NanImages()) == 0
    report = json.loads((tmp_path / "out" / "captions_val_retrieval.json").read_text())
    assert all(report[f"{direction}_R@{k}"] == 0.0 for direction in ("image_to_text", "text_to_image")
               for k in (1, 5, 10))
    assert report["num_nonfinite_images"] == 3
    assert "WARNING: 3 of 3 images had non-finite" in capsys.readouterr().err


def test_a_karpathy_file_without_the_split_is_one_error_line(tmp_path, monkeypatch, capsys):
    annotation_file = write_karpathy(tmp_path)
    monkeypatch.setattr(inference_model, "load_model", lambda path, device: (StubModel(), plain_transform()))
    assert retrieval_eval.main(["--checkpoint_path", "tiny", "--annotation_file", str(annotation_file),
                                "--img_dir", str(tmp_path / "val"), "--split", "restval"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"error: {annotation_file} has no images in split 'restval'"]
