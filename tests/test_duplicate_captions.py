"""loss.duplicate_captions: with `positive`, identical captions of the global batch are positives of each other's
images (CLIP's targets shared among them, SigLIP's z = 1), as a hand computation on 4 pairs says; `negative` (the
default) is the plain loss, and so is `positive` on a batch without duplicates; two gloo ranks and two micro-batches
equal one process on the whole batch, duplicates spanning them; a value that is neither is refused naming the key."""

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from gloo_ranks import free_port, gloo_process_group
from gradient_checks import assert_same_gradients, gradients
from loss.clip import ClipLoss
from loss.siglip import SigLipLoss
from model import build_model, model_config_by_name
from trainer.config import TrainerConfig
from trainer.objectives import ContrastiveObjective
from utils.config import build
from utils.distributed import all_reduce_mean
from utils.errors import UserError
from utils.tokenizer import tokenize, trim_padding

CONTEXT_LENGTH = model_config_by_name("tiny-vit").context_length
IMAGE_SIDE = model_config_by_name("tiny-vit").image_size
IMAGE_VALUES = 3 * IMAGE_SIDE * IMAGE_SIDE
CPU = torch.device("cpu")
NO_SCALING = torch.amp.GradScaler("cpu", enabled=False)
# The same caption at rows 0, 2 and 4 (once the tokenizer has cleaned case and spaces) and at rows 1 and 5: each
# half of the batch (a rank's, a micro-batch's) shares captions with the other; row 3's length makes the first
# half's tokens wider once the padding after its longest caption is cut.
CAPTIONS = ["a photo of a cat.", "a dog on the grass", "A photo of a  CAT.", "a red car parked by the long road",
            "a photo of a cat.", "a dog on the grass", "a bird", "a ship at sea"]
DISTINCT_CAPTIONS = ["a photo of a cat.", "a dog on the grass", "a red car", "a bird"]
# Rows 0 and 2 of CAPTIONS[:4] are one caption: their images and texts are positives of each other.
SAME_CAPTION = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float)


def caption_tokens(captions: list[str]) -> torch.Tensor:
    return tokenize(captions, CONTEXT_LENGTH)


def unit_features(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return tuple(F.normalize(torch.randn(rows, 8, generator=generator), dim=-1) for _ in range(2))


def test_clip_positives_equal_hand_computation():
    images, texts = unit_features(4)
    scale = torch.tensor(3.0)
    logits = scale * images @ texts.T
    targets = SAME_CAPTION / SAME_CAPTION.sum(dim=1, keepdim=True)  # image 0: half on text 0, half on text 2
    image_to_text = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    text_to_image = -(targets * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    expected = (image_to_text + text_to_image) / 2
    for local_loss in (False, True):
        loss = ClipLoss(local_loss)(images, texts, scale, captions=caption_tokens(CAPTIONS[:4]))
        torch.testing.assert_close(loss, expected)


def test_siglip_positives_equal_hand_computation():
    images, texts = unit_features(4)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    signs = SAME_CAPTION * 2 - 1  # z = +1 for every pair with identical captions, -1 for the others
    expected = -F.logsigmoid(signs * (scale * images @ texts.T + bias)).sum() / 4
    loss = SigLipLoss()(images, texts, scale, bias, captions=caption_tokens(CAPTIONS[:4]))
    torch.testing.assert_close(loss, expected)


def batch_of(captions: list[str]) -> dict:
    """Images and captions as the loader gives them: token columns cut after the longest caption."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(len(captions), 3, IMAGE_SIDE, IMAGE_SIDE, generator=generator)
    return {"images": images, "tokens": trim_padding(caption_tokens(captions))}


def halves(captions: list[str]) -> list[dict]:
    """The batch in two, each half trimmed on its own as a rank's or micro-batch's batch is."""
    whole, half = batch_of(captions), len(captions) // 2
    return [{"images": whole["images"][rows], "tokens": trim_padding(whole["tokens"][rows])}
            for rows in (slice(0, half), slice(half, None))]


def objective_loss(model, batch: dict, loss_kind: str, duplicate_captions: str | None = None) -> torch.Tensor:
    objective = ContrastiveObjective(loss_kind) if duplicate_captions is None else \
        ContrastiveObjective(loss_kind, duplicate_captions=duplicate_captions)
    return objective.loss(model, batch, CPU, "fp32")


@pytest.mark.parametrize("loss_kind", ["clip", "siglip"])
def test_negative_is_the_plain_loss_and_so_is_positive_without_duplicates(loss_kind):
    torch.manual_seed(0)
    model = build_model(model_config_by_name("tiny-vit", {"sigmoid_logits": loss_kind == "siglip"}))
    batch, plain_loss = batch_of(CAPTIONS), ClipLoss() if loss_kind == "clip" else SigLipLoss()
    with torch.no_grad():
        plain = plain_loss(*model(batch["images"], batch["tokens"]))
        assert torch.equal(objective_loss(model, batch, loss_kind), plain)
        assert torch.equal(objective_loss(model, batch, loss_kind, "negative"), plain)
        distinct = batch_of(DISTINCT_CAPTIONS)
        torch.testing.assert_close(objective_loss(model, distinct, loss_kind, "positive"),
                                   plain_loss(*model(distinct["images"], distinct["tokens"])), rtol=1e-6, atol=0)


@pytest.mark.parametrize("loss_kind", ["clip", "siglip"])
def test_on_a_real_model_positive_changes_siglip_and_leaves_clip_as_it_was(loss_kind):
    """A real text tower gives identical captions identical features, so CLIP's logits for them are equal and, at one
    caption per image, a target shared among equal logits is the loss of one target: the README's claim, in loss and
    gradients (with two captions per image it no longer holds: test_captions_per_image). SigLIP's z = -1 for a copy
    of an image's own caption is a real difference."""
    results = {}
    for mode in ("negative", "positive"):
        torch.manual_seed(0)
        model = build_model(model_config_by_name("tiny-vit", {"sigmoid_logits": loss_kind == "siglip"}))
        loss = objective_loss(model, batch_of(CAPTIONS), loss_kind, mode)
        loss.backward()
        results[mode] = loss.detach(), gradients(model)
    if loss_kind == "clip":
        torch.testing.assert_close(results["positive"][0], results["negative"][0], rtol=1e-6, atol=0)
        assert_same_gradients(results["positive"][1], results["negative"][1])
    else:
        # 8 image-caption pairs (0-2, 0-4, 2-4 and 1-5, both ways) turn from z = -1 to z = 1: at the initial bias
        # of -10 each adds about 10 / 8 images to the loss, about 10 in all
        assert results["positive"][0] - results["negative"][0] > 6


def fresh_model(loss_kind: str):
    torch.manual_seed(0)
    return build_model(model_config_by_name("tiny-vit", {"sigmoid_logits": loss_kind == "siglip"}))


def whole_batch_loss_and_gradients(loss_kind: str) -> tuple[torch.Tensor, dict]:
    """One process, the whole batch, duplicates positive. For SigLIP checked to differ from duplicates taken as
    negatives, so that a split that took them for negatives cannot match it; for CLIP at one caption per image the
    two are one loss (identical captions are encoded once, so their logits are equal), and the split is checked on
    its shared targets."""
    model, batch = fresh_model(loss_kind), batch_of(CAPTIONS)
    loss = objective_loss(model, batch, loss_kind, "positive")
    loss.backward()
    if loss_kind == "siglip":
        with torch.no_grad():
            assert not torch.isclose(loss, objective_loss(model, batch, loss_kind, "negative"), rtol=1e-3)
    return loss.detach(), gradients(model)


def run_rank(rank, world_size, port, loss_kind, local_loss, out_path):
    with gloo_process_group(rank, world_size, port):
        torch.set_num_threads(1)
        model = DistributedDataParallel(fresh_model(loss_kind))
        objective = ContrastiveObjective(loss_kind, local_loss, "positive")
        loss = objective.loss(model, halves(CAPTIONS)[rank], CPU, "fp32")
        loss.backward()
        loss = all_reduce_mean(loss)
        if rank == 0:
            torch.save({"loss": loss, "gradients": gradients(model)}, out_path)


@pytest.mark.parametrize("loss_kind, local_loss", [("clip", False), ("clip", True), ("siglip", False)])
def test_two_ranks_with_duplicates_across_them_equal_one_process(tmp_path, loss_kind, local_loss):
    mp.spawn(run_rank, args=(2, free_port(), loss_kind, local_loss, tmp_path / "rank0.pt"), nprocs=2, join=True)
    two_ranks = torch.load(tmp_path / "rank0.pt", weights_only=True)
    expected_loss, expected_gradients = whole_batch_loss_and_gradients(loss_kind)
    torch.testing.assert_close(two_ranks["loss"], expected_loss, rtol=1e-5, atol=0)
    assert_same_gradients(two_ranks["gradients"], expected_gradients)


@pytest.mark.parametrize("loss_kind", ["clip", "siglip"])
def test_micro_batches_with_duplicates_across_them_equal_one_large_batch(loss_kind):
    model = fresh_model(loss_kind)
    objective = ContrastiveObjective(loss_kind, duplicate_captions="positive")
    loss = objective.accumulate_gradients(model, halves(CAPTIONS), NO_SCALING, CPU, "fp32")
    expected_loss, expected_gradients = whole_batch_loss_and_gradients(loss_kind)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=0)
    assert_same_gradients(gradients(model), expected_gradients)


def test_a_value_neither_negative_nor_positive_is_refused_naming_the_key():
    with pytest.raises(UserError, match=r"^cli: 'loss.duplicate_captions' must be one of negative \| positive, "
                                        r"got 'bogus'$"):
        build(TrainerConfig, {"loss": {"duplicate_captions": "bogus"}}, "cli")
