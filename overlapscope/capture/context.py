"""What a workload's factory receives on each rank: `RankContext` (rank side: imports torch).

`ctx.streams` offers the CUDA stream operations as no-ops on a CPU, so the same workload code runs
under gloo on a laptop (every op then completes in program order) and under NCCL on GPUs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


class _NoStream:
    """A CUDA stream's interface with nothing behind it: on a CPU every op completes in program order."""

    def wait_stream(self, other: Any) -> None:
        return None

    def wait_event(self, event: Any) -> None:
        return None

    def synchronize(self) -> None:
        return None


class _NoEvent:
    def record(self, stream: Any = None) -> None:
        """Nothing to record: on a CPU every op has completed in program order."""


class Streams:
    """The stream operations workloads use, as no-ops on a CPU so the same code runs under gloo."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device

    def current(self) -> Any:
        return torch.cuda.current_stream(self.device) if self.cuda else _NoStream()

    def new(self) -> Any:
        return torch.cuda.Stream(self.device) if self.cuda else _NoStream()

    def event(self) -> Any:
        return torch.cuda.Event() if self.cuda else _NoEvent()

    def use(self, stream: Any) -> contextlib.AbstractContextManager[Any]:
        return torch.cuda.stream(stream) if self.cuda else contextlib.nullcontext()

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    @staticmethod
    def wait(waiter: Any, producer: Any) -> None:
        """`waiter` waits for the work queued so far on `producer`; nothing when they are one stream."""
        if waiter is not producer:
            waiter.wait_stream(producer)


@dataclass
class RankContext:
    rank: int
    world_size: int
    device: torch.device
    control: Any  # a gloo process group: host-side barriers and small messages, no GPU kernels
    streams: Streams

    def barrier(self) -> None:
        dist.barrier(group=self.control)

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)
