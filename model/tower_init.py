"""Single-tower starts (LiT, Zhai et al. 2022): the image tower from a CLIP checkpoint or a torchvision ViT, the text
tower from a CLIP checkpoint, each loaded into a model whose other weights stay as they are."""
import re

import torch

from model.clip import CLIP
from model.config import ModelConfig
from model.weights import load_weights_strict, read_weights
from utils.config import as_dict
from utils.errors import UserError

TEXT_TOWER = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")
# torchvision.models.vision_transformer's names to our image tower's, applied in order; its MLP layers are
# mlp.0 / mlp.3 since torchvision 0.13, mlp.linear_1 / mlp.linear_2 before
TORCHVISION_VIT_RENAMES = (
    (r"^conv_proj\.", "conv1."),
    (r"^class_token$", "class_embedding"),
    (r"^encoder\.pos_embedding$", "positional_embedding"),
    (r"^encoder\.ln\.", "ln_post."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.", r"transformer.resblocks.\1."),
    (r"\.self_attention\.", ".attn."),
    (r"\.mlp\.(0|linear_1)\.", ".mlp.c_fc."),
    (r"\.mlp\.(3|linear_2)\.", ".mlp.c_proj."),
)
# what torchvision's ViT computes with and shapes cannot show: exact GELU, no LayerNorm before the encoder, eps 1e-6
TORCHVISION_VIT_SETTINGS = {"quick_gelu": False, "vision_ln_pre": False, "vision_norm_eps": 1e-6}
# the settings of a CLIP file's towers that shapes cannot show (the ViT's LayerNorm before its transformer can be seen)
UNSEEN_SETTINGS = {"image-vit": ("quick_gelu", "vision_norm_eps"), "image-resnet": (), "text": ("quick_gelu",)}


def is_image_weight(name: str) -> bool:
    return name.startswith("visual.")


def is_text_weight(name: str) -> bool:
    return name.startswith(TEXT_TOWER)


def load_single_towers(model: CLIP, image_path: str | None, text_path: str | None) -> list[str]:
    """Load the image tower from `image_path` and the text tower from `text_path` (either may be None) over the
    model's weights; a start-up line for each tower loaded."""
    lines = []
    if image_path:
        lines.append(load_image_tower(model, image_path))
    if text_path:
        lines.append(load_text_tower(model, text_path))
    return lines


def load_image_tower(model: CLIP, path: str) -> str:
    state_dict, config, file_format = read_weights(path)
    if is_torchvision_resnet(state_dict):
        raise UserError(f"model.init_image_from {path} is a torchvision ResNet, which cannot start our ResNet image "
                        "tower: that is CLIP's modified ResNet (3-convolution stem, average-pool downsampling, "
                        "attention pool), torchvision's has a 7x7 stem with max pool, strided convolutions and "
                        "global average pooling, so no renaming computes its features; start from a CLIP ResNet "
                        "checkpoint (OpenAI's, open_clip's, ours) or, for a ViT model, a torchvision ViT")
    if is_torchvision_vit(state_dict):
        return load_torchvision_vit(model, state_dict, path)
    require_tower(state_dict, is_image_weight, "image", "visual.*", path)
    tower = "image-vit" if model.config.is_vit else "image-resnet"
    require_settings(model.config, file_settings(config, file_format), UNSEEN_SETTINGS[tower], "image", path)
    load_weights_strict(model, state_dict, f"model.init_image_from {path}", is_image_weight)
    return f"image tower from {path} ({file_format})"


def load_text_tower(model: CLIP, path: str) -> str:
    state_dict, config, file_format = read_weights(path)
    require_tower(state_dict, is_text_weight, "text", "token_embedding, transformer.*, ln_final, ...", path)
    require_settings(model.config, file_settings(config, file_format), UNSEEN_SETTINGS["text"], "text", path)
    load_weights_strict(model, state_dict, f"model.init_text_from {path}", is_text_weight)
    return f"text tower from {path} ({file_format})"


def load_torchvision_vit(model: CLIP, state_dict: dict, path: str) -> str:
    if not model.config.is_vit:
        raise UserError(f"model.init_image_from {path} is a torchvision ViT, but the model's image tower is a "
                        f"ResNet: choose a ViT model config (model.name, e.g. ViT-B/32 for vit_b_32)")
    require_settings(model.config, TORCHVISION_VIT_SETTINGS, tuple(TORCHVISION_VIT_SETTINGS), "image", path)
    # it has no projection into the joint embedding: visual.proj keeps its initialisation
    load_weights_strict(model, visual_from_torchvision_vit(state_dict), f"model.init_image_from {path}",
                        lambda name: is_image_weight(name) and name != "visual.proj")
    return (f"image tower from {path} (torchvision ViT: its classifier head left out, visual.proj at its "
            f"initialisation)")


def visual_from_torchvision_vit(state_dict: dict) -> dict:
    """A torchvision ViT's weights under our image tower's names. Its patch convolution has a bias and ours none:
    adding the bias to every patch position's embedding gives the same sum."""
    visual = {}
    for name, tensor in state_dict.items():
        if name.startswith("heads."):  # the ImageNet classifier
            continue
        for pattern, replacement in TORCHVISION_VIT_RENAMES:
            name = re.sub(pattern, replacement, name)
        visual[name] = tensor
    visual["class_embedding"] = visual["class_embedding"].flatten()
    positions = visual["positional_embedding"].squeeze(0)
    patch_bias = visual.pop("conv1.bias", None)
    if patch_bias is not None:
        positions = torch.cat([positions[:1], positions[1:] + patch_bias])
    visual["positional_embedding"] = positions
    return {f"visual.{name}": tensor for name, tensor in visual.items()}


def is_torchvision_vit(state_dict: dict) -> bool:
    return "class_token" in state_dict and "encoder.pos_embedding" in state_dict


def is_torchvision_resnet(state_dict: dict) -> bool:
    return "layer1.0.conv1.weight" in state_dict and "fc.weight" in state_dict


def require_tower(state_dict: dict, in_tower, tower: str, names: str, path: str) -> None:
    if not any(in_tower(name) for name in state_dict):
        raise UserError(f"model.init_{tower}_from {path} has no {tower} tower: no {names} weights (found "
                        f"{len(state_dict)} tensors, e.g. {', '.join(list(state_dict)[:3])})")


def file_settings(config: ModelConfig | None, file_format: str) -> dict:
    """The settings the file states or its format implies; an open_clip or plain state dict states none."""
    if config is not None:
        return as_dict(config)
    if file_format == "openai-torchscript":
        return {"quick_gelu": True, "vision_norm_eps": 1e-5}
    return {}


def require_settings(model_config: ModelConfig, settings: dict, keys: tuple, tower: str, path: str) -> None:
    """The file's tower computes with `settings`: a model configured otherwise would not reproduce its features."""
    differing = [key for key in keys if key in settings and settings[key] != getattr(model_config, key)]
    if differing:
        wanted = " ".join(f"model.overrides.{key}={str(settings[key]).lower()}" for key in differing)
        has = ", ".join(f"{key} {getattr(model_config, key)}" for key in differing)
        raise UserError(f"model.init_{tower}_from {path}: its {tower} tower computes with other settings than the "
                        f"model's ({has}): set {wanted}")
