"""Export a CLIP model (our checkpoint, or any file or config name `model.load_model` reads) for other tools:

  python -m model.export CKPT --format open_clip OUT
      open_clip's hub layout: open_clip_model.safetensors + open_clip_config.json;
      open_clip.create_model_and_transforms("local-dir:OUT")
  python -m model.export CKPT --format transformers OUT
      a transformers CLIPModel folder (ViT image towers only): config.json + model.safetensors;
      transformers.CLIPModel.from_pretrained("OUT")
  python -m model.export CKPT --format safetensors OUT
      our weights with our model config as metadata: OUT/model.safetensors; model.load_model("OUT/model.safetensors")

OUT is a folder; one that exists and is not empty is refused unless --force (which replaces the files it writes).
"""
import dataclasses
import json
import re
import sys
import typing
from pathlib import Path

from model import load_model
from model.clip import CLIP
from model.config import ModelConfig
from model.weights import export_safetensors
from utils.atomic_files import write_bytes_atomically, write_text_atomically
from utils.cli import SettingsParser, run_command, setting
from utils.errors import UserError

# CLIP's choice, which ModelConfig.vision_heads follows: 64-wide attention heads
HEAD_WIDTH = 64

# Our parameter names (OpenAI's) to transformers' CLIPModel names, applied in order to every name
TRANSFORMERS_RENAMES = (
    (r"^token_embedding\.", "text_model.embeddings.token_embedding."),
    (r"^positional_embedding$", "text_model.embeddings.position_embedding.weight"),
    (r"^transformer\.resblocks\.", "text_model.encoder.layers."),
    (r"^ln_final\.", "text_model.final_layer_norm."),
    (r"^visual\.class_embedding$", "vision_model.embeddings.class_embedding"),
    (r"^visual\.conv1\.", "vision_model.embeddings.patch_embedding."),
    (r"^visual\.positional_embedding$", "vision_model.embeddings.position_embedding.weight"),
    (r"^visual\.ln_pre\.", "vision_model.pre_layrnorm."),  # sic: transformers' spelling
    (r"^visual\.transformer\.resblocks\.", "vision_model.encoder.layers."),
    (r"^visual\.ln_post\.", "vision_model.post_layernorm."),
    (r"\.attn\.out_proj\.", ".self_attn.out_proj."),
    (r"\.ln_1\.", ".layer_norm1."),
    (r"\.ln_2\.", ".layer_norm2."),
    (r"\.mlp\.c_fc\.", ".mlp.fc1."),
    (r"\.mlp\.c_proj\.", ".mlp.fc2."),
)
# our projections are matrices applied as x @ P; transformers' are bias-free nn.Linear layers holding P transposed
TRANSFORMERS_PROJECTIONS = {"text_projection": "text_projection.weight", "visual.proj": "visual_projection.weight"}


def open_clip_config(config: ModelConfig) -> dict:
    """open_clip's open_clip_config.json (as its hub export writes it): the model_cfg its CLIP class is built from,
    and the preprocessing ours uses (shorter side resized bicubic, centre crop, our mean and std)."""
    vision = {"image_size": config.image_size, "layers": config.vision_layers, "width": config.vision_width,
              "head_width": HEAD_WIDTH}
    if config.is_vit:
        vision["patch_size"] = config.vision_patch_size
        vision["no_ln_pre"] = not config.vision_ln_pre
        vision["norm_kwargs"] = {"eps": config.vision_norm_eps}
    model_cfg = {
        "embed_dim": config.embed_dim,
        "quick_gelu": config.quick_gelu,
        "vision_cfg": vision,
        "text_cfg": {"context_length": config.context_length, "vocab_size": config.vocab_size,
                     "width": config.text_width, "heads": config.text_heads, "layers": config.text_layers},
    }
    if config.sigmoid_logits:
        model_cfg["init_logit_bias"] = -10.0  # gives open_clip's CLIP its logit_bias parameter (the value is loaded)
    preprocess_cfg = {"mean": list(config.image_mean), "std": list(config.image_std),
                      "interpolation": "bicubic", "resize_mode": "shortest"}
    return {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}


def export_open_clip(model: CLIP, folder: Path) -> str:
    # our parameter names are open_clip's (tests/test_model_parity.py), so the state dict goes out as it is
    export_safetensors(model, folder / "open_clip_model.safetensors")
    write_text_atomically(folder / "open_clip_config.json", json.dumps(open_clip_config(model.config), indent=2))
    return f"open_clip.create_model_and_transforms('local-dir:{folder}')"


def transformers_config(config: ModelConfig) -> dict:
    """config.json of a transformers CLIPModel with our architecture."""
    activation = "quick_gelu" if config.quick_gelu else "gelu"  # transformers' "gelu" is the exact one, as nn.GELU
    text = {
        "vocab_size": config.vocab_size, "hidden_size": config.text_width, "intermediate_size": 4 * config.text_width,
        "num_hidden_layers": config.text_layers, "num_attention_heads": config.text_heads,
        "max_position_embeddings": config.context_length, "hidden_act": activation, "layer_norm_eps": 1e-5,
        "projection_dim": config.embed_dim,
        # our text tower reads its features at the largest token id, the end of text (the vocabulary's last id);
        # transformers pools at the first eos_token_id, the same position; padding is 0 as our tokenizer's
        "bos_token_id": config.vocab_size - 2, "eos_token_id": config.vocab_size - 1, "pad_token_id": 0,
    }
    vision = {
        "hidden_size": config.vision_width, "intermediate_size": 4 * config.vision_width,
        "num_hidden_layers": config.vision_layers, "num_attention_heads": config.vision_heads,
        "image_size": config.image_size, "patch_size": config.vision_patch_size, "num_channels": 3,
        "hidden_act": activation, "layer_norm_eps": config.vision_norm_eps, "projection_dim": config.embed_dim,
    }
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": config.embed_dim,
            "text_config": text, "vision_config": vision}


def transformers_state_dict(model: CLIP) -> dict:
    """Our weights under CLIPModel's names; its position ids are buffers it builds itself, not weights."""
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name in TRANSFORMERS_PROJECTIONS:
            tensors[TRANSFORMERS_PROJECTIONS[name]] = tensor.T
            continue
        for pattern, replacement in TRANSFORMERS_RENAMES:
            name = re.sub(pattern, replacement, name)
        if fused := re.fullmatch(r"(.*)\.attn\.in_proj_(weight|bias)", name):
            for part, chunk in zip("qkv", tensor.chunk(3)):
                tensors[f"{fused[1]}.self_attn.{part}_proj.{fused[2]}"] = chunk
        else:
            tensors[name] = tensor
    return {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}


def export_transformers(model: CLIP, folder: Path) -> str:
    if not model.config.is_vit:
        raise UserError("--format transformers needs a ViT image tower: transformers has no CLIP with CLIP's "
                        "modified ResNet; export this model with --format open_clip or safetensors")
    if not model.config.vision_ln_pre:
        raise UserError("--format transformers: this model's ViT has no LayerNorm before its transformer (a "
                        "torchvision ViT start), which transformers' CLIPModel always applies; export it with "
                        "--format open_clip or safetensors")
    if model.config.sigmoid_logits:
        raise UserError("--format transformers: this model has a SigLIP logit bias, which transformers' CLIPModel "
                        "lacks; export it with --format open_clip or safetensors")
    from safetensors.torch import save

    write_bytes_atomically(folder / "model.safetensors", save(transformers_state_dict(model), {"format": "pt"}))
    write_text_atomically(folder / "config.json", json.dumps(transformers_config(model.config), indent=2))
    return f"transformers.CLIPModel.from_pretrained('{folder}')"


def export_ours(model: CLIP, folder: Path) -> str:
    export_safetensors(model, folder / "model.safetensors")
    return f"model.load_model('{folder / 'model.safetensors'}')"


# format -> exporter(model, folder) writing the files, returning how to load them
EXPORTERS = {"open_clip": export_open_clip, "transformers": export_transformers, "safetensors": export_ours}


def check_output_folder(folder: Path, force: bool) -> None:
    if folder.is_file():
        raise UserError(f"{folder} is a file: the export writes a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise UserError(f"{folder} exists and is not empty: choose a new folder, or pass --force to replace the "
                        f"files the export writes")


def export(checkpoint, export_format: str, folder, force: bool = False) -> str:
    """Write `checkpoint`'s model to `folder` in `export_format`; returns how to load the result."""
    folder = Path(folder)
    check_output_folder(folder, force)
    model, _ = load_model(checkpoint)
    return EXPORTERS[export_format](model, folder)


@dataclasses.dataclass(kw_only=True)
class ExportSettings:
    checkpoint: str
    format: typing.Literal[tuple(EXPORTERS)]
    out: str
    force: bool = setting(False, "write into a folder that is not empty")


PARSER = SettingsParser(__doc__, ExportSettings, positionals={
    "checkpoint": "our checkpoint, an OpenAI or open_clip weights file, or a model config name",
    "out": "the folder to write"}, prog="python -m model.export")
PARSER.add_field_flags()


def run(settings: ExportSettings) -> int:
    how_to_load = export(settings.checkpoint, settings.format, settings.out, settings.force)
    print(f"wrote {settings.out} ({settings.format}); load it with {how_to_load}")
    return 0


def main(argv=None) -> int:
    return run_command(lambda: run(PARSER.settings(argv)))


if __name__ == "__main__":
    sys.exit(main())
