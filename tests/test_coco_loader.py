"""The COCO training loader on real files: a captions JSON and JPEG/PNG images written in tmp_path."""
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataloader.config import DEFAULTS_FILE, DataConfig
from dataloader.image_io import load_rgb_image
from dataloader.train.train_data import build_train_loader
from utils.config import build, read_yaml
from utils.errors import UserError
from utils.tokenizer import tokenize

IMAGE_SIZE, CONTEXT = 16, 12
RED_STEP = 14  # image n is red level 20 + n * RED_STEP: the image is identified from its pixels


def red_level(n):
    return 20 + n * RED_STEP


def make_coco(root, num_images, captions_per_image=3, missing=(), corrupt=()):
    """COCO captions on disk: image n has COCO id 1000 + n, red level red_level(n) with a grey checkerboard (so
    crops differ), and captions 'image n caption k'. Images in `missing` are listed but not written; those in
    `corrupt` are JPEGs cut to half their bytes."""
    image_dir = root / "train2017"
    image_dir.mkdir(parents=True)
    images, annotations = [], []
    for n in range(num_images):
        file_name = f"{1000 + n:012d}." + ("png" if n % 3 == 2 else "jpg")
        height, width = (30, 40) if n % 2 else (40, 30)
        y, x = np.mgrid[:height, :width]
        checker = (y // 4 + x // 4) % 2 * 24 - 12
        pixels = (np.array([red_level(n), 120, 90]) + checker[..., None]).astype(np.uint8)
        images.append({"id": 1000 + n, "file_name": file_name, "width": width, "height": height})
        annotations += [{"id": 10 * n + k, "image_id": 1000 + n, "caption": f"image {n} caption {k}"}
                        for k in range(captions_per_image)]
        if n in missing:
            continue
        Image.fromarray(pixels).save(image_dir / file_name, quality=95)
        if n in corrupt:
            path = image_dir / file_name
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
            with pytest.raises(OSError):
                load_rgb_image(path, IMAGE_SIZE)
    annotation_file = root / "annotations" / "captions_train2017.json"
    annotation_file.parent.mkdir()
    annotation_file.write_text(json.dumps({"info": {"description": "test"}, "images": images,
                                           "annotations": annotations}))
    return DataConfig(train_img_dir=str(image_dir), train_annotation_file=str(annotation_file), num_workers=0)


def loader(config, batch_size=2, rank=0, world_size=1, seed=0, **changes):
    config = DataConfig(**{**config.__dict__, **changes})
    return build_train_loader(config, image_size=IMAGE_SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                              context_length=CONTEXT, batch_size=batch_size, rank=rank, world_size=world_size,
                              seed=seed, pin_memory=False)


def image_numbers(images):
    """Which fixture image each tensor shows, from its mean red level (the checkerboard averages out)."""
    red = images[:, 0].mean(dim=(1, 2)) * 255
    return ((red - 20) / RED_STEP).round().long().tolist()


def full_context(tokens):
    """A batch's token rows padded back to the context length (the loader cuts the padding after the longest)."""
    return torch.nn.functional.pad(tokens, (0, CONTEXT - tokens.shape[-1]))


def caption_tokens(n, captions_per_image):
    return [tokenize(f"image {n} caption {k}", CONTEXT)[0] for k in range(captions_per_image)]


def test_default_yaml_holds_every_key_with_the_dataclass_defaults():
    assert build(DataConfig, read_yaml(DEFAULTS_FILE), str(DEFAULTS_FILE)) == DataConfig()
    assert set(read_yaml(DEFAULTS_FILE)) == set(DataConfig().__dict__)


def test_batches_have_the_contracted_shapes_and_types(tmp_path):
    batch = next(loader(make_coco(tmp_path, 4), batch_size=2).epoch(0))
    assert set(batch) == {"images", "tokens", "skipped"}
    assert batch["images"].shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE) and batch["images"].dtype == torch.float32
    used = int(batch["tokens"].ne(0).any(dim=0).nonzero().max()) + 1  # cut after the longest, to a multiple of 8
    assert batch["tokens"].shape == (2, min(-(-used // 8) * 8, CONTEXT)) and batch["tokens"].dtype == torch.long
    assert batch["skipped"] == 0 and isinstance(batch["skipped"], int)


def test_every_image_once_per_epoch_over_two_ranks(tmp_path):
    config = make_coco(tmp_path, 16)
    ranks = [loader(config, batch_size=2, rank=rank, world_size=2) for rank in range(2)]
    assert [len(rank) for rank in ranks] == [4, 4] and ranks[0].num_samples == 16
    orders = []
    for epoch in range(2):
        seen = [[n for batch in rank.epoch(epoch) for n in image_numbers(batch["images"])] for rank in ranks]
        assert len(seen[0]) == len(seen[1]) == 8
        assert sorted(seen[0] + seen[1]) == list(range(16))
        orders.append(seen)
    assert orders[0] != orders[1]


def test_same_seed_and_epoch_give_identical_batches_and_resuming_gives_the_tail(tmp_path):
    config = make_coco(tmp_path, 12)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    workers_loader = loader(config, batch_size=2, num_workers=2)
    next(iter(workers_loader.epoch(3)))  # an abandoned pass leaves nothing behind in the persistent workers
    with_workers = list(workers_loader.epoch(3))
    in_process = loader(config, batch_size=2)
    again = list(in_process.epoch(3))
    assert torch.equal(torch.get_rng_state(), torch_state) and np.array_equal(np.random.get_state()[1], numpy_state)
    assert len(with_workers) == len(again) == 6
    for first, second in zip(with_workers, again):
        assert torch.equal(first["images"], second["images"]) and torch.equal(first["tokens"], second["tokens"])
        assert first["skipped"] == second["skipped"]
    for start in (1, 5):
        resumed = list(in_process.epoch(3, start_batch=start))
        assert len(resumed) == 6 - start
        assert all(torch.equal(a["images"], b["images"]) and torch.equal(a["tokens"], b["tokens"])
                   for a, b in zip(resumed, again[start:]))
    other_seed = list(loader(config, batch_size=2, seed=1).epoch(3))
    assert not all(torch.equal(a["images"], b["images"]) for a, b in zip(other_seed, again))


def test_resuming_decodes_nothing_before_start_batch(tmp_path, monkeypatch):
    import dataloader.train.transforms
    decoded = []
    monkeypatch.setattr(dataloader.train.transforms, "load_rgb_image",
                        lambda path, min_side: decoded.append(path) or load_rgb_image(path, min_side))
    train_loader = loader(make_coco(tmp_path, 8), batch_size=2, memory_cache_mb=0)  # read from disk
    assert len(list(train_loader.epoch(0, start_batch=3))) == 1
    assert len(decoded) == 2


def test_captions_vary_across_epochs_and_belong_to_their_image(tmp_path):
    train_loader = loader(make_coco(tmp_path, 8, captions_per_image=4), batch_size=4)
    drawn = {n: set() for n in range(8)}
    crops = {n: set() for n in range(8)}
    for epoch in range(6):
        for batch in train_loader.epoch(epoch):
            for n, tokens, image in zip(image_numbers(batch["images"]), full_context(batch["tokens"]),
                                        batch["images"]):
                matches = [k for k, expected in enumerate(caption_tokens(n, 4)) if torch.equal(tokens, expected)]
                assert len(matches) == 1, f"tokens of image {n} are not one of its captions"
                drawn[n].add(matches[0])
                crops[n].add(image.numpy().tobytes())
    assert sum(len(captions) for captions in drawn.values()) >= 2 * 8  # a fixed caption would give 8
    assert all(len(variants) > 1 for variants in crops.values())  # random crops differ between epochs


def test_all_captions_mode_shows_every_caption_once(tmp_path):
    train_loader = loader(make_coco(tmp_path, 6, captions_per_image=2), batch_size=3, all_captions=True)
    assert len(train_loader) == 4 and train_loader.num_samples == 12
    seen = [(n, tokens) for batch in train_loader.epoch(0)
            for n, tokens in zip(image_numbers(batch["images"]), full_context(batch["tokens"]))]
    for n in range(6):
        mine = [tokens for image, tokens in seen if image == n]
        expected = caption_tokens(n, 2)
        assert len(mine) == 2 and any(torch.equal(mine[0], e) for e in expected)
        assert sorted(t.tolist() for t in mine) == sorted(t.tolist() for t in expected)


@pytest.mark.parametrize("memory_cache_mb", [0, 64])
def test_several_captions_per_image_come_together_each_once_before_any_repeats(tmp_path, memory_cache_mb):
    config = make_coco(tmp_path, 6, captions_per_image=3, corrupt={4})
    for per_image in (2, 5):
        train_loader = loader(config, batch_size=3, captions_per_image=per_image, memory_cache_mb=memory_cache_mb)
        drawn = set()
        for epoch in range(3):
            for batch in train_loader.epoch(epoch):
                assert batch["tokens"].shape[0] == 3 * per_image  # image-major: image i's are rows i·m .. i·m + m-1
                rows = full_context(batch["tokens"]).view(3, per_image, -1)
                for n, captions in zip(image_numbers(batch["images"]), rows):
                    numbers = [next(k for k, own in enumerate(caption_tokens(n, 3)) if torch.equal(tokens, own))
                               for tokens in captions]
                    assert numbers[3:] == numbers[:max(per_image - 3, 0)]  # all three, then the same order again
                    assert len(set(numbers)) == min(per_image, 3)
                    drawn.add((n, tuple(numbers)))
        assert len(drawn) > 5  # drawn anew each epoch, not a fixed choice per image


def test_a_placeholder_sample_has_every_caption_row(tmp_path):
    config = make_coco(tmp_path, 4, corrupt={1})
    dataset = loader(config, batch_size=2, captions_per_image=2, strict_images=True)._loader.dataset
    image, tokens = dataset.placeholder()
    assert tokens.shape == (2, CONTEXT) and image.shape == (3, IMAGE_SIZE, IMAGE_SIZE)


@pytest.mark.parametrize("memory_cache_mb", [0, 64])
def test_the_augmentation_keys_reach_the_loader(tmp_path, memory_cache_mb):
    config = make_coco(tmp_path, 4, captions_per_image=1)
    captions_file = Path(config.train_annotation_file)
    annotations = json.loads(captions_file.read_text())
    for annotation in annotations["annotations"]:  # "image n on the left 0"
        annotation["caption"] = annotation["caption"].replace("caption", "on the left")
    captions_file.write_text(json.dumps(annotations))

    def first_batch(**changes):
        return next(loader(config, batch_size=4, memory_cache_mb=memory_cache_mb, horizontal_flip=1.0,
                           random_crop_max_aspect=1.5, color_jitter=0.3, **changes).epoch(0))
    swapped, unflipped = first_batch(sided_captions="swap"), first_batch(sided_captions="no_flip")
    right = tokenize("right", CONTEXT)[0][1]
    assert (swapped["tokens"] == right).any(dim=1).all() and not (unflipped["tokens"] == right).any()
    # the same draws, mirrored (up to the rounding of the jitter's mean grey, summed in another order)
    assert torch.allclose(swapped["images"], unflipped["images"].flip(3), atol=1e-5)
    assert not torch.allclose(swapped["images"], unflipped["images"], atol=1e-2)
    plain = next(loader(config, batch_size=4, memory_cache_mb=memory_cache_mb).epoch(0))
    assert not torch.equal(plain["images"], unflipped["images"])  # stretched and jittered


def test_missing_image_is_left_out_and_corrupt_one_replaced_and_counted(tmp_path, caplog):
    config = make_coco(tmp_path, 10, missing={3}, corrupt={6})
    with caplog.at_level(logging.WARNING):
        train_loader = loader(config, batch_size=3, num_workers=2)
        assert train_loader.skipped_at_start == [str(tmp_path / "train2017" / "000000001003.jpg")]
        assert train_loader.num_samples == 9  # 8 readable + 1 corrupt, replaced when drawn
        batches = list(train_loader.epoch(0))
    assert sum(int(batch["skipped"]) for batch in batches) == 1
    seen = [n for batch in batches for n in image_numbers(batch["images"])]
    assert 3 not in seen and 6 not in seen and len(seen) == 9
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2 and "1 images" in warnings[0] and "000000001003.jpg" in warnings[0]
    assert "000000001006.jpg" in warnings[1]


def test_strict_mode_stops_at_a_missing_or_corrupt_image_with_its_name(tmp_path):
    with pytest.raises(UserError, match=r"000000001003\.jpg: image listed in .* is missing"):
        loader(make_coco(tmp_path / "a", 6, missing={3}), strict_images=True)
    strict = loader(make_coco(tmp_path / "b", 6, corrupt={4}), batch_size=6, num_workers=2, strict_images=True)
    with pytest.raises(UserError) as error:
        list(strict.epoch(0))
    assert str(error.value).startswith(str(tmp_path / "b" / "train2017" / "000000001004.jpg") + ": cannot read")
    assert "\n" not in str(error.value)


def test_missing_files_and_bad_json_are_one_line_errors_with_the_fix(tmp_path):
    config = make_coco(tmp_path, 2)
    annotation_file = tmp_path / "annotations" / "captions_train2017.json"
    with pytest.raises(UserError, match=r"COCO captions file not found: .*nothing\.json; .*annotations_trainval2017"
                                        r"\.zip .*unzip annotations_trainval2017\.zip -d data/coco"):
        loader(config, train_annotation_file=str(tmp_path / "nothing.json"))
    with pytest.raises(UserError, match=r"COCO image folder not found: .*nowhere; .*zips/train2017\.zip"):
        loader(config, train_img_dir=str(tmp_path / "nowhere"))
    (tmp_path / "val2017").mkdir()
    with pytest.raises(UserError, match=r"captions_train2017\.json: none of its 2 captioned images is on disk \(first expected: .*val2017"):
        loader(config, train_img_dir=str(tmp_path / "val2017"))
    data = json.loads(annotation_file.read_text())
    cases = {
        "no_annotations.json": ({"images": data["images"]}, r"no_annotations\.json: no 'annotations' list"),
        "no_caption.json": ({"images": data["images"], "annotations": [{"id": 1, "image_id": 1000, "bbox": []}]},
                            r"no_caption\.json: annotations\[0\] has no 'caption' key"),
        "bad_image_id.json": ({"images": data["images"], "annotations": [{"id": 1, "image_id": 7, "caption": "x"}]},
                              r"bad_image_id\.json: annotations\[0\] refers to image_id 7"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(UserError, match=message):
            loader(config, train_annotation_file=str(tmp_path / name))
    (tmp_path / "cut.json").write_text(annotation_file.read_text()[:50])
    with pytest.raises(UserError, match=r"cut\.json: not a valid JSON file"):
        loader(config, train_annotation_file=str(tmp_path / "cut.json"))


def test_pycocotools_progress_is_not_printed(tmp_path, capsys):
    loader(make_coco(tmp_path, 2))
    assert capsys.readouterr().out == ""
