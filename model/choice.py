"""The model a training run starts from: a named config or another run's weights, with locked towers."""
import dataclasses

from model import initial_model
from model.clip import CLIP
from model.locking import lock_image_tower, lock_text_tower
from model.tower_init import load_single_towers
from utils.errors import UserError

DEFAULT_MODEL = "RN50"


@dataclasses.dataclass
class ModelChoice:
    name: str | None = None  # a named config in model/model_config.yaml (default RN50, or init_from's architecture)
    overrides: dict = dataclasses.field(default_factory=dict)  # ModelConfig fields to change
    init_from: str | None = None  # a file load_model reads or hf-hub:ORG/REPO; fresh optimiser, schedule
    # then one tower from a file (model.tower_init): the image tower from a CLIP checkpoint or a torchvision ViT,
    # the text tower from a CLIP checkpoint
    init_image_from: str | None = None
    init_text_from: str | None = None
    # locked towers (model.locking; open_clip's groups): no gradient, no optimiser state, except the last N groups
    lock_image: bool = False
    lock_image_unlocked_groups: int = 0
    lock_image_freeze_bn_stats: bool = False  # the locked groups' batch norms keep their running statistics
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0

    def __post_init__(self):
        for name in ("lock_image_unlocked_groups", "lock_text_unlocked_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name} must be at least 0, got {getattr(self, name)}")


def chosen_model(choice: ModelChoice, loss_kind: str) -> tuple[CLIP, list[str]]:
    """The model the run starts from, fitted to its loss, with its locked towers; and a start-up line on each tower
    loaded from its own file and on each locked tower."""
    model = initial_model(choice.name, choice.overrides, choice.init_from, DEFAULT_MODEL)
    started = load_single_towers(model, choice.init_image_from, choice.init_text_from)
    fit_model_to_loss(model, loss_kind)
    locking = []
    if choice.lock_image:
        groups = lock_image_tower(model, choice.lock_image_unlocked_groups, choice.lock_image_freeze_bn_stats)
        locking.append(locking_line("image", "lock_image_unlocked_groups", choice.lock_image_unlocked_groups, *groups))
    if choice.lock_text:
        groups = lock_text_tower(model, choice.lock_text_unlocked_layers)
        locking.append(locking_line("text", "lock_text_unlocked_layers", choice.lock_text_unlocked_layers, *groups))
    return model, started + locking


def locking_line(tower: str, key: str, unlocked: int, locked: int, groups: int) -> str:
    line = f"{tower} tower: {locked} of its {groups} groups locked"
    if unlocked > groups:  # a count meant for a deeper tower: as in open_clip, the whole tower trains
        line += f" (model.{key}={unlocked} is more than its {groups} groups: all of them train)"
    return line


def fit_model_to_loss(model: CLIP, loss_kind: str) -> None:
    """SigLIP's loss gives the model (fresh or from init_from, e.g. a CLIP-trained tower for LiT) a logit bias;
    CLIP's softmax has no use for one, so a SigLIP model is refused."""
    if loss_kind == "siglip" and not model.config.sigmoid_logits:
        model.add_sigmoid_logits()
    if loss_kind == "clip" and model.config.sigmoid_logits:
        raise UserError("loss.kind=clip does not fit a model with a logit bias (a SigLIP model, or "
                        "model.overrides.sigmoid_logits: true): use loss.kind=siglip")
