"""What every rank does: build the workload, warm each code path up, profile the steps, report.

Lazy module loading and first-use set-up (a kernel's module, a NCCL communicator, a stream's cuBLAS
workspace) can stall the host for tens of milliseconds the first time a path runs, which hides races
and skews overlap; so the profiled steps come after `warmup` full steps and a barrier. Each rank
writes its step times and numerics to results_dir/rank-R.json for the parent to merge into run.json.
Rank side: torch is imported inside.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .environment import environment
from .pacing import HEAD_START_GROWTH, HEAD_START_MARGIN_MS, StepClock
from .plan import Workload
from .profilers import open_session
from .workloads import check_result, load_factory

COMPONENT_REPEATS = 20


def run_rank(ctx: Any, work: Workload) -> None:
    model = _build(ctx, work)
    try:
        clock = StepClock(ctx, work.head_start, work.profiler)
        for step in range(work.warmup):
            clock.warmed(clock.run(lambda: model.forward(step)))
            _check(model, step)
        session = open_session(work.profiler, Path(work.out_dir), ctx.rank, work.steps, ctx.streams.cuda)
        clock.start_profiling(recorded=session.warmup_steps == 0)
        ctx.barrier()
        record: dict[str, list[Any]] = {"step_times_ms": [], "launch_times_ms": [], "head_start_ms": [],
                                        "numerics": []}
        with session:
            for i in range(session.warmup_steps + work.steps):
                step = work.warmup + i
                with session.step():
                    timing = clock.run(lambda: model.forward(step))
                    result = _check(model, step)
                clock.grow(timing)
                if i >= session.warmup_steps:
                    record["step_times_ms"].append(round(timing.step_ms, 4))
                    record["launch_times_ms"].append(round(timing.launch_ms, 4))
                    record["head_start_ms"].append(round(timing.head_start_ms, 4))
                    record["numerics"].append(result)
        ctx.barrier()
        fed = None if clock.fed_ms is None else round(clock.fed_ms, 4)
        _write(work, ctx.rank, {**record, "fed_step_ms": fed, **environment(ctx.device)})
    finally:
        _close(model)


def time_components(ctx: Any, work: Workload) -> None:
    """Each overlapped part of the workload alone: GPU ms per run, and the host's ms to launch it."""
    model = _build(ctx, work)
    try:
        clock = StepClock(ctx, head_start=True, profiler="none")
        for step in range(work.warmup):
            clock.warmed(clock.run(lambda: model.forward(step)))
        parts = model.components() if hasattr(model, "components") else {}
        timings = {name: _time(fn, ctx, clock) for name, fn in parts.items()}
        _write(work, ctx.rank, {"components_ms": timings, **environment(ctx.device)})
    finally:
        _close(model)


def _build(ctx: Any, work: Workload) -> Any:
    return load_factory(work.target)(work.config, ctx, work.variant)


def _check(model: Any, step: int) -> dict[str, Any]:
    """The step's numerics as run.json records them (not checked when the workload has no check)."""
    return check_result(model.check(step) if hasattr(model, "check") else None)


def _close(model: Any) -> None:
    if hasattr(model, "close"):
        model.close()


def _time(fn: Callable[[], None], ctx: Any, clock: StepClock) -> dict[str, float]:
    """Host launch time from a dry run; then the GPU time of the same runs queued behind a head start,
    so that a slow host cannot stretch it (on a CPU both are wall time)."""
    for _ in range(3):
        fn()
    ctx.streams.synchronize()
    ctx.barrier()
    start = time.perf_counter_ns()
    for _ in range(COMPONENT_REPEATS):
        fn()
    launch_ms = (time.perf_counter_ns() - start) / 1e6
    ctx.streams.synchronize()
    if not ctx.streams.cuda:
        return {"gpu": launch_ms / COMPONENT_REPEATS, "launch": launch_ms / COMPONENT_REPEATS}
    import torch

    ctx.barrier()
    clock.spin(clock.agree(HEAD_START_GROWTH * launch_ms + HEAD_START_MARGIN_MS))
    clock.align()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(COMPONENT_REPEATS):
        fn()
    end.record()
    end.synchronize()
    return {"gpu": begin.elapsed_time(end) / COMPONENT_REPEATS, "launch": launch_ms / COMPONENT_REPEATS}


def _write(work: Workload, rank: int, data: dict[str, Any]) -> None:
    # the pid names the rank's database under rocprofv3 (<pid>_results.db)
    (Path(work.results_dir) / f"rank-{rank}.json").write_text(json.dumps({"rank": rank, "pid": os.getpid(), **data}))
