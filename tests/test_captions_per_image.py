"""data.captions_per_image: each image comes with m captions, all of them its positives. CLIP's and SigLIP's
losses equal a hand computation on 3 images x 2 captions (with and without duplicates taken as positives); m copies
of one caption give plain CLIP's gradients; with 2 captions per image, duplicates taken as positives change CLIP's
loss and gradients (with one they do not); each distinct caption of a batch is encoded once; two gloo ranks of two
micro-batches each equal one process on the whole batch; the key's bad values and combinations are refused naming
it; train.py trains with it."""
import json
import math

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from caption_fixtures import caption_rows, write_csv, write_images
from dataloader.config import DataConfig
from gloo_ranks import free_port, gloo_process_group
from gradient_checks import assert_same_gradients, gradients
from loss.clip import ClipLoss
from loss.siglip import SigLipLoss
from model import build_model, model_config_by_name
from trainer.objectives import ContrastiveObjective
from training_runs import IMAGES, run, train_data_command
from utils.distributed import all_reduce_mean
from utils.tokenizer import tokenize, trim_padding

CONTEXT_LENGTH = model_config_by_name("tiny-vit").context_length
IMAGE_SIDE = model_config_by_name("tiny-vit").image_size
CPU = torch.device("cpu")
NO_SCALING = torch.amp.GradScaler("cpu", enabled=False)
# Image i's captions are texts 2i and 2i + 1.
OWN = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.float)
# Text 4 (image 2's first) is word for word text 1 (image 0's second): with duplicates positive it is image 0's too,
# and text 1 is image 2's.
CAPTIONS = ["a cat", "a cat on a mat", "a dog", "a dog running", "a cat on a mat", "a bird"]
OWN_OR_IDENTICAL = torch.tensor([[1, 1, 0, 0, 1, 0], [0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 1, 1]], dtype=torch.float)


def unit_features(images: int, texts: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (F.normalize(torch.randn(images, 8, generator=generator), dim=-1),
            F.normalize(torch.randn(texts, 8, generator=generator), dim=-1))


def hand_clip_loss(images, texts, scale, positives):
    """Image i's target shared equally among its positive texts; each text's among its positive images."""
    logits = scale * images @ texts.T
    image_to_text = -(positives / positives.sum(1, keepdim=True) * logits.log_softmax(dim=1)).sum(1).mean()
    text_to_image = -(positives.T / positives.T.sum(1, keepdim=True) * logits.T.log_softmax(dim=1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


@pytest.mark.parametrize("duplicates", [False, True])
def test_clip_loss_equals_hand_computation(duplicates):
    images, texts = unit_features(3, 6)
    scale = torch.tensor(3.0)
    captions = tokenize(CAPTIONS, CONTEXT_LENGTH) if duplicates else None
    expected = hand_clip_loss(images, texts, scale, OWN_OR_IDENTICAL if duplicates else OWN)
    for local_loss in (False, True):
        torch.testing.assert_close(ClipLoss(local_loss)(images, texts, scale, captions=captions), expected)


@pytest.mark.parametrize("duplicates", [False, True])
def test_siglip_loss_equals_hand_computation(duplicates):
    images, texts = unit_features(3, 6)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    signs = (OWN_OR_IDENTICAL if duplicates else OWN) * 2 - 1
    expected = -F.logsigmoid(signs * (scale * images @ texts.T + bias)).sum() / 3
    captions = tokenize(CAPTIONS, CONTEXT_LENGTH) if duplicates else None
    torch.testing.assert_close(SigLipLoss()(images, texts, scale, bias, captions=captions), expected)


def test_text_rows_that_are_not_whole_captions_per_image_are_refused():
    images, texts = unit_features(3, 5)
    with pytest.raises(ValueError, match="5 text rows do not make a whole number of captions for each of 3 images"):
        ClipLoss()(images, texts, torch.tensor(1.0))


def batch_of(captions: list[str], per_image: int) -> dict:
    """Images and their captions as the loader gives them: image-major rows, cut after the longest caption."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(len(captions) // per_image, 3, IMAGE_SIDE, IMAGE_SIDE, generator=generator)
    return {"images": images, "tokens": trim_padding(tokenize(captions, CONTEXT_LENGTH))}


def fresh_model(loss_kind: str = "clip"):
    torch.manual_seed(0)
    return build_model(model_config_by_name("tiny-vit", {"sigmoid_logits": loss_kind == "siglip"}))


def test_copies_of_one_caption_are_plain_clip_in_gradients_and_loss_but_for_a_constant():
    """m identical texts have equal logits, so each gets 1/m of what the one text's softmax gave it: image→text
    cross-entropy grows by the constant log m, and their m text→image rows are one row m times over."""
    captions = ["a cat", "a dog on the grass", "a red car", "a bird"]
    results = []
    for per_image in (1, 3):
        model = fresh_model()
        batch = batch_of([caption for caption in captions for _ in range(per_image)], per_image)
        loss = ContrastiveObjective(captions_per_image=per_image).loss(model, batch, CPU, "fp32")
        loss.backward()
        results.append((loss.detach(), gradients(model)))
    torch.testing.assert_close(results[1][0], results[0][0] + math.log(3) / 2, rtol=1e-6, atol=0)
    assert_same_gradients(results[1][1], results[0][1])


def test_duplicates_taken_as_positives_change_clip_with_two_captions_per_image():
    """With one caption per image they leave CLIP's loss and gradients as they were (test_duplicate_captions);
    with two they do not. Image 0's target, half on each of its captions, becomes a third on each of texts 0, 1 and
    4, and texts 1 and 4 are one caption with equal logits: it gets two thirds instead of a half (image 2 alike)."""
    results = {}
    for duplicates in ("negative", "positive"):
        model = fresh_model()
        objective = ContrastiveObjective(duplicate_captions=duplicates, captions_per_image=2)
        loss = objective.loss(model, batch_of(CAPTIONS, 2), CPU, "fp32")
        loss.backward()
        results[duplicates] = loss.detach(), gradients(model)
    assert abs(results["positive"][0] - results["negative"][0]) > 1e-3
    with pytest.raises(AssertionError, match="not close"):  # the yardstick that finds them equal at one caption
        assert_same_gradients(results["positive"][1], results["negative"][1])


def test_each_distinct_caption_is_encoded_once_with_the_loss_of_every_row_encoded():
    captions = ["a cat", "a cat", "a cat", "a dog", "a red car", "a dog", "a bird", "a bird", "a bird", "a cat",
                "a ship", "a dog"]  # 4 images x 3 captions, 5 distinct
    model, batch = fresh_model(), batch_of(captions, 3)
    encoded_rows = []
    encode_text = model.encode_text
    model.encode_text = lambda tokens: encoded_rows.append(len(tokens)) or encode_text(tokens)
    loss = ContrastiveObjective(captions_per_image=3).loss(model, batch, CPU, "fp32")
    assert encoded_rows == [5]
    torch.testing.assert_close(loss, ClipLoss()(*model(batch["images"], batch["tokens"])), rtol=1e-6, atol=0)


# 8 images x 2 captions; the caption of row 1 (image 0) returns at row 11 (image 5, the other rank's) and row 3's
# (image 1, rank 0's first micro-batch) at row 4 (image 2, its second).
RANK_CAPTIONS = ["a cat", "a cat on a mat", "a dog", "a dog on the grass", "a dog on the grass", "a red car",
                 "a bird in a tree", "a ship at sea", "two people walking", "a man with a hat", "a cat on a mat",
                 "a plate of food", "a train at the station", "a boat", "a long road by the sea", "a clock"]
PER_IMAGE, RANKS, MICRO_BATCHES = 2, 2, 2


def halves(batch: dict, parts: int) -> list[dict]:
    """The batch in `parts` equal runs of images with their captions, each trimmed on its own as a rank's or a
    micro-batch's is."""
    images = len(batch["images"]) // parts
    return [{"images": batch["images"][part * images:(part + 1) * images],
             "tokens": trim_padding(batch["tokens"][part * images * PER_IMAGE:(part + 1) * images * PER_IMAGE])}
            for part in range(parts)]


def objective(loss_kind: str, local_loss: bool = False) -> ContrastiveObjective:
    return ContrastiveObjective(loss_kind, local_loss, "positive", captions_per_image=PER_IMAGE)


def run_rank(rank, world_size, port, loss_kind, local_loss, out_path):
    with gloo_process_group(rank, world_size, port):
        torch.set_num_threads(1)
        model = DistributedDataParallel(fresh_model(loss_kind))
        own = halves(batch_of(RANK_CAPTIONS, PER_IMAGE), world_size)[rank]
        loss = objective(loss_kind, local_loss).accumulate_gradients(model, halves(own, MICRO_BATCHES), NO_SCALING,
                                                                    CPU, "fp32")
        loss = all_reduce_mean(loss)
        if rank == 0:
            torch.save({"loss": loss, "gradients": gradients(model)}, out_path)


@pytest.mark.parametrize("loss_kind, local_loss", [("clip", False), ("clip", True), ("siglip", False)])
def test_two_ranks_of_two_micro_batches_equal_one_process(tmp_path, loss_kind, local_loss):
    mp.spawn(run_rank, args=(RANKS, free_port(), loss_kind, local_loss, tmp_path / "rank0.pt"), nprocs=RANKS,
             join=True)
    two_ranks = torch.load(tmp_path / "rank0.pt", weights_only=True)
    model = fresh_model(loss_kind)
    loss = objective(loss_kind).loss(model, batch_of(RANK_CAPTIONS, PER_IMAGE), CPU, "fp32")
    loss.backward()
    torch.testing.assert_close(two_ranks["loss"], loss.detach(), rtol=1e-5, atol=0)
    assert_same_gradients(two_ranks["gradients"], gradients(model))


def test_bad_values_and_combinations_are_refused_naming_the_key():
    with pytest.raises(ValueError, match="captions_per_image must be at least 1, got 0"):
        DataConfig(captions_per_image=0)
    with pytest.raises(ValueError, match="captions_per_image=2 draws several .* all_captions .*: set one of them"):
        DataConfig(captions_per_image=2, all_captions=True)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("table")
    write_images(root / "images", IMAGES)
    return write_csv(root / "train.csv", caption_rows(IMAGES, 3, prefix="images/"))


def test_train_py_trains_on_several_captions_per_image(table, tmp_path):
    result = run(train_data_command(table, tmp_path, "data.captions_per_image=2", "train.epochs=1"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["samples_seen"] == IMAGES and summary["final_loss"] > 0
