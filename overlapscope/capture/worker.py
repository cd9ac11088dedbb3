"""What every rank does: build the model, warm each code path up, profile the steps, report.

Lazy module loading and first-use set-up (a kernel's module, a NCCL communicator, a stream's cuBLAS
workspace) can stall the host for tens of milliseconds the first time a path runs, which hides races
and skews overlap; so the profiled steps come after `warmup` full steps and a barrier. Each rank
writes its step times and numerics to results_dir/rank-R.json for the parent to merge into run.json.
Rank side: torch is imported inside.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .environment import environment
from .pacing import HEAD_START_GROWTH, HEAD_START_MARGIN_MS, StepClock
from .plan import Workload
from .profilers import open_session

if TYPE_CHECKING:
    from reference_models.common import ReferenceModel

COMPONENT_REPEATS = 20


def run_rank(ctx: Any, work: Workload) -> None:
    import reference_models

    model: ReferenceModel = reference_models.load(work.model).build(work.config, ctx, work.variant)
    try:
        clock = StepClock(ctx, work.head_start, work.profiler)
        for step in range(work.warmup):
            clock.run(lambda: model.forward(step))
            model.check(step)
        clock.start_profiling()
        ctx.barrier()
        record: dict[str, list[Any]] = {"step_times_ms": [], "launch_times_ms": [], "head_start_ms": [],
                                        "numerics": []}
        with open_session(work.profiler, Path(work.out_dir), ctx.rank, work.steps, ctx.streams.cuda) as session:
            for i in range(session.warmup_steps + work.steps):
                step = work.warmup + i
                with session.step():
                    timing = clock.run(lambda: model.forward(step))
                    result = model.check(step)
                clock.grow()
                if i >= session.warmup_steps:
                    record["step_times_ms"].append(round(timing.step_ms, 4))
                    record["launch_times_ms"].append(round(timing.launch_ms, 4))
                    record["head_start_ms"].append(round(timing.head_start_ms, 4))
                    record["numerics"].append({"ok": result.numerics_ok, "detail": result.detail,
                                               "max_abs_err": _finite_or_none(result.max_abs_err)})
        ctx.barrier()
        _write(work, ctx.rank, {**record, **environment(ctx.device)})
    finally:
        model.close()


def time_components(ctx: Any, work: Workload) -> None:
    """Each overlapped part of the model alone: GPU ms per run, and the host's ms to launch it."""
    import reference_models

    model: ReferenceModel = reference_models.load(work.model).build(work.config, ctx, work.variant)
    try:
        clock = StepClock(ctx, head_start=True, profiler="none")
        for step in range(work.warmup):
            clock.run(lambda: model.forward(step))
        timings = {name: _time(fn, ctx, clock) for name, fn in model.components().items()}
        _write(work, ctx.rank, {"components_ms": timings, **environment(ctx.device)})
    finally:
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


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _write(work: Workload, rank: int, data: dict[str, Any]) -> None:
    (Path(work.results_dir) / f"rank-{rank}.json").write_text(json.dumps({"rank": rank, **data}))
