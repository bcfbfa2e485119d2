"""Locked towers: after a few training steps the locked parameters and the locked ResNet's batch-norm statistics
are bit-identical to the start while the rest moved, even through evaluation's eval/train switch; the optimiser
holds no state for locked parameters; a model with fixed statistics still saves and loads as a plain one; more
unlocked groups than a tower has lock none of it, as in open_clip, and the start-up line says so; the model.lock_*
keys reach the model through train.py."""
import pytest
import torch

from model import build_model, model_config_by_name
from model.locking import image_groups, lock_image_tower, lock_text_tower, parameters_of, text_groups
from trainer.checkpointing import list_checkpoints
from trainer.config import OptimizerConfig
from trainer.objectives import ContrastiveObjective
from trainer.optim import build_optimizer, optimizer_step
from trainer.trainer import evaluation_mode
from training_runs import run_in_process, train_command
from utils.checkpoint import load_checkpoint

NO_SCALING = torch.amp.GradScaler("cpu", enabled=False)


def batch(seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 49407, (4, 8), generator=generator)
    tokens[:, -1] = 49407
    return {"images": torch.randn(4, 3, 32, 32, generator=generator), "tokens": tokens, "skipped": 0}


def locked_resnet():
    torch.manual_seed(0)
    model = build_model(model_config_by_name("tiny"))
    lock_image_tower(model, unlocked_groups=2, freeze_bn_stats=True)  # layer4 and the attention pool train
    lock_text_tower(model, unlocked_layers=1)  # the text projection trains
    return model.train()


def train_a_few_steps(model):
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-2))
    objective = ContrastiveObjective()
    for step in range(3):
        objective.accumulate_gradients(model, [batch(step)], NO_SCALING, torch.device("cpu"), "fp32")
        optimizer_step(model, optimizer, NO_SCALING, grad_clip_norm=None)
        with evaluation_mode(model):  # eval, then model.train() again
            model(batch(9)["images"], batch(9)["tokens"])
    return optimizer


def test_locked_parameters_and_batch_norm_statistics_stay_while_the_rest_moves():
    model = locked_resnet()
    start = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    train_a_few_steps(model)
    locked = {id(p) for group in image_groups(model)[:-2] + text_groups(model)[:-1] for p in parameters_of(group)}
    locked_names = {name for name, p in model.named_parameters() if id(p) in locked}
    stem_and_early_stages = ("visual.conv", "visual.bn", "visual.layer1.", "visual.layer2.", "visual.layer3.")
    locked_statistics = {name for name, _ in model.named_buffers() if name.startswith(stem_and_early_stages)}
    assert locked_names and locked_statistics
    for name, tensor in model.state_dict().items():
        if name in locked_names or name in locked_statistics:
            assert torch.equal(tensor, start[name]), f"{name} moved although locked"
    for name in ("visual.layer4.0.conv1.weight", "visual.layer4.0.bn1.running_mean", "visual.attnpool.c_proj.weight",
                 "text_projection", "logit_scale"):
        assert not torch.equal(model.state_dict()[name], start[name]), f"{name} did not move"


def test_optimizer_holds_no_state_for_locked_parameters():
    model = locked_resnet()
    optimizer = train_a_few_steps(model)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]} | {id(p) for p in optimizer.state}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert held == trainable and len(trainable) < len(list(model.parameters()))
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_fixed_statistics_model_loads_into_a_plain_one():
    model = locked_resnet()
    plain = build_model(model_config_by_name("tiny"))
    plain.load_state_dict(model.state_dict(), strict=True)


@pytest.mark.parametrize("name", ["tiny", "tiny-vit"])
def test_more_unlocked_groups_than_a_tower_has_lock_none_of_it(name):
    model = build_model(model_config_by_name(name))
    assert lock_image_tower(model, unlocked_groups=8) == (0, 6)
    assert lock_text_tower(model, unlocked_layers=8) == (0, 4)
    assert all(p.requires_grad for p in model.parameters())


def test_start_up_lines_count_the_locked_groups_and_name_a_count_past_the_tower(coco_dataset, tmp_path, capsys):
    command = train_command(coco_dataset, tmp_path, "train.epochs=1", "model.name=tiny-vit", "model.lock_image=true",
                            "model.lock_image_unlocked_groups=8", "model.lock_text=true",
                            "model.lock_text_unlocked_layers=1")
    assert run_in_process(command) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "image tower: 0 of its 6 groups locked (model.lock_image_unlocked_groups=8 is more than its 6 groups: " \
           "all of them train)" in lines
    assert "text tower: 3 of its 4 groups locked" in lines


def test_locked_run_through_train_py_keeps_the_locked_tower(coco_dataset, tmp_path):
    command = train_command(coco_dataset, tmp_path, "train.epochs=1", "model.lock_image=true",
                            "model.lock_image_freeze_bn_stats=true", "model.lock_text=true")
    assert run_in_process(command) == 0
    checkpoints = list_checkpoints(tmp_path)
    assert len(checkpoints) == 2
    first, last = (load_checkpoint(path)["model"] for path in checkpoints)
    for name, tensor in first.items():
        if name.startswith(("visual.", "transformer.", "token_embedding", "positional_embedding", "ln_final",
                            "text_projection")):
            assert torch.equal(last[name], tensor), f"{name} moved although locked"
    assert not torch.equal(last["logit_scale"], first["logit_scale"])


def test_negative_unlocked_groups_is_one_line_naming_the_key(coco_dataset, tmp_path, capsys):
    assert run_in_process(train_command(coco_dataset, tmp_path, "model.lock_image_unlocked_groups=-1")) == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and "model.lock_image_unlocked_groups must be at least 0" in stderr
