"""Start N ranks on this host, each with its process group, device and control group.

Worker code: torch is imported inside the functions, so importing this module stays cheap.
`fn(ctx, payload)` runs in every rank; it must be a module-level function (spawn pickles it by name).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_ranks(fn: Callable[[Any, Any], None], world_size: int, device: str, payload: Any) -> None:
    """Run `fn` on `world_size` fresh processes (nccl on cuda, gloo on cpu); raises when a rank fails."""
    import torch.multiprocessing as mp

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(free_port())
    mp.spawn(_rank_main, args=(fn, world_size, device, payload), nprocs=world_size, join=True)


def _rank_main(rank: int, fn: Callable[[Any, Any], None], world_size: int, device: str, payload: Any) -> None:
    import torch
    import torch.distributed as dist

    from .context import RankContext, Streams

    if device == "cuda":
        torch.cuda.set_device(rank)
        dev = torch.device("cuda", rank)
        dist.init_process_group("nccl", rank=rank, world_size=world_size, device_id=dev)
        control = dist.new_group(backend="gloo")  # barriers and small messages without GPU kernels
    else:
        # One thread per rank, as torchrun does: OpenMP threads spinning while gloo waits would take
        # the cores the other ranks need (a tiny step took 600 ms on two cores instead of 10).
        torch.set_num_threads(1)
        dev = torch.device("cpu")
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        control = dist.group.WORLD
    try:
        fn(RankContext(rank, world_size, dev, control, Streams(dev)), payload)
    finally:
        dist.destroy_process_group()
