"""Seeded, stratified splits of a labelled set: a held-out share of every class."""
import torch


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept indices, held-out indices): from every class round(fraction * count) samples, at least one when
    the class has two or more, drawn with `seed`. Both sorted."""
    generator = torch.Generator().manual_seed(seed)
    kept, held_out = [], []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = round(fraction * len(members))
        count = min(max(count, 1), len(members) - 1) if len(members) > 1 else 0
        held_out.append(members[:count])
        kept.append(members[count:])
    return torch.cat(kept).sort().values, torch.cat(held_out).sort().values
