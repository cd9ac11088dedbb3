"""Start each step the same way on every rank, and time it on the GPU.

A profiler costs the host time per op (tens of µs with the torch profiler's Execution Trace, measured
about 7x an unprofiled launch; less under Nsight Systems), and a host that launches ops more slowly
than the GPU runs them starves the GPU: then the trace measures the host, every kernel runs alone and
nothing can overlap (measured on 2 x H200: DeepSeek V4 comm-stream 6 % overlap without a head start). Real engines keep
the GPU fed because the host runs layers ahead. So for models whose overlap is GPU-side (`head_start`
in the registry), each step begins with
  1. a host barrier (gloo), so every rank starts enqueuing together;
  2. a head start: a spin kernel of H ms on the step's stream, the same H on every rank, during which
     the host enqueues the whole step; H starts at a multiple of the warm-up's launch time (no
     profiler) and grows to 1.5 × the slowest launch seen so far;
  3. an all-reduce of one element on the step's stream ("step_align"): every GPU leaves it at the same
     moment, so the first collective of the step does not start with a wait for a peer.
Step time is GPU time from the end of that all-reduce to the end of the step (CUDA events); on a CPU,
wall time. Rank side: imports torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..instrument import region

# First head start, as a multiple of the warm-up's launch time (no profiler): the Execution Trace
# multiplies the host's per-op cost by about 7; Nsight Systems' CUDA tracing by about 2.
HEAD_START_FACTOR = {"torch": 10.0, "nsys": 4.0, "none": 2.0}
HEAD_START_GROWTH = 1.5
HEAD_START_MARGIN_MS = 1.0


@dataclass(frozen=True)
class StepTiming:
    step_ms: float  # GPU time of the step (wall time on a CPU)
    launch_ms: float  # host time to enqueue it
    head_start_ms: float  # 0 without a head start


class StepClock:
    def __init__(self, ctx: Any, head_start: bool, profiler: str):
        self.ctx = ctx
        self.cuda = ctx.streams.cuda
        self.enabled = head_start and self.cuda
        self.factor = HEAD_START_FACTOR[profiler]
        self.head_start_ms = 0.0
        self._slowest_launch_ms = 0.0
        if self.enabled:
            import torch
            import torch.distributed as dist

            self._torch, self._dist = torch, dist
            self._token = torch.zeros(1, device=ctx.device)
            self._cycles_per_ms = self._calibrate_spin()

    def run(self, forward: Any) -> StepTiming:
        """Barrier, head start, GPU alignment, forward (timed), wait for the GPU."""
        self.ctx.barrier()
        if self.head_start_ms:
            self.spin(self.head_start_ms)
        self.align()
        if not self.cuda:
            start = time.perf_counter_ns()
            forward()
            elapsed = (time.perf_counter_ns() - start) / 1e6
            return StepTiming(elapsed, elapsed, 0.0)
        import torch

        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        start = time.perf_counter_ns()
        forward()
        launch_ms = (time.perf_counter_ns() - start) / 1e6
        end.record()
        end.synchronize()
        self._slowest_launch_ms = max(self._slowest_launch_ms, launch_ms)
        return StepTiming(begin.elapsed_time(end), launch_ms, self.head_start_ms)

    def start_profiling(self) -> None:
        """After the warm-up: the first head start, from the slowest warm-up launch."""
        if self.enabled:
            self.head_start_ms = self.agree(self.factor * self._slowest_launch_ms + HEAD_START_MARGIN_MS)

    def grow(self) -> None:
        """After a profiled step: never shorter than 1.5 × the slowest launch seen."""
        if self.enabled:
            wanted = HEAD_START_GROWTH * self._slowest_launch_ms + HEAD_START_MARGIN_MS
            self.head_start_ms = self.agree(max(self.head_start_ms, wanted))

    def spin(self, ms: float) -> None:
        """Keep this rank's GPU busy for `ms` (all ranks pass the same value)."""
        if self.enabled:
            with region("head_start"):
                self._torch.cuda._sleep(int(ms * self._cycles_per_ms))

    def agree(self, ms: float) -> float:
        """The largest value any rank wants, so every GPU spins equally long."""
        value = self._torch.tensor([ms], dtype=self._torch.float64)
        self._dist.all_reduce(value, op=self._dist.ReduceOp.MAX, group=self.ctx.control)
        return float(value.item())

    def align(self) -> None:
        """Enqueue a one-element all-reduce: the GPUs of all ranks leave it together."""
        if self.enabled:
            with region("step_align"):
                self._dist.all_reduce(self._token)

    def _calibrate_spin(self) -> float:
        torch = self._torch
        cycles = 20_000_000
        torch.cuda._sleep(cycles)  # first launch loads the kernel
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
        return cycles / begin.elapsed_time(end)
