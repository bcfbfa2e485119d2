"""Several CPU processes in one gloo group, as torchrun would start them, for the tests that compare ranks."""
import contextlib
import datetime
import socket

import torch.distributed as dist


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gloo_process_group(rank: int, world_size: int, port: int, timeout_s: float | None = None):
    """`timeout_s` bounds each collective, so that ranks that disagree on their collectives fail instead of
    waiting for each other for torch's default half hour."""
    timeout = datetime.timedelta(seconds=timeout_s) if timeout_s else None
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()
