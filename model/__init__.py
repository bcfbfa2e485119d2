"""CLIP models: build one from a config, or load one from any checkpoint we know, ready to use."""
import dataclasses
from pathlib import Path

from model.clip import CLIP
from model.config import ModelConfig, model_config_by_name, named_configs
from utils.config import as_dict, build
from model.preprocess import image_transform
from model.pretrained import HF_HUB_PREFIX, is_hf_hub_name, pretrained_file
from model.weights import infer_config, load_weights_strict, read_weights
from utils.errors import UserError


def build_model(config: ModelConfig) -> CLIP:
    return CLIP(config)


def load_model(path_or_config_name, device="cpu", quick_gelu: bool | None = None, pretrained: str | None = None):
    """(model in eval mode on `device`, its preprocessing transform) from a checkpoint file, released weights by name
    (an architecture with `pretrained`, e.g. ("ViT-B-32", "openai"), or "hf-hub:ORG/REPO": model.pretrained), or a
    config name (random weights). Files without a config get one inferred from their shapes; their activation cannot
    be seen in shapes, so it follows the release, else the format (QuickGELU for OpenAI's TorchScript releases, GELU
    for open_clip-style state dicts), unless `quick_gelu` says otherwise."""
    if pretrained is not None or is_hf_hub_name(path_or_config_name):
        path, release_settings = pretrained_file(str(path_or_config_name), pretrained)
        model = _model_from_file(path, quick_gelu, release_settings)
    elif Path(path_or_config_name).is_file():
        model = _model_from_file(path_or_config_name, quick_gelu, {})
    elif str(path_or_config_name) in named_configs():
        model = build_model(model_config_by_name(str(path_or_config_name)))
    else:
        raise UserError(f"checkpoint not found: {path_or_config_name} (nor is it a model config name: "
                        f"{', '.join(named_configs())}; released weights load with pretrained=TAG or as "
                        f"{HF_HUB_PREFIX}ORG/REPO)")
    model = model.to(device).eval()
    return model, image_transform(model.config.image_size, model.config.image_mean, model.config.image_std)


def _model_from_file(path, quick_gelu: bool | None, release_settings: dict) -> CLIP:
    state_dict, config, file_format = read_weights(path)
    if config is None:
        stated = {"quick_gelu": file_format == "openai-torchscript", **release_settings}
        if quick_gelu is not None:
            stated["quick_gelu"] = quick_gelu
        config = dataclasses.replace(infer_config(state_dict, str(path), stated.pop("quick_gelu")), **stated)
    model = build_model(config)
    load_weights_strict(model, state_dict, str(path))
    return model


def initial_model(name: str | None, overrides: dict, init_from: str | None, default_name: str) -> CLIP:
    """The model a training run starts from: random weights of the named config (`default_name` when `name` is
    None), or the weights of `init_from` in the architecture the file carries or implies. A name or overrides
    given with `init_from` must describe that architecture: a mismatch is an error, not a silent choice."""
    if init_from is None:
        return build_model(model_config_by_name(name or default_name, overrides))
    model, _ = load_model(init_from)
    wanted = model_config_by_name(name, overrides) if name else \
        build(ModelConfig, {**as_dict(model.config), **overrides}, "model.overrides")
    differences = [f"{key} {value} vs {getattr(model.config, key)}" for key, value in as_dict(wanted).items()
                   if value != getattr(model.config, key)]
    if differences:
        given = f"model.name {name}" + (" with model.overrides" if overrides else "") if name else "model.overrides"
        raise UserError(f"{given} disagrees with the architecture of model.init_from {init_from} "
                        f"({'; '.join(differences)}): leave model.name and model.overrides unset to take the file's")
    return model.train()


__all__ = ["CLIP", "ModelConfig", "build_model", "initial_model", "load_model", "model_config_by_name"]
