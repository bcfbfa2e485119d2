"""Locked towers (LiT, Zhai et al. 2022): parameters of a tower that training leaves as they are. The groups and
their order follow open_clip's lock_image / lock_text, so that its unlocked-group counts mean the same here."""
from torch import nn

from model.clip import CLIP


class BatchNormWithFixedStatistics(nn.BatchNorm2d):
    """A batch norm that stays in eval mode whatever model.train() asks: it normalises by its running statistics
    and never updates them. Its state dict is a BatchNorm2d's, so checkpoints load either way."""

    def train(self, mode: bool = True):
        return super().train(False)


def image_groups(model: CLIP) -> list[list[nn.Module | nn.Parameter]]:
    """The image tower in groups from input to output: ResNet: stem, layer1..layer4, attention pool; ViT: patch
    embedding stem, each block (the last with the final norm), projection."""
    visual = model.visual
    if model.config.is_vit:
        blocks = list(visual.transformer.resblocks)
        return [[visual.conv1, visual.class_embedding, visual.positional_embedding, visual.ln_pre],
                *[[block] for block in blocks[:-1]], [blocks[-1], visual.ln_post], [visual.proj]]
    stem = [visual.conv1, visual.bn1, visual.conv2, visual.bn2, visual.conv3, visual.bn3]
    return [stem, [visual.layer1], [visual.layer2], [visual.layer3], [visual.layer4], [visual.attnpool]]


def text_groups(model: CLIP) -> list[list[nn.Module | nn.Parameter]]:
    """The text tower in groups from input to output: embeddings, each block (the last with the final norm),
    projection."""
    blocks = list(model.transformer.resblocks)
    return [[model.token_embedding, model.positional_embedding], *[[block] for block in blocks[:-1]],
            [blocks[-1], model.ln_final], [model.text_projection]]


def parameters_of(group: list[nn.Module | nn.Parameter]) -> list[nn.Parameter]:
    return [p for item in group for p in ([item] if isinstance(item, nn.Parameter) else item.parameters())]


def lock_groups(groups: list, unlocked: int) -> list:
    """Freezes every group but the last `unlocked` (none when `unlocked` is at least their number: open_clip's
    groups[-unlocked:] unlocks them all then); returns the frozen groups."""
    locked = groups[:max(len(groups) - unlocked, 0)]
    for group in locked:
        for parameter in parameters_of(group):
            parameter.requires_grad_(False)
    return locked


def lock_image_tower(model: CLIP, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> tuple[int, int]:
    """All of the image tower but its last `unlocked_groups` groups (image_groups) gets no gradient; with
    `freeze_bn_stats` the locked groups' batch norms also keep their running statistics. Returns (groups locked,
    groups in the tower)."""
    groups = image_groups(model)
    locked = lock_groups(groups, unlocked_groups)
    for group in locked:
        if freeze_bn_stats:
            for item in group:
                for module in item.modules() if isinstance(item, nn.Module) else ():
                    if type(module) is nn.BatchNorm2d:
                        module.__class__ = BatchNormWithFixedStatistics
                        module.eval()
    return len(locked), len(groups)


def lock_text_tower(model: CLIP, unlocked_layers: int = 0) -> tuple[int, int]:
    """All of the text tower but its last `unlocked_layers` groups (text_groups) gets no gradient. Returns (groups
    locked, groups in the tower)."""
    groups = text_groups(model)
    return len(lock_groups(groups, unlocked_layers)), len(groups)
