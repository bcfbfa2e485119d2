"""The architecture of a CLIP model, as data: enough to build it, stored in every checkpoint."""
import dataclasses
from pathlib import Path

from utils.config import build, read_yaml
from utils.errors import UserError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
NAMED_CONFIGS_FILE = Path(__file__).with_name("model_config.yaml")


@dataclasses.dataclass
class ModelConfig:
    embed_dim: int
    image_size: int
    vision_layers: list[int] | int  # four stage depths: modified ResNet; one depth: ViT
    vision_width: int
    vision_patch_size: int | None = None  # ViT only
    vision_ln_pre: bool = True  # ViT: CLIP's LayerNorm before the transformer (torchvision's ViT has none)
    vision_norm_eps: float = 1e-5  # ViT: its LayerNorms' epsilon (torchvision's ViT: 1e-6)
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_heads: int = 8
    text_layers: int = 12
    quick_gelu: bool = True  # OpenAI's models use x * sigmoid(1.702 x); most open_clip-trained models use GELU
    sigmoid_logits: bool = False  # SigLIP: a learnable logit bias beside the temperature (trainer loss.kind: siglip)
    image_mean: list[float] = dataclasses.field(default_factory=lambda: list(OPENAI_MEAN))
    image_std: list[float] = dataclasses.field(default_factory=lambda: list(OPENAI_STD))

    def __post_init__(self):
        if self.is_vit and not self.vision_patch_size:
            raise ValueError("a ViT image tower (vision_layers is one number) needs vision_patch_size")
        if not self.is_vit and len(self.vision_layers) != 4:
            raise ValueError(f"vision_layers for a ResNet needs 4 stage depths, got {self.vision_layers}")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width {self.text_width} is not divisible by text_heads {self.text_heads}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values (R, G, B)")

    @property
    def is_vit(self) -> bool:
        return isinstance(self.vision_layers, int)

    @property
    def vision_heads(self) -> int:
        # CLIP's choice: 64-wide heads; the ResNet's attention pool works on width * 32 channels
        return self.vision_width // 64 if self.is_vit else self.vision_width * 32 // 64


def named_configs() -> dict:
    return read_yaml(NAMED_CONFIGS_FILE)


def model_config_by_name(name: str, overrides: dict | None = None) -> ModelConfig:
    configs = named_configs()
    if name not in configs:
        raise UserError(f"unknown model config '{name}' (not in {NAMED_CONFIGS_FILE}); "
                        f"known: {', '.join(configs)}")
    return build(ModelConfig, {**configs[name], **(overrides or {})}, f"{NAMED_CONFIGS_FILE}:{name}")
