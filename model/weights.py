"""Weights from any CLIP file we know: ours (weights + the config they were built from), OpenAI's releases
(TorchScript archives or plain state dicts), open_clip checkpoints and safetensors exports. Where a file carries
no config, the architecture is inferred from the tensor shapes."""
import json
import re
from pathlib import Path

import torch

from model.config import ModelConfig
from model.torchscript import is_torchscript_archive, read_torchscript_tensors
from utils.atomic_files import write_bytes_atomically
from utils.checkpoint import load_checkpoint
from utils.config import as_dict, build
from utils.errors import UserError

# tensors some exports keep beside the weights: OpenAI's scalars and the text causal mask
_NOT_WEIGHTS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


def read_weights(path) -> tuple[dict, ModelConfig | None, str]:
    """(state_dict, model config if the file carries one, a name for the file's format)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if is_torchscript_archive(path):
        return _clean(read_torchscript_tensors(path)), None, "openai-torchscript"
    payload = load_checkpoint(path)
    if not isinstance(payload, dict):
        raise UserError(f"{path}: expected a dict of tensors or a checkpoint dict, got {type(payload).__name__}")
    if "model" in payload and "model_config" in payload:
        if "backbone" in payload["model_config"]:
            raise UserError(f"{path}: a fine-tuned classifier (finetune.py), not a CLIP model: it has no text tower; "
                            f"its test results are in its run folder")
        config = build(ModelConfig, payload["model_config"], f"{path}:model_config")
        return payload["model"], config, "clip-toolkit"
    if isinstance(payload.get("state_dict"), dict):
        return _clean(payload["state_dict"]), None, "open_clip"
    return _clean(payload), None, "state_dict"


def _clean(state_dict: dict) -> dict:
    """Drop DDP/DataParallel `module.` prefixes and non-weight tensors."""
    cleaned = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = re.sub(r"^(module\.)+", "", key)
        if key.split(".")[-1] not in _NOT_WEIGHTS:
            cleaned[key] = value
    return cleaned


def _read_safetensors(path: Path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
        state_dict = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise UserError(f"{path}: not a readable safetensors file ({error})") from None
    config = None
    if "model_config" in metadata:
        config = build(ModelConfig, json.loads(metadata["model_config"]), f"{path}:model_config")
    return _clean(state_dict), config, "safetensors"


def export_safetensors(model, path) -> None:
    """Weights only, with the model config as JSON metadata so the file loads on its own."""
    from safetensors.torch import save

    tensors = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    write_bytes_atomically(path, save(tensors, metadata={"model_config": json.dumps(as_dict(model.config))}))


def _count_blocks(state_dict: dict, pattern: str) -> int:
    return len({match.group(1) for key in state_dict if (match := re.match(pattern, key))})


def infer_config(state_dict: dict, source: str, quick_gelu: bool) -> ModelConfig:
    """Architecture from tensor shapes (the layout every CLIP release shares)."""
    required = ("positional_embedding", "token_embedding.weight", "text_projection", "ln_final.weight",
                "visual.attnpool.positional_embedding" if "visual.proj" not in state_dict else "visual.conv1.weight")
    missing = [key for key in required if key not in state_dict]
    if missing:
        raise UserError(f"{source}: not a CLIP checkpoint: missing {', '.join(missing)} "
                        f"(found {len(state_dict)} tensors, e.g. {', '.join(list(state_dict)[:3])})")
    text_width = state_dict["ln_final.weight"].shape[0]
    common = dict(
        embed_dim=state_dict["text_projection"].shape[1],
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        text_width=text_width,
        text_heads=text_width // 64,
        text_layers=_count_blocks(state_dict, r"transformer\.resblocks\.(\d+)\."),
        quick_gelu=quick_gelu,
        sigmoid_logits="logit_bias" in state_dict,
    )
    if "visual.proj" in state_dict:
        patch_size = state_dict["visual.conv1.weight"].shape[-1]
        grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return ModelConfig(image_size=patch_size * grid, vision_patch_size=patch_size,
                           vision_width=state_dict["visual.conv1.weight"].shape[0],
                           vision_layers=_count_blocks(state_dict, r"visual\.transformer\.resblocks\.(\d+)\."),
                           **common)
    grid = round((state_dict["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
    return ModelConfig(image_size=grid * 32, vision_width=state_dict["visual.layer1.0.conv1.weight"].shape[0],
                       vision_layers=[_count_blocks(state_dict, rf"visual\.layer{stage}\.(\d+)\.")
                                      for stage in (1, 2, 3, 4)],
                       **common)


def load_weights_strict(model, state_dict: dict, source: str, part=None) -> None:
    """Load all weights, or with `part` (a test on names) those of that part of the model from the file's weights
    of that part, or fail with one line naming what is missing, unexpected or mis-shaped."""
    expected = {key: value for key, value in model.state_dict().items() if part is None or part(key)}
    state_dict = {key: value for key, value in state_dict.items() if part is None or part(key)}
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    misshaped = [f"{key} file {tuple(state_dict[key].shape)} vs model {tuple(value.shape)}"
                 for key, value in expected.items() if key in state_dict and state_dict[key].shape != value.shape]
    problems = [f"{label} ({len(keys)}): {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
                if keys]
    if problems:
        raise UserError(f"{source}: weights do not fit the model: {'; '.join(problems)}")
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in state_dict.items()},
                          strict=part is None)
