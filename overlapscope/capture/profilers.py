"""One rank's profiler session: where the profiled steps begin and end, and what gets written.

- torch: Kineto trace `rank-R.trace.json.gz` and PyTorch Execution Trace `rank-R.et.json.gz`, with CUDA
  sync events (stream waits, event syncs) recorded for the race checker; one profiler warm-up step
  (CUPTI set-up) runs before the recorded ones.
- nsys: the process already runs under `nsys profile`; each step becomes an NVTX range
  `ProfilerStep#N` (domain "overlapscope"), and cudaProfilerStart/Stop bound the capture range.
- rocprofv3: the process already runs under `rocprofv3 --selected-regions`; roctxProfilerResume/Pause
  bound the capture window and each step becomes a ROCTx range `ProfilerStep#N` (capture/rocprof.py).
  On a CPU (tests with a stand-in rocprofv3) it marks nothing.
- none: nothing.
Worker code: torch is imported inside.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..instrument import region


KINETO_GLOB = "rank-*.trace.json.gz"
EXECUTION_TRACE_GLOB = "rank-*.et.json.gz"


def kineto_path(out_dir: Path, rank: int) -> Path:
    return out_dir / f"rank-{rank}.trace.json.gz"


def execution_trace_path(out_dir: Path, rank: int) -> Path:
    return out_dir / f"rank-{rank}.et.json.gz"


class NoProfiler:
    warmup_steps = 0

    def __enter__(self) -> NoProfiler:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        yield


class TorchProfiler:
    warmup_steps = 1

    def __init__(self, out_dir: Path, rank: int, steps: int, cuda: bool):
        import torch
        from torch.profiler import ExecutionTraceObserver, ProfilerActivity, profile, schedule

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        trace_file = kineto_path(out_dir, rank)
        self._observer = ExecutionTraceObserver().register_callback(str(execution_trace_path(out_dir, rank)))
        self._profile: Any = profile(
            activities=activities,
            schedule=schedule(wait=0, warmup=self.warmup_steps, active=steps, repeat=1),
            on_trace_ready=lambda p: p.export_chrome_trace(str(trace_file)),
            experimental_config=_experimental_config(torch),
            execution_trace_observer=self._observer,
        )

    def __enter__(self) -> TorchProfiler:
        self._profile.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._profile.__exit__(*exc)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        yield
        self._profile.step()


def _experimental_config(torch: Any) -> Any:
    """CUDA sync records (the race checker's waits and syncs), and every thread's ranges and ops:
    by default the profiler records only the thread that started it, and a transfer engine's
    thread (its access marks, its copies' launches) would be missing from the trace."""
    config = torch._C._profiler._ExperimentalConfig
    try:
        return config(enable_cuda_sync_events=True, profile_all_threads=True)
    except TypeError:  # torch before profile_all_threads
        return config(enable_cuda_sync_events=True)


class NsysRanges:
    warmup_steps = 0

    def __init__(self) -> None:
        self._index = 1  # numbered like the torch profiler's recorded steps (its step 0 is its warm-up)

    def __enter__(self) -> NsysRanges:
        import torch

        torch.cuda.profiler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.cuda.synchronize()
        torch.cuda.profiler.stop()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        with region(f"ProfilerStep#{self._index}"):
            yield
        self._index += 1


class RocprofRanges:
    warmup_steps = 0

    def __init__(self, cuda: bool) -> None:
        from .rocprof import Roctx

        self.cuda = cuda
        self._roctx = Roctx() if cuda else None
        self._index = 1  # numbered like the torch profiler's recorded steps

    def __enter__(self) -> RocprofRanges:
        if self._roctx is not None:
            import torch

            torch.cuda.synchronize()
            self._roctx.resume()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._roctx is not None:
            import torch

            torch.cuda.synchronize()
            self._roctx.pause()

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        if self._roctx is not None:
            self._roctx.push(f"ProfilerStep#{self._index}")
        try:
            yield
        finally:
            if self._roctx is not None:
                self._roctx.pop()
        self._index += 1


def open_session(profiler: str, out_dir: Path, rank: int, steps: int, cuda: bool) -> Any:
    if profiler == "torch":
        return TorchProfiler(out_dir, rank, steps, cuda)
    if profiler == "nsys":
        return NsysRanges()
    if profiler == "rocprofv3":
        return RocprofRanges(cuda)
    return NoProfiler()
