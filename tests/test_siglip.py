"""SigLIP: the sigmoid loss equals a hand computation on 3 images x 3 texts; a model with a logit bias starts at
temperature 10 and bias -10; a run with loss.kind=siglip trains through train.py, logs its temperature and bias,
resumes bit-identically after SIGKILL, and its checkpoint loads and scores zero-shot."""
import math

import pytest
import torch

from evaluation.zeroshot import class_probabilities, zero_shot_head
from loss.siglip import SigLipLoss
from model import build_model, load_model, model_config_by_name
from trainer.checkpointing import list_checkpoints
from trainer.run_log import read_log
from training_runs import (TOTAL_STEPS, assert_bit_identical, final_weights, run, run_in_process, start,
                           train_command, wait_for)

SIGLIP = "loss.kind=siglip"


def test_sigmoid_loss_equals_hand_computation_on_three_pairs():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    texts = torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])
    # cosines x_i.y_j, row by row: [0.6, 0, 1], [0.8, 1, 0], [1, 0.8, 0.6]
    cosines = [[0.6, 0.0, 1.0], [0.8, 1.0, 0.0], [1.0, 0.8, 0.6]]
    scale, bias = 10.0, -10.0
    log_sigmoid = lambda value: -math.log1p(math.exp(-value))  # noqa: E731
    expected = -sum(log_sigmoid((1 if i == j else -1) * (scale * cosines[i][j] + bias))
                    for i in range(3) for j in range(3)) / 3
    loss = SigLipLoss()(images, texts, torch.tensor(scale), torch.tensor(bias))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_sigmoid_logit_model_starts_at_temperature_10_and_bias_minus_10():
    model = build_model(model_config_by_name("tiny-vit", {"sigmoid_logits": True}))
    assert model.logit_scale.exp().item() == pytest.approx(10.0)
    assert model.logit_bias.item() == -10.0
    assert not hasattr(build_model(model_config_by_name("tiny-vit")), "logit_bias")


def test_siglip_run_trains_resumes_bit_identically_and_scores_zero_shot(coco_dataset, tmp_path):
    reference = tmp_path / "uninterrupted"
    finished = run(train_command(coco_dataset, reference, SIGLIP))
    assert finished.returncode == 0, finished.stderr
    records = read_log(reference)
    assert records[0]["logit_scale"] == pytest.approx(10.0, rel=0.01)
    assert {"loss", "logit_bias"} <= records[-1].keys() and records[-1]["logit_bias"] != -10.0

    interrupted = tmp_path / "interrupted"
    process = start(train_command(coco_dataset, interrupted, SIGLIP))
    wait_for(lambda: list_checkpoints(interrupted), process)
    process.kill()
    process.wait()
    resumed = run(train_command(coco_dataset, interrupted, SIGLIP, "--resume", "auto"))
    assert resumed.returncode == 0, resumed.stderr
    assert_bit_identical(final_weights(interrupted), final_weights(reference))
    assert [record["step"] for record in read_log(interrupted)] == list(range(1, TOTAL_STEPS + 1))

    model, _ = load_model(list_checkpoints(reference)[-1])
    assert model.config.sigmoid_logits and "logit_bias" in model.state_dict()
    head = zero_shot_head(model, ["cat", "dog"], ["a photo of a {}."], "cpu")
    side = model.config.image_size
    probabilities = class_probabilities(model, torch.randn(2, 3, side, side), head, "cpu")
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2))


def test_clip_loss_on_a_model_with_logit_bias_is_one_line_naming_the_key(coco_dataset, tmp_path, capsys):
    command = train_command(coco_dataset, tmp_path, "model.overrides={sigmoid_logits: true}")
    assert run_in_process(command) == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and "loss.kind=clip does not fit" in stderr


def test_clip_model_gets_siglip_start_for_a_siglip_run():
    model = build_model(model_config_by_name("tiny-vit"))
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.add_sigmoid_logits()
    assert model.config.sigmoid_logits and model.logit_bias.item() == -10.0
    assert model.logit_scale.exp().item() == pytest.approx(10.0)
    for name, tensor in weights.items():
        assert name == "logit_scale" or torch.equal(model.state_dict()[name], tensor), f"{name} changed"
