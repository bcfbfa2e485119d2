"""Training that starts from a weights file (model.init_from): open_clip and OpenAI TorchScript files start training
with exactly load_model's features, then move, with the logit scale clamped; the run records where its weights came
from; a disagreeing model.name and a file that is no CLIP checkpoint are one line each; a CLIP file's locked image
tower trains with SigLIP's loss."""
import copy

import open_clip
import pytest
import torch
import yaml

import train
from model import load_model
from trainer.checkpointing import list_checkpoints
from trainer.optim import MAX_LOGIT_SCALE
from training_runs import coco_dataset, train_command  # noqa: F401
from utils.checkpoint import load_checkpoint

CONTEXT_LENGTH = 16


def small_open_clip(quick_gelu: bool) -> open_clip.CLIP:
    """A 32-px ResNet CLIP with a logit scale above CLIP's cap of 100, as a long-trained model can have."""
    torch.manual_seed(0)
    model = open_clip.CLIP(embed_dim=64, vision_cfg=dict(image_size=32, layers=[1, 1, 1, 1], width=16),
                           text_cfg=dict(context_length=CONTEXT_LENGTH, vocab_size=49408, width=128, heads=2,
                                         layers=2), quick_gelu=quick_gelu)
    with torch.no_grad():
        model.logit_scale.fill_(MAX_LOGIT_SCALE + 0.5)
    return model.eval()


def open_clip_checkpoint(path):
    # the layout open_clip's trainer writes: {"epoch", "state_dict" with DDP's "module." prefix, ...}
    model = small_open_clip(quick_gelu=False)
    state_dict = {f"module.{key}": value for key, value in model.state_dict().items()}
    torch.save({"epoch": 3, "name": "run", "state_dict": state_dict}, path)
    return path


def openai_torchscript(path):
    model = small_open_clip(quick_gelu=True)
    images, tokens = torch.randn(2, 3, 32, 32), torch.randint(1, 49407, (2, CONTEXT_LENGTH))
    tokens[:, -1] = 49407
    with pytest.warns():
        torch.jit.trace(model, (images, tokens), check_trace=False).save(str(path))
    return path


def features(model):
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 32, 32, generator=generator)
    tokens = torch.randint(1, 49406, (3, CONTEXT_LENGTH), generator=generator)
    tokens[:, 0], tokens[:, 9] = 49406, 49407
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(tokens)


def command(dataset, run_dir, *extra):
    """train_command without its model.name: the architecture comes from the file."""
    return [arg for arg in train_command(dataset, run_dir, "checkpoint.every_steps=1", "checkpoint.keep_last=20",
                                         "train.epochs=1", *extra)[2:] if arg != "model.name=quickstart"]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("write_weights", [open_clip_checkpoint, openai_torchscript])
def test_training_starts_from_the_files_weights(coco_dataset, tmp_path, monkeypatch, write_weights):
    weights = write_weights(tmp_path / "weights.pt")
    started = {}
    real_train = train.train

    def train_and_keep_the_start(job, ctx, resume=None):
        started["features"] = features(copy.deepcopy(job.model).eval())
        return real_train(job, ctx, resume)

    monkeypatch.setattr(train, "train", train_and_keep_the_start)
    assert train.main(command(coco_dataset, tmp_path / "run", f"model.init_from={weights}")) == 0
    reference, _ = load_model(weights)
    for ours, theirs in zip(started["features"], features(reference)):
        assert torch.equal(ours, theirs)
    after_one_step = load_checkpoint(list_checkpoints(tmp_path / "run")[0])
    assert after_one_step["step"] == 1
    moved = [key for key, value in reference.state_dict().items()
             if not torch.equal(after_one_step["model"][key], value)]
    assert "visual.conv1.weight" in moved and "text_projection" in moved
    assert after_one_step["model"]["logit_scale"].item() == pytest.approx(MAX_LOGIT_SCALE)
    assert after_one_step["model_config"] == vars(reference.config)
    saved_config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved_config["model"]["init_from"] == str(weights)


def test_resume_wins_over_init_from(coco_dataset, tmp_path, capsys):
    weights = open_clip_checkpoint(tmp_path / "weights.pt")
    assert train.main(command(coco_dataset, tmp_path / "run", f"model.init_from={weights}")) == 0
    first = list_checkpoints(tmp_path / "run")[-1]
    capsys.readouterr()
    assert train.main(command(coco_dataset, tmp_path / "run", f"model.init_from={weights}", "train.epochs=2",
                              "--resume", "auto", "--resume_allow_changes")) == 0
    assert f"resumed from {first} at step 6" in capsys.readouterr().out
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1])["step"] == 12


def test_model_name_that_disagrees_with_the_file_is_one_line(coco_dataset, tmp_path, capsys):
    weights = open_clip_checkpoint(tmp_path / "weights.pt")
    assert train.main(command(coco_dataset, tmp_path / "run", f"model.init_from={weights}",
                              "model.name=tiny")) == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith("error: model.name tiny disagrees with the architecture of model.init_from")
    assert len(stderr.splitlines()) == 1 and "embed_dim 128 vs 64" in stderr


@pytest.mark.parametrize("content", [b"not a checkpoint at all", None])
def test_init_from_a_file_that_is_not_a_clip_checkpoint_is_one_line(coco_dataset, tmp_path, capsys, content):
    path = tmp_path / "other.pt"
    if content is None:
        torch.save({"fc.weight": torch.zeros(2, 2)}, path)  # a readable state dict of something else
    else:
        path.write_bytes(content)
    assert train.main(command(coco_dataset, tmp_path / "run", f"model.init_from={path}")) == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.startswith(f"error: {path}") and len(stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_locked_clip_image_tower_trains_with_siglip(coco_dataset, tmp_path):
    """LiT with SigLIP's loss from a CLIP-trained file: the model gains a logit bias, the image tower stays."""
    weights = open_clip_checkpoint(tmp_path / "weights.pt")
    assert train.main(command(coco_dataset, tmp_path / "run", f"model.init_from={weights}", "loss.kind=siglip",
                              "model.lock_image=true", "model.lock_image_freeze_bn_stats=true")) == 0
    trained = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])["model"]
    start = small_open_clip(quick_gelu=False).state_dict()
    assert "logit_bias" in trained and trained["logit_bias"].item() != -10.0
    for name, tensor in start.items():
        if name.startswith("visual."):
            assert torch.equal(trained[name], tensor), f"{name} moved although locked"
