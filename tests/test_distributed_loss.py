"""The losses over the global batch (CLIP's softmax, gathered or local, and SigLIP's sigmoid): two gloo ranks on
half batches equal one process on the whole."""

import open_clip
import pytest
import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from gloo_ranks import free_port, gloo_process_group
from gradient_checks import assert_same_gradients
from loss.clip import ClipLoss
from loss.siglip import SigLipLoss
from model import build_model, model_config_by_name
from utils.distributed import all_reduce_mean

GLOBAL_BATCH = 8
LOSSES = {"clip": lambda: ClipLoss(local_loss=False), "clip-local": lambda: ClipLoss(local_loss=True),
          "siglip": SigLipLoss}


def global_batch():
    generator = torch.Generator().manual_seed(0)
    config = model_config_by_name("tiny-vit")
    images = torch.randn(GLOBAL_BATCH, 3, config.image_size, config.image_size, generator=generator)
    tokens = torch.randint(1, 49407, (GLOBAL_BATCH, config.context_length), generator=generator)
    tokens[torch.arange(GLOBAL_BATCH), torch.randint(2, config.context_length, (GLOBAL_BATCH,), generator=generator)] = 49407
    return images, tokens


def fresh_model(loss_kind):
    # tiny-vit has no BatchNorm, whose per-device batch statistics would differ by design between the two runs
    torch.manual_seed(0)
    return build_model(model_config_by_name("tiny-vit", {"sigmoid_logits": loss_kind == "siglip"}))


def loss_and_gradients(model, images, tokens, loss_kind):
    loss = LOSSES[loss_kind]()(*model(images, tokens))
    loss.backward()
    module = getattr(model, "module", model)
    return loss, {name: param.grad for name, param in module.named_parameters()}


def run_rank(rank, world_size, port, loss_kind, out_path):
    with gloo_process_group(rank, world_size, port):
        images, tokens = global_batch()
        rows = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)
        model = DistributedDataParallel(fresh_model(loss_kind))
        loss, gradients = loss_and_gradients(model, images[rows], tokens[rows], loss_kind)
        if rank == 0:
            torch.save({"loss": all_reduce_mean(loss), "gradients": gradients}, out_path)
        else:
            all_reduce_mean(loss)


@pytest.mark.parametrize("loss_kind", list(LOSSES))
def test_two_rank_loss_and_gradients_equal_one_rank(tmp_path, loss_kind):
    mp.spawn(run_rank, args=(2, free_port(), loss_kind, tmp_path / "rank0.pt"), nprocs=2, join=True)
    two_ranks = torch.load(tmp_path / "rank0.pt", weights_only=True)
    single_loss, single_gradients = loss_and_gradients(fresh_model(loss_kind), *global_batch(), loss_kind)
    torch.testing.assert_close(two_ranks["loss"], single_loss.detach(), rtol=1e-5, atol=0)
    assert_same_gradients(two_ranks["gradients"], single_gradients)


def test_single_process_loss_matches_open_clip():
    generator = torch.Generator().manual_seed(3)
    image_features = torch.nn.functional.normalize(torch.randn(6, 16, generator=generator), dim=-1)
    text_features = torch.nn.functional.normalize(torch.randn(6, 16, generator=generator), dim=-1)
    scale = torch.tensor(1 / 0.07)
    reference = open_clip.ClipLoss()(image_features, text_features, scale)
    torch.testing.assert_close(ClipLoss()(image_features, text_features, scale), reference)
    torch.testing.assert_close(ClipLoss(local_loss=True)(image_features, text_features, scale), reference)
