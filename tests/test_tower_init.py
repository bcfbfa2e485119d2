"""Single-tower starts (model.init_image_from / init_text_from): one tower takes a file's weights exactly and the
other stays as it was; a torchvision ViT becomes our image tower with torchvision's own features; a torchvision
ResNet, a tower of another shape or other settings, and a file without the tower are one line each; a LiT run keeps
the loaded image tower as the file has it."""
import pytest
import torch
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from model import build_model, model_config_by_name
from model.choice import ModelChoice, chosen_model
from model.tower_init import (is_image_weight, is_text_weight, load_image_tower, load_text_tower,
                              visual_from_torchvision_vit)
from model.weights import export_safetensors
from training_runs import coco_dataset, final_weights, run_in_process, train_command  # noqa: F401
from utils.errors import UserError

TORCHVISION_SETTINGS = {"quick_gelu": False, "vision_ln_pre": False, "vision_norm_eps": 1e-6}


def clip_model(name: str, seed: int, **overrides):
    torch.manual_seed(seed)
    return build_model(model_config_by_name(name, overrides))


def weights_of(model, in_part) -> dict:
    return {name: tensor.clone() for name, tensor in model.state_dict().items() if in_part(name)}


def assert_equal(weights: dict, reference: dict):
    assert weights.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(weights[name], tensor), name


def torchvision_vit(mlp_names: str = "current") -> dict:
    """tiny-vit's shape as torchvision builds it, every weight random (its own start leaves biases and the class
    token at zero, which would hide a misplaced one)."""
    torch.manual_seed(3)
    vit = TorchvisionViT(image_size=32, patch_size=4, num_layers=4, num_heads=2, hidden_dim=128, mlp_dim=512)
    with torch.no_grad():
        for parameter in vit.parameters():
            parameter.normal_(std=0.1)
    state_dict = vit.eval().state_dict()
    if mlp_names == "before torchvision 0.13":
        state_dict = {name.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2."): tensor
                      for name, tensor in state_dict.items()}
    return vit, state_dict


def torchvision_features(vit, images):
    """torchvision's ViT up to its classifier: the class token of the encoder's output, after encoder.ln."""
    tokens = vit._process_input(images)
    tokens = torch.cat([vit.class_token.expand(len(images), -1, -1), tokens], dim=1)
    return vit.encoder(tokens)[:, 0]


@pytest.mark.parametrize("name", ["tiny", "tiny-vit"])
def test_image_tower_is_the_files_and_the_rest_untouched(tmp_path, name):
    source = clip_model(name, seed=1)
    export_safetensors(source, tmp_path / "clip.safetensors")
    model = clip_model(name, seed=2)
    before = weights_of(model, lambda key: not is_image_weight(key))

    line = load_image_tower(model, str(tmp_path / "clip.safetensors"))

    assert line == f"image tower from {tmp_path / 'clip.safetensors'} (safetensors)"
    assert_equal(weights_of(model, is_image_weight), weights_of(source, is_image_weight))
    assert_equal(weights_of(model, lambda key: not is_image_weight(key)), before)


def test_text_tower_is_the_files_and_the_rest_untouched(tmp_path):
    source = clip_model("tiny-vit", seed=1)
    torch.save({f"module.{key}": value for key, value in source.state_dict().items()}, tmp_path / "clip.pt")
    model = clip_model("tiny-vit", seed=2)
    before = weights_of(model, lambda key: not is_text_weight(key))

    load_text_tower(model, str(tmp_path / "clip.pt"))

    assert_equal(weights_of(model, is_text_weight), weights_of(source, is_text_weight))
    assert_equal(weights_of(model, lambda key: not is_text_weight(key)), before)
    assert "logit_scale" in before and "visual.proj" in before


@pytest.mark.parametrize("mlp_names", ["current", "before torchvision 0.13"])
def test_torchvision_vit_gives_our_tower_its_features(tmp_path, mlp_names):
    vit, state_dict = torchvision_vit(mlp_names)
    torch.save(state_dict, tmp_path / "vit.pth")
    model = clip_model("tiny-vit", seed=2, **TORCHVISION_SETTINGS).eval()
    proj = model.visual.proj.detach().clone()

    load_image_tower(model, str(tmp_path / "vit.pth"))

    assert torch.equal(model.visual.proj, proj)  # torchvision has no projection into the joint embedding
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        model.visual.proj.copy_(torch.eye(128))  # tiny-vit: width = embed_dim, so the tower's output before proj
        ours = model.encode_image(images)
        theirs = torchvision_features(vit, images)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_torchvision_vit_needs_its_settings_named(tmp_path):
    torch.save(torchvision_vit()[1], tmp_path / "vit.pth")
    with pytest.raises(UserError) as error:
        load_image_tower(clip_model("tiny-vit", seed=2), str(tmp_path / "vit.pth"))
    assert "set model.overrides.quick_gelu=false model.overrides.vision_ln_pre=false " \
           "model.overrides.vision_norm_eps=1e-06" in str(error.value)


def test_torchvision_resnet_is_refused_in_one_line(tmp_path):
    torch.save(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(UserError) as error:
        load_image_tower(clip_model("tiny", seed=2), str(tmp_path / "resnet.pth"))
    message = str(error.value)
    assert "is a torchvision ResNet, which cannot start our ResNet image tower" in message
    assert "\n" not in message


def test_a_tower_of_another_shape_names_the_parameter_and_both_shapes(tmp_path):
    export_safetensors(clip_model("tiny-vit", seed=1, vision_width=64), tmp_path / "narrow.safetensors")
    with pytest.raises(UserError) as error:
        load_image_tower(clip_model("tiny-vit", seed=2), str(tmp_path / "narrow.safetensors"))
    assert "visual.conv1.weight file (64, 3, 4, 4) vs model (128, 3, 4, 4)" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_file_without_the_tower_or_with_other_settings_is_one_line(tmp_path):
    source = clip_model("tiny-vit", seed=1)
    torch.save({key: value for key, value in source.state_dict().items() if is_text_weight(key)}, tmp_path / "t.pt")
    with pytest.raises(UserError, match="has no image tower: no visual.\\* weights"):
        load_image_tower(clip_model("tiny-vit", seed=2), str(tmp_path / "t.pt"))
    export_safetensors(source, tmp_path / "quick_gelu.safetensors")
    with pytest.raises(UserError, match="other settings than the model's \\(quick_gelu False\\): "
                                        "set model.overrides.quick_gelu=true"):
        load_text_tower(clip_model("tiny-vit", seed=2, quick_gelu=False), str(tmp_path / "quick_gelu.safetensors"))


def test_towers_load_after_init_from(tmp_path):
    whole, image = clip_model("tiny-vit", seed=1), clip_model("tiny-vit", seed=4)
    export_safetensors(whole, tmp_path / "whole.safetensors")
    export_safetensors(image, tmp_path / "image.safetensors")
    choice = ModelChoice(init_from=str(tmp_path / "whole.safetensors"),
                         init_image_from=str(tmp_path / "image.safetensors"), lock_image=True)

    model, lines = chosen_model(choice, "clip")

    assert_equal(weights_of(model, is_image_weight), weights_of(image, is_image_weight))
    assert_equal(weights_of(model, lambda key: not is_image_weight(key)),
                 weights_of(whole, lambda key: not is_image_weight(key)))
    assert lines[0] == f"image tower from {tmp_path / 'image.safetensors'} (safetensors)"
    assert lines[1].startswith("image tower: 6 of its 6 groups locked")


def lit_run(dataset, run_dir, image_file, *extra) -> dict:
    """The final weights of a short run on tiny-vit with its image tower from `image_file`, locked."""
    command = train_command(dataset, run_dir, "train.epochs=1", "model.name=tiny-vit",
                            f"model.init_image_from={image_file}", "model.lock_image=true", *extra)
    assert run_in_process(command) == 0
    return {key: value for key, value in final_weights(run_dir).items() if is_image_weight(key)}


def test_a_lit_run_ends_with_the_files_image_tower(coco_dataset, tmp_path, capsys):
    source = clip_model("tiny-vit", seed=1)
    export_safetensors(source, tmp_path / "image.safetensors")

    trained = lit_run(coco_dataset, tmp_path / "run", tmp_path / "image.safetensors")

    assert f"image tower from {tmp_path / 'image.safetensors'}" in capsys.readouterr().out
    assert_equal(trained, weights_of(source, is_image_weight))


def test_a_lit_run_from_a_torchvision_vit_keeps_its_weights_but_the_projection(coco_dataset, tmp_path):
    _, state_dict = torchvision_vit()
    torch.save(state_dict, tmp_path / "vit.pth")

    trained = lit_run(coco_dataset, tmp_path / "run", tmp_path / "vit.pth", "model.lock_image_unlocked_groups=1",
                      *(f"model.overrides.{key}={str(value).lower()}" for key, value in TORCHVISION_SETTINGS.items()))

    del trained["visual.proj"]  # unlocked: torchvision has none to give
    assert_equal(trained, visual_from_torchvision_vit(state_dict))
