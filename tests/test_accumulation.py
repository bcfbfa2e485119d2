"""Exact gradient accumulation: k micro-batches give the loss and gradients of one batch k times larger, on one
process and on two gloo ranks; batch-norm statistics move as k plain forwards move them."""
import pytest
import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from gloo_ranks import free_port, gloo_process_group
from gradient_checks import assert_same_gradients, gradients
from model import build_model, model_config_by_name
from trainer.objectives import ContrastiveObjective
from utils.distributed import all_reduce_mean

BATCH = 8
MICRO_BATCHES = 2
NO_SCALING = torch.amp.GradScaler("cpu", enabled=False)


def batch_of(config_name: str, rows: int, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    config = model_config_by_name(config_name)
    tokens = torch.randint(1, config.vocab_size - 1, (rows, 8), generator=generator)
    tokens[:, -1] = config.vocab_size - 1
    return {"images": torch.randn(rows, 3, config.image_size, config.image_size, generator=generator),
            "tokens": tokens, "skipped": 0}


def split(batch: dict, parts: int) -> list[dict]:
    rows = len(batch["images"]) // parts
    return [{key: value[i * rows:(i + 1) * rows] if torch.is_tensor(value) else value for key, value in batch.items()}
            for i in range(parts)]


def fresh_model(config_name: str = "tiny-vit", loss_kind: str = "clip"):
    # tiny-vit has no batch norm, whose statistics over a micro-batch differ by design from the whole batch's
    torch.manual_seed(0)
    return build_model(model_config_by_name(config_name, {"sigmoid_logits": loss_kind == "siglip"}))


def accumulated(model, micro_batches, loss_kind="clip", local_loss=False):
    objective = ContrastiveObjective(loss_kind, local_loss)
    loss = objective.accumulate_gradients(model, micro_batches, NO_SCALING, torch.device("cpu"), "fp32")
    return loss, gradients(model)


def one_large_batch(batch, loss_kind="clip"):
    model = fresh_model(loss_kind=loss_kind)
    loss = ContrastiveObjective(loss_kind).loss(model, batch, torch.device("cpu"), "fp32")
    loss.backward()
    return loss.detach(), gradients(model)


@pytest.mark.parametrize("loss_kind", ["clip", "siglip"])
def test_micro_batches_give_the_loss_and_gradients_of_one_large_batch(loss_kind):
    batch = batch_of("tiny-vit", BATCH)
    loss, grads = accumulated(fresh_model(loss_kind=loss_kind), split(batch, MICRO_BATCHES), loss_kind)
    expected_loss, expected_grads = one_large_batch(batch, loss_kind)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=0)
    assert_same_gradients(grads, expected_grads)


def run_rank(rank, world_size, port, loss_kind, local_loss, out_path):
    with gloo_process_group(rank, world_size, port):
        torch.set_num_threads(1)
        rows = BATCH // world_size
        local = split(batch_of("tiny-vit", BATCH), world_size)[rank]
        model = DistributedDataParallel(fresh_model(loss_kind=loss_kind))
        loss, grads = accumulated(model, split(local, MICRO_BATCHES), loss_kind, local_loss)
        loss = all_reduce_mean(loss)
        assert rows % MICRO_BATCHES == 0
        if rank == 0:
            torch.save({"loss": loss, "gradients": grads}, out_path)


@pytest.mark.parametrize("loss_kind, local_loss", [("clip", False), ("clip", True), ("siglip", False)])
def test_two_ranks_of_micro_batches_give_the_gradients_of_one_large_batch(tmp_path, loss_kind, local_loss):
    mp.spawn(run_rank, args=(2, free_port(), loss_kind, local_loss, tmp_path / "rank0.pt"), nprocs=2, join=True)
    two_ranks = torch.load(tmp_path / "rank0.pt", weights_only=True)
    expected_loss, expected_grads = one_large_batch(batch_of("tiny-vit", BATCH), loss_kind)
    torch.testing.assert_close(two_ranks["loss"], expected_loss, rtol=1e-5, atol=0)
    assert_same_gradients(two_ranks["gradients"], expected_grads)


def test_batch_norm_statistics_move_once_per_micro_batch():
    micro_batches = split(batch_of("tiny", BATCH), MICRO_BATCHES)
    plain = fresh_model("tiny").train()
    with torch.no_grad():
        for batch in micro_batches:
            plain(batch["images"], batch["tokens"])
    model = fresh_model("tiny").train()
    accumulated(model, micro_batches)
    for (name, expected), actual in zip(plain.named_buffers(), model.buffers()):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=lambda detail: f"{name}: {detail}")
