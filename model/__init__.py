"""CLIP models: build one from a config, or load one from any checkpoint we know, ready to use."""
from pathlib import Path

import torch

from model.clip import CLIP
from model.config import ModelConfig, model_config_by_name, named_configs
from model.preprocess import image_transform
from model.weights import infer_config, load_weights_strict, read_weights
from utils.errors import UserError


def build_model(config: ModelConfig) -> CLIP:
    return CLIP(config)


def load_model(path_or_config_name, device="cpu", quick_gelu: bool | None = None):
    """(model in eval mode on `device`, its preprocessing transform) from a checkpoint file or a config name
    (random weights). Files without a config get one inferred from their shapes; their activation cannot be seen
    in shapes, so it follows the format (QuickGELU for OpenAI's TorchScript releases, GELU for open_clip-style
    state dicts) unless `quick_gelu` says otherwise."""
    if not Path(path_or_config_name).is_file():
        if str(path_or_config_name) not in named_configs():
            raise UserError(f"checkpoint not found: {path_or_config_name} (nor is it a model config name: "
                            f"{', '.join(named_configs())})")
        model = build_model(model_config_by_name(str(path_or_config_name)))
    else:
        state_dict, config, file_format = read_weights(path_or_config_name)
        if config is None:
            default_quick_gelu = file_format == "openai-torchscript"
            config = infer_config(state_dict, str(path_or_config_name),
                                  default_quick_gelu if quick_gelu is None else quick_gelu)
        model = build_model(config)
        load_weights_strict(model, state_dict, str(path_or_config_name))
    model = model.to(device).eval()
    return model, image_transform(model.config.image_size, model.config.image_mean, model.config.image_std)


__all__ = ["CLIP", "ModelConfig", "build_model", "load_model", "model_config_by_name"]
