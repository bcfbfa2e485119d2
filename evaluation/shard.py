"""One process's share of an evaluation set, and how the shares' results come together.

Under torchrun each rank scores a contiguous block of the items (sizes differ by at most one, none is padded or
repeated), with no collective inside its loop, so ranks with more batches never leave the others waiting at one.
The results meet in one collective at the end: counts are summed, features gathered in rank order (which is item
order). The default is a single process scoring everything.
"""
import dataclasses
from typing import Callable

import torch

from utils.distributed import DistributedContext, all_gather_object, all_reduce_sum


@dataclasses.dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1
    sum: Callable[[torch.Tensor], torch.Tensor] = lambda tensor: tensor  # over ranks (utils.distributed)
    gather: Callable[[object], list] = lambda value: [value]  # every rank's value, in rank order

    def block(self, num_items: int) -> range:
        """The indices of this rank's items."""
        return range(self.rank * num_items // self.world_size, (self.rank + 1) * num_items // self.world_size)

    def gather_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's rows, concatenated in rank order; ranks with no rows add none."""
        parts = [part for part in self.gather(rows) if part.numel()]
        return torch.cat(parts) if parts else rows


def process_shard(ctx: DistributedContext) -> Shard:
    """This process's share under torchrun; sums on the device, since NCCL reduces CUDA tensors only."""
    return Shard(ctx.rank, ctx.world_size, lambda tensor: all_reduce_sum(tensor.to(ctx.device)).cpu(),
                 all_gather_object)
