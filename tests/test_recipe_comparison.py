"""The recipe comparison prepares its caption set from the development sets' on-disk layouts (a COCO-format
captions file, class-per-folder splits) and trains, scores and tabulates an arm through train.py."""
import csv
import json

import numpy as np
from PIL import Image

from experiments import caption_set, open_clip_baseline, recipe_comparison

CLASSES = {"flowers102": ["sweet_pea", "rose"], "clothing10": ["hat", "t-shirt"]}


def write_jpeg(path, seed: int, size=(120, 90)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def development_sets(root, flickr_images: int = 6):
    images = [{"id": index + 1, "file_name": f"{index:04d}.jpg"} for index in range(flickr_images)]
    for image in images:
        write_jpeg(root / "flickr8k_1k" / "images" / image["file_name"], image["id"], size=(500, 375))
    captions = [{"id": 5 * image["id"] + k, "image_id": image["id"], "caption": f"a dog number {image['id']} ."}
                for image in images for k in range(2)]
    (root / "flickr8k_1k" / "captions.json").write_text(json.dumps({"images": images, "annotations": captions}))
    for dataset, classes in CLASSES.items():
        for split, count in (("train", 3), ("test", 2)):
            for label, name in enumerate(classes):
                for index in range(count):
                    write_jpeg(root / dataset / split / name / f"{index}.jpg", 100 * label + index)


def test_prepare_shrinks_images_writes_captions_and_holds_out_the_last_flickr_images(tmp_path, monkeypatch):
    monkeypatch.setattr(caption_set, "HELD_OUT_FLICKR", 2)
    development_sets(tmp_path / "dev")
    paths = caption_set.prepare(tmp_path / "dev", tmp_path / "work")
    with open(paths["train"], newline="") as file:
        rows = list(csv.DictReader(file))
    flickr_rows = [row for row in rows if row["filepath"].startswith("flickr/")]
    assert len(flickr_rows) == 4 * 2  # the first 4 of 6 images, 2 captions each
    assert ("flowers102/sweet_pea/0.jpg", "a sweet pea flower.") in {(row["filepath"], row["caption"]) for row in rows}
    assert len(rows) == 8 + 2 * 2 * 3 * 3  # + per set: 2 classes x 3 images x 3 templates
    held_out = json.loads(paths["retrieval"].read_text())
    assert [image["id"] for image in held_out["images"]] == [5, 6] and len(held_out["annotations"]) == 4
    assert sorted(path.name for path in paths["flowers102"].iterdir()) == ["rose", "sweet pea"]
    with Image.open(tmp_path / "work" / "flickr" / "0000.jpg") as image:
        assert min(image.size) == caption_set.IMAGE_SIDE
    with Image.open(tmp_path / "work" / "clothing10" / "hat" / "0.jpg") as image:
        assert image.size == (120, 90)  # never enlarged


def test_an_arm_trains_scores_and_is_tabulated_then_read_back_rather_than_rerun(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(caption_set, "HELD_OUT_FLICKR", 2)
    development_sets(tmp_path / "dev")
    argv = ["--devdata", str(tmp_path / "dev"), "--work", str(tmp_path / "work"), "--arms", "plain", "--epochs", "1",
            "train.batch_size=8", "model.overrides.image_size=32", "model.overrides.vision_patch_size=8"]
    recipe_comparison.main(argv)
    summary = tmp_path / "work" / "runs" / "plain" / "summary.json"
    final_eval = json.loads(summary.read_text())["final_eval"]
    assert {"flowers102/top1", "clothing10/top1", "flickr_held_out/image_to_text_r5"} <= set(final_eval)
    table = capsys.readouterr().out.splitlines()[-1]
    assert table.startswith("| plain | ") and f"{final_eval['flowers102/top1']:.1f}" in table
    written = summary.stat().st_mtime_ns
    recipe_comparison.main(argv)
    assert summary.stat().st_mtime_ns == written


def test_open_clips_trainer_runs_on_the_same_caption_set_and_our_evaluation_scores_it(tmp_path, monkeypatch):
    monkeypatch.setattr(caption_set, "HELD_OUT_FLICKR", 2)
    monkeypatch.setitem(caption_set.BASE, "train", {**caption_set.BASE["train"], "batch_size": 8})
    development_sets(tmp_path / "dev")
    caption_set.prepare(tmp_path / "dev", tmp_path / "work")
    open_clip_baseline.main(["--work", str(tmp_path / "work"), "--epochs", "2"])
    results = json.loads((tmp_path / "work" / "open_clip" / "results_2_epochs.json").read_text())
    assert set(results) == {key for key, _ in recipe_comparison.METRICS}
    # our 2 epochs of 16 images = 32 samples; open_clip samples its 44 caption rows (8 + 36): 1 epoch of them
    run = tmp_path / "work" / "open_clip" / "run_2_epochs"
    assert (run / "checkpoints" / "epoch_1.pt").exists()
    params = (run / "params.txt").read_text()
    assert "wd: 0.2" in params and "warmup: 1" in params  # its default decay; 20% of its 5 steps


def test_the_table_gives_each_metrics_mean_over_seeds_and_the_spread_of_their_means():
    keys = [key for key, _ in recipe_comparison.METRICS]
    first, second = dict(zip(keys, [40.0, 30.0, 20.0, 10.0])), dict(zip(keys, [30.0, 30.0, 10.0, 10.0]))
    row = recipe_comparison.table({"plain": [(first, 100.0), (second, 300.0)]}).splitlines()[-1]
    # means 35, 30, 15, 10 -> 22.5; the seeds' means 25 and 20 -> spread 5; wall time 200
    assert row == "| plain | 35.0 | 30.0 | 15.0 | 10.0 | 22.5 | 2 | 5.0 | 200 |"
