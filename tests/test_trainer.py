"""Training through `python train.py`: skipped images are counted, a diverging run stops without saving its NaN
state, the logit scale is capped at 100, a config typo is one line naming the nearest key; (slow) a compiled run
follows the eager one."""
import json

import pytest
import torch

from dataloader.train.synthetic import SyntheticDataConfig, write_train_set
from model import build_model, model_config_by_name
from trainer.checkpointing import list_checkpoints
from trainer.config import OptimizerConfig
from trainer.objectives import ContrastiveObjective
from trainer.optim import MAX_LOGIT_SCALE, build_optimizer, optimizer_step, set_learning_rate
from trainer.run_log import read_log
from training_runs import run, train_command
from utils.checkpoint import load_checkpoint


def test_missing_and_corrupt_images_are_skipped_and_counted(tmp_path):
    dataset = SyntheticDataConfig(root=str(tmp_path / "coco"), train_images=17, image_size=32)
    write_train_set(dataset)
    (dataset.train_img_dir / "000001.jpg").unlink()
    (dataset.train_img_dir / "000002.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    result = run(train_command(dataset, tmp_path / "run", "train.epochs=1"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["skipped_images"] == 2


def test_logit_scale_never_exceeds_100():
    torch.manual_seed(0)
    model = build_model(model_config_by_name("tiny-vit"))
    optimizer = build_optimizer(model, OptimizerConfig(lr=1.0))  # a huge step size for the temperature
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for _ in range(10):
        (-model.logit_scale).backward()  # always pushes the scale up
        optimizer_step(model, optimizer, scaler, grad_clip_norm=1.0)
        ContrastiveObjective().after_step(model)
        assert model.logit_scale.exp().item() <= 100 * (1 + 1e-6)
    assert model.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)


@pytest.mark.parametrize("sigmoid_logits", [False, True])
def test_the_logit_scale_lr_moves_the_loss_parameters_at_their_own_rate_on_the_schedule(sigmoid_logits):
    """AdamW's first step moves each parameter by its learning rate (times the sign of its gradient): at half the
    schedule's peak, the temperature and bias move by half of optimizer.logit_scale_lr, everything else by half of
    optimizer.lr."""
    torch.manual_seed(0)
    model = build_model(model_config_by_name("tiny-vit", {"sigmoid_logits": sigmoid_logits}))
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-4, weight_decay=0.0, logit_scale_lr=1e-2))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    set_learning_rate(optimizer, 0.5e-4)
    sum(p.sum() for p in model.parameters()).backward()  # a gradient of 1 everywhere
    optimizer_step(model, optimizer, torch.amp.GradScaler("cpu", enabled=False), grad_clip_norm=None)
    loss_parameters = ["logit_scale", "logit_bias"] if sigmoid_logits else ["logit_scale"]
    for name, p in model.named_parameters():
        expected = 0.5e-2 if name in loss_parameters else 0.5e-4
        torch.testing.assert_close(before[name] - p.detach(), torch.full_like(p, expected), rtol=1e-3, atol=0)


def test_config_typo_is_one_line_error_naming_the_nearest_key(coco_dataset, tmp_path, capsys):
    import train
    assert train.main(train_command(coco_dataset, tmp_path, "optimizer.lrr=1e-4")[2:]) == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith("error: ") and len(stderr.splitlines()) == 1
    assert "unknown key 'optimizer.lrr'" in stderr and "did you mean 'optimizer.lr'" in stderr


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(coco_dataset, tmp_path):
    result = run(train_command(coco_dataset, tmp_path, "optimizer.lr=1e4", "checkpoint.every_steps=3",
                               "train.log_every_steps=4"))
    assert result.returncode == 2
    assert "error: training diverged: the loss became NaN/inf at step 4" in result.stderr
    (kept,) = list_checkpoints(tmp_path)
    payload = load_checkpoint(kept)
    assert payload["step"] == 3 and all(torch.isfinite(tensor).all() for tensor in payload["model"].values())


@pytest.mark.slow  # compiling takes a minute or more on two CPU cores
def test_compiled_training_follows_the_eager_run(coco_dataset, tmp_path):
    losses = {}
    for mode in ("false", "true"):
        result = run(train_command(coco_dataset, tmp_path / mode, "train.epochs=1", f"train.compile={mode}"))
        assert result.returncode == 0, result.stderr
        losses[mode] = [record["loss"] for record in read_log(tmp_path / mode)]
    assert len(losses["true"]) == 6
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-3)  # fused kernels sum in another order
