"""`--dataset_type wds`: a set in CLIP_benchmark's webdataset layout (classnames.txt, templates with {c}, split
folders of numbered tar shards and nshards.txt) scores exactly as the same images laid out as class folders, in
zeroshot_eval.py, linear_probe.py, eval_suite.py and an `eval:` task, whichever rank reads which block; a broken
layout is one line naming the file."""
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

import eval_suite
import linear_probe
import zeroshot_eval
from dataloader.eval.eval_datasets import read_eval_set
from dataloader.eval.splits import plan_splits
from evaluation.during_training import build_evaluator
from evaluation.eval_config import EvalConfig
from evaluation.shard import Shard
from evaluation.zeroshot import zero_shot_scores
from model import build_model, load_model, model_config_by_name
from trainer.trainer import evaluation_mode
from utils.checkpoint import save_checkpoint_atomic
from utils.config import build
from utils.distributed import DistributedContext
from utils.errors import UserError
from utils.seeding import seed_everything

CLASS_NAMES = ["apple", "boat", "cloud"]  # sorted, so that the folder layout labels them alike
TEMPLATES = ["a photo of a {c}.", "a blurry photo of the {c}."]
FORMATS = {"png": {"format": "PNG"}, "webp": {"format": "WEBP", "lossless": True}, "jpg": {"format": "JPEG"}}
PER_CLASS = 4  # images per class and split, spread over two shards
COMMON = ["--batch_size", "5", "--num_workers", "0", "--device", "cpu", "--precision", "fp32", "--dataset", "shapes"]


def image_bytes(seed: int, extension: str) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (20 + seed % 7, 24, 3), generator=generator, dtype=torch.uint8).numpy()
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, **FORMATS[extension])
    return stream.getvalue()


def split_samples(split: str) -> list[tuple[str, int, str, bytes]]:
    """(key, label, extension, bytes), class by class; the test split's last image is not an image at all."""
    samples = []
    for label in range(len(CLASS_NAMES)):
        for copy in range(PER_CLASS):
            index = len(samples)
            extension = list(FORMATS)[index % len(FORMATS)]
            samples.append((f"{split}{index:05d}", label, extension,
                            image_bytes(index + 100 * (split == "test"), extension)))
    if split == "test":
        key, label, extension, _ = samples[-1]
        samples[-1] = (key, label, extension, b"not an image")
    return samples


def add_member(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))


def write_shards(split_dir: Path, samples: list, num_shards: int = 2) -> None:
    split_dir.mkdir(parents=True)
    per_shard = -(-len(samples) // num_shards)
    for number in range(num_shards):
        with tarfile.open(split_dir / f"{number}.tar", "w") as tar:
            for key, label, extension, content in samples[number * per_shard:(number + 1) * per_shard]:
                add_member(tar, f"{key}.{extension}", content)
                add_member(tar, f"{key}.cls", str(label).encode())
    (split_dir / "nshards.txt").write_text(f"{num_shards}\n")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """The same images twice: a wds set (train/, test/) and class folders (train/<class>/, test/<class>/)."""
    root = tmp_path_factory.mktemp("sets")
    wds_dir = root / "wds_shapes"
    wds_dir.mkdir()
    (wds_dir / "classnames.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (wds_dir / "zeroshot_classification_templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    for split in ("train", "test"):
        samples = split_samples(split)
        write_shards(wds_dir / split, samples)
        for key, label, extension, content in samples:
            path = root / "folders" / split / CLASS_NAMES[label] / f"{key}.{extension}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    templates = root / "templates.txt"
    templates.write_text("\n".join(template.replace("{c}", "{}") for template in TEMPLATES) + "\n")
    seed_everything(2)  # a random tiny model whose zero-shot guesses differ between images: a label mix-up shows
    model = build_model(model_config_by_name("tiny-vit"))
    checkpoint = root / "model.pt"
    save_checkpoint_atomic({"model": model.state_dict(), "model_config": vars(model.config)}, checkpoint)
    return {"wds": wds_dir, "folders": root / "folders", "templates": templates, "checkpoint": str(checkpoint)}


def without(report: dict, *keys) -> dict:
    return {key: value for key, value in report.items() if key not in keys}


def test_zero_shot_equals_the_class_folders(sets, tmp_path):
    common = ["--checkpoint_path", sets["checkpoint"], *COMMON, "--no-channels_last"]
    assert zeroshot_eval.main(common + ["--dataset_type", "wds", "--data_dir", str(sets["wds"]),
                                        "--output_dir", str(tmp_path / "wds")]) == 0
    assert zeroshot_eval.main(common + ["--dataset_type", "folder", "--data_dir", str(sets["folders"] / "test"),
                                        "--templates", str(sets["templates"]),
                                        "--output_dir", str(tmp_path / "folder")]) == 0
    wds = json.loads((tmp_path / "wds" / "shapes.json").read_text())
    folder = json.loads((tmp_path / "folder" / "shapes.json").read_text())
    assert wds["num_images"] == folder["num_images"] == 11
    assert wds["num_unreadable_images"] == folder["num_unreadable_images"] == 1
    assert wds["templates"] == {"name": "zeroshot_classification_templates.txt", "count": 2}
    assert without(wds, "dataset_type", "data_dir", "templates", "images_per_second") == \
        without(folder, "dataset_type", "data_dir", "templates", "images_per_second")
    assert [entry["name"] for entry in wds["per_class"]] == CLASS_NAMES


def test_each_rank_reads_its_own_block_of_the_shards(sets):
    model, preprocess = load_model(sets["checkpoint"])
    eval_set = read_eval_set("wds", sets["wds"], preprocess, min_side=model.config.image_size)
    templates = [template.replace("{c}", "{}") for template in TEMPLATES]
    (whole,), unreadable = zero_shot_scores(model, eval_set, [templates], "cpu", batch_size=5, progress=False)
    blocks = [zero_shot_scores(model, eval_set, [templates], "cpu", batch_size=5, progress=False,
                               shard=Shard(rank, 2)) for rank in range(2)]
    assert [result.num_images for (result,), _ in blocks] == [6, 5]
    assert sum(len(missed) for _, missed in blocks) == len(unreadable) == 1
    def counts(score):  # (images, top-1 hits, top-5 hits) of a class
        return torch.tensor([score.images, round(score.images * (score.top1 or 0) / 100),
                             round(score.images * (score.top5 or 0) / 100)])

    per_class = [sum(counts(result.per_class[label]) for (result,), _ in blocks).tolist() for label in range(3)]
    assert per_class == [counts(score).tolist() for score in whole.per_class]
    assert [images for images, _, _ in per_class] == [4, 4, 3]


def test_linear_probe_on_the_train_and_test_splits_equals_the_class_folders(sets, tmp_path):
    assert plan_splits("wds", sets["wds"], None).train_split == "train"
    common = ["--checkpoint_path", sets["checkpoint"], *COMMON, "--cache_dir", str(tmp_path / "cache")]
    assert linear_probe.main(common + ["--dataset_type", "wds", "--data_dir", str(sets["wds"]),
                                       "--output_dir", str(tmp_path / "wds")]) == 0
    assert linear_probe.main(common + ["--dataset_type", "folder", "--data_dir", str(sets["folders"] / "train"),
                                       "--test_dir", str(sets["folders"] / "test"), "--templates",
                                       str(sets["templates"]), "--output_dir", str(tmp_path / "folder")]) == 0
    wds = json.loads((tmp_path / "wds" / "shapes_linear_probe.json").read_text())
    folder = json.loads((tmp_path / "folder" / "shapes_linear_probe.json").read_text())
    assert wds["num_train_images"] == 12 and wds["num_images"] == 11
    assert without(wds, "dataset_type", "data_dir", "test_dir", "fit_seconds") == \
        without(folder, "dataset_type", "data_dir", "test_dir", "fit_seconds")


def suite_cells(output_dir: Path) -> dict:
    return {path.name.split("-")[0]: json.loads(path.read_text())
            for path in (output_dir / "cache" / "cells").glob("*.json")}


def test_eval_suite_cells_equal_the_class_folders(sets, tmp_path):
    """Zero-shot on the test split as on the test folder; the probe trains on train/ and tests on test/."""
    common = ["--checkpoints", f"tiny={sets['checkpoint']}", "--device", "cpu", "--precision", "fp32",
              "--num_workers", "0", "--batch_size", "5", "--no-progress"]
    assert eval_suite.main(common + ["--dataset_type", "wds", "--data_dir", str(sets["wds"]), "--tasks", "zeroshot",
                                     "linear_probe", "--output_dir", str(tmp_path / "wds")]) == 0
    assert eval_suite.main(common + ["--dataset_type", "folder", "--data_dir", str(sets["folders"] / "test"),
                                     "--templates", str(sets["templates"]), "--output_dir",
                                     str(tmp_path / "folder")]) == 0
    wds, folder = suite_cells(tmp_path / "wds"), suite_cells(tmp_path / "folder")
    assert wds["zeroshot"]["n_images"] == 11 and wds["zeroshot"]["num_unreadable"] == 1
    assert wds["zeroshot"] == folder["zeroshot"]
    assert wds["linear_probe"]["n_images"] == 11 and wds["linear_probe"]["error"] is None


def test_an_eval_task_scores_the_set_as_zeroshot_eval_does(sets, tmp_path):
    config = build(EvalConfig, {"batch_size": 5, "tasks": [
        {"kind": "zeroshot", "name": "shapes", "dataset_type": "wds", "data_dir": str(sets["wds"])}]}, "eval")
    model, _ = load_model(sets["checkpoint"])
    evaluator = build_evaluator(config, model.config, DistributedContext(0, 0, 1, torch.device("cpu")),
                                global_batch=4, channels_last=False)
    with evaluation_mode(model):
        metrics = evaluator(model, 1, "fp32")
    assert zeroshot_eval.main(["--checkpoint_path", sets["checkpoint"], *COMMON, "--no-channels_last",
                               "--dataset_type", "wds", "--data_dir", str(sets["wds"]),
                               "--output_dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "shapes.json").read_text())
    assert metrics == {f"shapes/{key}": report[key] for key in ("top1", "top5", "mean_per_class_recall")}
    with pytest.raises(UserError, match="'tasks\\[0\\].dataset_type' must be one of cifar | folder | imagenet | wds"):
        build(EvalConfig, {"tasks": [{"kind": "zeroshot", "name": "x", "dataset_type": "webdataset",
                                      "data_dir": "x"}]}, "eval")


def broken_set(root: Path, damage) -> Path:
    """A one-shard test split of two samples, then `damage(folder)`."""
    folder = root / "wds_broken"
    folder.mkdir()
    (folder / "classnames.txt").write_text("apple\nboat\n")
    write_shards(folder / "test", [("s0", 0, "png", image_bytes(0, "png")), ("s1", 1, "png", image_bytes(1, "png"))],
                 num_shards=1)
    damage(folder)
    return folder


def rewrite_shard(folder: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(folder / "test" / "0.tar", "w") as tar:
        for name, content in members.items():
            add_member(tar, name, content)


@pytest.mark.parametrize("damage, split, message", [
    (lambda folder: None, "train", "{folder} has no train/ split folder (it has: test)"),
    (lambda folder: (folder / "test" / "nshards.txt").unlink(), "test",
     "{folder}/test/nshards.txt not found: it holds the number of shards"),
    (lambda folder: (folder / "test" / "nshards.txt").write_text("3\n"), "test",
     "{folder}/test/1.tar not found: {folder}/test/nshards.txt says 3 shard(s), 0.tar ... 2.tar"),
    (lambda folder: (folder / "test" / "nshards.txt").write_text("two\n"), "test",
     "{folder}/test/nshards.txt: expected the number of shards, found 'two'"),
    (lambda folder: (folder / "classnames.txt").unlink(), "test",
     "{folder}/classnames.txt not found: a webdataset classification set lists its class names there"),
    (lambda folder: rewrite_shard(folder, {"s0.png": image_bytes(0, "png")}), "test",
     "{folder}/test/0.tar: sample 's0' has no .cls label (it holds: png)"),
    (lambda folder: rewrite_shard(folder, {"s0.txt": b"a caption", "s0.cls": b"1"}), "test",
     "{folder}/test/0.tar: sample 's0' has no image (webp, png, jpg, jpeg; it holds: cls, txt)"),
    (lambda folder: rewrite_shard(folder, {"s0.png": image_bytes(0, "png"), "s0.cls": b"2"}), "test",
     "{folder}/test/0.tar: sample 's0' has the label 2, outside the 2 classes of {folder}/classnames.txt (0 ... 1)"),
    (lambda folder: rewrite_shard(folder, {"s0.png": image_bytes(0, "png"), "s0.cls": b"boat"}), "test",
     "{folder}/test/0.tar: sample 's0' has the label 'boat', not an integer"),
    (lambda folder: (folder / "test" / "0.tar").write_bytes(b"not a tar" * 100), "test",
     "cannot read shard {folder}/test/0.tar"),
    (lambda folder: (folder / "test" / "0.tar").write_text("version https://git-lfs.github.com/spec/v1\n"), "test",
     "{folder}/test/0.tar is a Git LFS pointer, not the shard"),
    (lambda folder: (folder / "dataset_type.txt").write_text("retrieval\n"), "test",
     "{folder}/dataset_type.txt says 'retrieval': --dataset_type wds reads classification sets only"),
])
def test_a_broken_layout_is_one_line_naming_the_file(tmp_path, damage, split, message):
    folder = broken_set(tmp_path, damage)
    with pytest.raises(UserError) as error:
        read_eval_set("wds", folder, lambda image: image, split=split)
    assert str(error.value).startswith(message.format(folder=folder)) and "\n" not in str(error.value)


def test_a_script_reports_a_broken_layout_in_one_line_and_exit_2(tmp_path, capsys):
    folder = broken_set(tmp_path, lambda folder: (folder / "classnames.txt").unlink())
    assert zeroshot_eval.main(["--checkpoint_path", "tiny-vit", *COMMON, "--dataset_type", "wds",
                               "--data_dir", str(folder), "--output_dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {folder}/classnames.txt not found")
