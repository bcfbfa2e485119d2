"""Everything that touches torch.distributed: one process per device under torchrun (NCCL on CUDA, gloo on CPU),
or a plain single process without it. The rest of the code asks this module, never torch.distributed."""
import contextlib
import dataclasses
import os
import socket

import torch
import torch.distributed as dist

from utils.errors import UserError


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistributedContext:
    """Read torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE); multi-node needs nothing more than torchrun's
    own --nnodes/--rdzv flags."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=chosen if use_cuda else None)
    return DistributedContext(rank, local_rank, world_size, chosen)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor)
    return tensor / dist.get_world_size()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor)
    return tensor


def all_gather_object(value) -> list:
    """Every rank's `value` (any picklable object), in rank order; [value] in a single process."""
    if not is_distributed():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def on_main_for_all(action, is_main: bool):
    """`action()` on rank 0 alone (its result there, None elsewhere); a UserError it raises is raised on every
    rank, so that no rank waits for one that has stopped."""
    return _on_main(action, is_main, share_result=False)


def decided_on_main(action, is_main: bool):
    """`action()` on rank 0 alone, its (picklable) result returned on every rank: one decision that every rank
    follows. A UserError it raises is raised on every rank."""
    return _on_main(action, is_main, share_result=True)


def _on_main(action, is_main: bool, share_result: bool):
    result, failure = None, None
    if is_main:
        try:
            result = action()
        except UserError as error:
            failure = error
    shared, message = all_gather_object((result if share_result else None, str(failure) if failure else None))[0]
    if failure:
        raise failure
    if message:
        raise UserError(message)
    return result if is_main else shared


def on_every_rank_for_all(action):
    """`action()` on every rank; a UserError it raises on any rank is raised on every rank (the lowest such rank's
    message, naming the rank and its host), so that all ranks stop together instead of some waiting for the others
    in a collective."""
    try:
        result, message = action(), None
    except UserError as error:
        where = f"rank {rank()} on host {socket.gethostname()}: " if is_distributed() else ""
        result, message = None, where + str(error)
    failures = [failure for failure in all_gather_object(message) if failure]
    if failures:
        raise UserError(failures[0])
    return result


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Every rank's rows along dim 0, rank-major, without gradient (token ids, say, in the order of
    gather_with_grad's features)."""
    if not is_distributed():
        return rows
    rows = rows.contiguous()
    gathered = rows.new_empty((dist.get_world_size() * rows.shape[0], *rows.shape[1:]))
    dist.all_gather_into_tensor(gathered, rows)  # one collective straight into the result: no cat
    return gathered


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0. Backward sums every rank's gradient for this rank's slice: each rank's loss reads
    all ranks' features, and DDP then averages parameter gradients, so the result is the gradient of the mean of
    the ranks' losses: exact, not scaled by the world size."""

    @staticmethod
    def forward(ctx, features):
        ctx.rows = features.shape[0]
        return gather_rows(features)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather_with_grad(features: torch.Tensor) -> torch.Tensor:
    """Features of the global batch, rank-major; gradients flow back to the rank that computed each row."""
    if not is_distributed():
        return features
    return _GatherWithGrad.apply(features)


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session():
    """setup_distributed() for the `with` block, and the process group torn down however the block ends."""
    try:
        yield setup_distributed()
    finally:
        cleanup()
