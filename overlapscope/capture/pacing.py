"""Start each step the same way on every rank, keep the GPU fed, and time the step on the GPU.

A profiler costs the host time per op (tens of µs with the torch profiler's Execution Trace, measured
about 7x an unprofiled launch; less under Nsight Systems), and a host that launches ops more slowly
than the GPU runs them starves the GPU: then the trace measures the host, every kernel runs alone and
nothing can overlap (measured on 2 x H200: DeepSeek V4 comm-stream 6 % overlap without a head start).
Real engines keep the GPU fed because the host runs layers ahead. So for workloads whose overlap is
GPU-side (`head_start`), each step begins, inside the host range `overlapscope/pacing`, with
  1. a host barrier (gloo), so every rank starts enqueuing together;
  2. a head start (`overlapscope/pacing/head_start`): a spin kernel of H ms on the step's stream, the
     same H on every rank, during which the host enqueues ahead of the GPU;
  3. an all-reduce of one element on the step's stream (`overlapscope/pacing/step_align`): every GPU
     leaves it at the same moment, so the first collective of the step does not start with a wait.
The spin is the harness's, not the workload's: run.json names its kernel in `exclude_kernels` so an
analysis can leave it out of the compute totals.

H is the smallest head start that keeps the GPU fed, never more than about the launch time. With L
the host's time to enqueue a profiled step and T the GPU time of a fed step (measured in the warm-up,
where every step after the second gets a head start of 1.5x the previous launch), the host finishes
no later than the GPU when H >= L - T; a step whose cheap kernels come first and long ones last
needs more, so
  H = max(L - T, 0) + COVER * min(L, T) + margin,  at most 1.2 L + margin
and when a profiled step's GPU time still exceeds T by more than STARVED_TOLERANCE while the host
took longer than H to launch it (the GPU waited for the host), 1.5x that excess is added to H for
the rest of the run (still at most 1.2 L + margin). The first
step under a profiler uses an estimate of L (HEAD_START_FACTOR x the warm-up launch); the torch
profiler's own warm-up step, which it does not record, measures the real L before the recorded steps.
Step time is GPU time from the end of that all-reduce to the end of the step (CUDA events); on a CPU,
wall time, and only the barrier runs. Rank side: imports torch.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from ..instrument import region

PACING_REGION = "overlapscope/pacing"
PACING_REGION_REGEX = r"^overlapscope/pacing(/|$)"
# torch.cuda._sleep's kernel: at::cuda::(anonymous namespace)::spin_kernel(long)
PACING_KERNELS = (r"spin_kernel",)

# A profiled step's launch time, as a multiple of the warm-up's (no profiler): the Execution Trace
# multiplies the host's per-op cost by about 7; Nsight Systems' CUDA tracing by about 2. rocprofv3's
# HIP API tracing is taken to cost as much as nsys's CUDA tracing (not measured: no AMD GPU here).
HEAD_START_FACTOR = {"torch": 7.0, "nsys": 2.5, "rocprofv3": 2.5, "none": 1.0}
HEAD_START_GROWTH = 1.5
HEAD_START_MARGIN_MS = 1.0
HEAD_START_CAP = 1.2  # x L: a head start as long as the launch already keeps the GPU fed throughout
COVER = 0.5  # share of min(L, T) added for steps whose GPU work is back-loaded
STARVED_TOLERANCE = 0.05  # a fed step's GPU time may vary this much (relative) without counting as starved


@dataclass(frozen=True)
class StepTiming:
    step_ms: float  # GPU time of the step (wall time on a CPU)
    launch_ms: float  # host time to enqueue it
    head_start_ms: float  # 0 without a head start


def head_start_for(launch_ms: float, fed_ms: float | None) -> float:
    """The head start that keeps a GPU that needs `fed_ms` fed by a host that needs `launch_ms`."""
    cap = HEAD_START_CAP * launch_ms + HEAD_START_MARGIN_MS
    if fed_ms is None:
        return cap
    wanted = max(launch_ms - fed_ms, 0.0) + COVER * min(launch_ms, fed_ms) + HEAD_START_MARGIN_MS
    return min(wanted, cap)


def starved_by(timing: StepTiming, fed_ms: float | None) -> float:
    """How much longer than a fed step this step took on the GPU, when its host was the reason (else 0)."""
    if fed_ms is None or timing.launch_ms <= timing.head_start_ms:
        return 0.0
    excess = timing.step_ms - fed_ms
    return excess if excess > STARVED_TOLERANCE * fed_ms else 0.0


class StepClock:
    def __init__(self, ctx: Any, head_start: bool, profiler: str):
        self.ctx = ctx
        self.cuda = ctx.streams.cuda
        self.paced = head_start
        self.enabled = head_start and self.cuda
        self.factor = HEAD_START_FACTOR[profiler]
        self.head_start_ms = 0.0
        self.fed_ms: float | None = None  # GPU time of the fastest step that had a head start
        self._warm_launch_ms = 0.0  # the last warm-up step's launch time (code paths loaded)
        self._warm_steps = 0
        self._extra_ms = 0.0  # added for good after a profiled step in which the GPU waited for the host
        self._profiled_launch_ms = 0.0  # the slowest launch under the profiler
        if self.enabled:
            import torch
            import torch.distributed as dist

            self._torch, self._dist = torch, dist
            self._token = torch.zeros(1, device=ctx.device)
            self._cycles_per_ms = self._calibrate_spin()

    def run(self, forward: Any) -> StepTiming:
        """Pacing (barrier, head start, GPU alignment), forward (timed), wait for the GPU."""
        with region(PACING_REGION) if self.paced else contextlib.nullcontext():
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
        return StepTiming(begin.elapsed_time(end), launch_ms, self.head_start_ms)

    def warmed(self, timing: StepTiming) -> None:
        """After a warm-up step: remember a fed step's GPU time; give the next one a generous head start
        (not after the first, whose launch loads every code path and can take seconds)."""
        self._warm_steps += 1
        if not self.enabled:
            return
        if timing.head_start_ms:
            self.fed_ms = timing.step_ms if self.fed_ms is None else min(self.fed_ms, timing.step_ms)
        self._warm_launch_ms = timing.launch_ms
        if self._warm_steps > 1:
            self.head_start_ms = self.agree(HEAD_START_GROWTH * timing.launch_ms + HEAD_START_MARGIN_MS)

    def start_profiling(self, recorded: bool) -> None:
        """Before the first step under the profiler: an estimate of its launch time. `recorded`: that
        step is in the trace (nsys); else (the torch profiler's warm-up step) a generous head start."""
        if self.enabled:
            estimate = self.factor * self._warm_launch_ms
            generous = HEAD_START_GROWTH * estimate + HEAD_START_MARGIN_MS
            wanted = head_start_for(estimate, self.fed_ms) if recorded else generous
            self.head_start_ms = self.agree(wanted)

    def grow(self, timing: StepTiming) -> None:
        """After a profiled step: the head start its launch time calls for, more if the GPU starved."""
        if not self.enabled:
            return
        launch = self._profiled_launch_ms = max(self._profiled_launch_ms, timing.launch_ms)
        self._extra_ms += HEAD_START_GROWTH * starved_by(timing, self.fed_ms)
        wanted = head_start_for(launch, self.fed_ms) + self._extra_ms
        self.head_start_ms = self.agree(min(wanted, HEAD_START_CAP * launch + HEAD_START_MARGIN_MS))

    def spin(self, ms: float) -> None:
        """Keep this rank's GPU busy for `ms` (all ranks pass the same value)."""
        if self.enabled:
            with region(f"{PACING_REGION}/head_start"):
                self._torch.cuda._sleep(int(ms * self._cycles_per_ms))

    def agree(self, ms: float) -> float:
        """The largest value any rank wants, so every GPU spins equally long."""
        value = self._torch.tensor([ms], dtype=self._torch.float64)
        self._dist.all_reduce(value, op=self._dist.ReduceOp.MAX, group=self.ctx.control)
        return float(value.item())

    def align(self) -> None:
        """Enqueue a one-element all-reduce: the GPUs of all ranks leave it together."""
        if self.enabled:
            with region(f"{PACING_REGION}/step_align"):
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
