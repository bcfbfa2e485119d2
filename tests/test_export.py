"""Our weights go out in open_clip's, transformers' and our own safetensors format, and the other tool, loading them
its own way, computes the features ours does."""
import dataclasses

import open_clip
import pytest
import torch
import transformers
from PIL import Image

from model import build_model, load_model, model_config_by_name
from model.export import main
from model_fixtures import move_off_initial_values
from utils.checkpoint import save_checkpoint_atomic
from utils.tokenizer import tokenize

CAPTIONS = ["a photo of a cat", "a small red triangle on a grey background", "x"]


def training_checkpoint(tmp_path, config_name: str, **overrides):
    """Our checkpoint of a tiny model with every weight and statistic off its initial value."""
    torch.manual_seed(0)
    model = move_off_initial_values(build_model(model_config_by_name(config_name, overrides)))
    path = tmp_path / f"{config_name}.pt"
    save_checkpoint_atomic({"model": model.state_dict(), "model_config": dataclasses.asdict(model.config)}, path)
    return path, model.eval()


def example_inputs(model):
    images = torch.randn(3, 3, model.config.image_size, model.config.image_size,
                         generator=torch.Generator().manual_seed(1))
    return images, tokenize(CAPTIONS, context_length=model.config.context_length)


def assert_same_features(ours, image_features, text_features, images, tokens):
    with torch.no_grad():
        torch.testing.assert_close(image_features(images), ours.encode_image(images), atol=1e-5, rtol=0)
        torch.testing.assert_close(text_features(tokens), ours.encode_text(tokens), atol=1e-5, rtol=0)


@pytest.mark.parametrize("config_name", ["tiny", "tiny-vit"])
def test_open_clip_loads_the_export_with_its_own_factory(tmp_path, config_name):
    checkpoint, ours = training_checkpoint(tmp_path, config_name)
    assert main([str(checkpoint), "--format", "open_clip", str(tmp_path / "out")]) == 0
    reference, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'out'}")
    reference.eval()
    images, tokens = example_inputs(ours)
    assert_same_features(ours, reference.encode_image, reference.encode_text, images, tokens)
    assert torch.equal(reference.logit_scale, ours.logit_scale)
    _, our_preprocess = load_model(checkpoint)
    image = Image.new("RGB", (48, 40), (200, 30, 90))
    assert torch.equal(preprocess(image), our_preprocess(image))


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_transformers_clip_model_computes_our_features(tmp_path, quick_gelu):
    checkpoint, ours = training_checkpoint(tmp_path, "tiny-vit", quick_gelu=quick_gelu)
    assert main([str(checkpoint), "--format", "transformers", str(tmp_path / "out")]) == 0
    reference, loading = transformers.CLIPModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not any(loading.values()), loading
    reference.eval()
    images, tokens = example_inputs(ours)
    assert_same_features(ours, lambda x: reference.get_image_features(pixel_values=x).pooler_output,
                         lambda x: reference.get_text_features(input_ids=x).pooler_output, images, tokens)
    assert torch.equal(reference.logit_scale, ours.logit_scale)


def test_resnet_to_transformers_is_one_line_and_writes_nothing(tmp_path, capsys):
    checkpoint, _ = training_checkpoint(tmp_path, "tiny")
    assert main([str(checkpoint), "--format", "transformers", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "ViT image tower" in error and "--format open_clip" in error
    assert not (tmp_path / "out").exists()


def test_sigmoid_logit_bias_goes_to_open_clip_and_is_refused_by_transformers(tmp_path, capsys):
    checkpoint, ours = training_checkpoint(tmp_path, "tiny-vit", sigmoid_logits=True)
    assert main([str(checkpoint), "--format", "open_clip", str(tmp_path / "open_clip")]) == 0
    reference, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'open_clip'}")
    assert torch.equal(reference.logit_bias, ours.logit_bias)
    assert main([str(checkpoint), "--format", "transformers", str(tmp_path / "transformers")]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "logit bias" in error


def test_safetensors_export_loads_back_equal(tmp_path):
    checkpoint, ours = training_checkpoint(tmp_path, "tiny-vit", quick_gelu=False)
    assert main([str(checkpoint), "--format", "safetensors", str(tmp_path / "out")]) == 0
    loaded, _ = load_model(tmp_path / "out" / "model.safetensors")
    assert loaded.config == ours.config
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in ours.state_dict().items())


def test_non_empty_output_folder_is_refused_unless_forced(tmp_path, capsys):
    checkpoint, ours = training_checkpoint(tmp_path, "tiny")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main([str(checkpoint), "--format", "safetensors", str(out)]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "not empty" in error and "--force" in error
    assert [path.name for path in out.iterdir()] == ["notes.txt"]
    assert main([str(checkpoint), "--format", "safetensors", str(out), "--force"]) == 0
    assert (out / "notes.txt").read_text() == "keep me" and (out / "model.safetensors").is_file()
