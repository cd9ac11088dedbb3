"""Launch links: which host call launched each GPU op, and which host ranges enclose it.

DESIGN.md, "Launch link": a GPU op links to its host call through the correlation id (Kineto
`cuda_runtime`/`cuda_driver` events, nsys CUPTI runtime records, rocprof HIP API records).
"Region": a GPU op belongs to a host range when the call that launched it starts inside the
range on the same thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import intervals as iv
from .model import NO_ID, Trace
from .names import compile_regex, names_matching
from .where import innermost_per_thread, thread_keys


@dataclass
class LaunchPoints:
    """For every row of trace.gpu_ops: the rank, pid, tid and start time of the host call that
    launched it (tid NO_ID when the trace has no launch for it)."""

    rank: np.ndarray
    pid: np.ndarray
    tid: np.ndarray
    time: np.ndarray

    @property
    def launched(self) -> np.ndarray:
        return self.tid != NO_ID


def launch_points(trace: Trace) -> LaunchPoints:
    ops = trace.gpu_ops
    calls = trace.host_calls[["rank", "correlation", "pid", "tid", "start"]]
    calls = calls[calls["correlation"] != NO_ID].drop_duplicates(["rank", "correlation"])
    # nullable integers: a left merge with misses must not turn epoch nanoseconds into float64
    calls = calls.astype({"pid": "Int64", "tid": "Int64", "start": "Int64"})
    keyed = ops[["rank", "correlation"]].merge(calls, on=["rank", "correlation"], how="left", sort=False)
    return LaunchPoints(
        rank=ops["rank"].to_numpy(),
        pid=keyed["pid"].to_numpy(np.int64, na_value=NO_ID),
        tid=keyed["tid"].to_numpy(np.int64, na_value=NO_ID),
        time=keyed["start"].to_numpy(np.int64, na_value=0),
    )


def host_ranges(ranges: pd.DataFrame) -> pd.DataFrame:
    """Ranges opened on the host (Kineto also copies annotations onto the GPU timeline)."""
    return ranges[ranges["source"] != "gpu_user_annotation"]


def launched_inside(launch: LaunchPoints, ranges: pd.DataFrame) -> np.ndarray:
    """Mask over gpu_ops: launched by a call that starts inside one of `ranges` on its thread."""
    inside = np.zeros(launch.tid.size, dtype=bool)
    if len(ranges) == 0:
        return inside
    for (rank, pid, tid), group in ranges.groupby(["rank", "pid", "tid"], sort=False):
        spans = iv.union(group["start"].to_numpy(), group["end"].to_numpy())
        on_thread = (launch.rank == rank) & (launch.pid == pid) & (launch.tid == tid)
        idx = np.flatnonzero(on_thread)
        inside[idx] = iv.contains(spans, launch.time[idx])
    return inside


def ranges_matching(ranges: pd.DataFrame, pattern: re.Pattern[str]) -> pd.DataFrame:
    """The host ranges whose name matches `pattern`: a region's ranges."""
    ranges = host_ranges(ranges)
    return ranges[names_matching(ranges["name"], pattern)]


def launched_in_region(trace: Trace, regex: str, launch: LaunchPoints | None = None) -> np.ndarray:
    """Mask over trace.gpu_ops: launched inside a host range whose name matches `regex` (a region,
    exactly as `analyze` scopes it)."""
    matched = ranges_matching(trace.ranges, compile_regex(regex, "region"))
    return launched_inside(launch_points(trace) if launch is None else launch, matched)


def steps_of(trace: Trace, launch: LaunchPoints) -> pd.Categorical:
    """The profiler step of every GPU op: the `ProfilerStep#N` range of the launching process (any
    of its threads: a step is a window of the whole process) whose window holds the launch.
    Missing where no step holds it or the op has no launch event."""
    steps = trace.ranges[(trace.ranges["source"] == "profiler_step").to_numpy()]
    names = steps["name"].astype(str).astype("category")
    codes = np.full(launch.tid.size, -1, dtype=np.int64)
    if len(steps) and launch.launched.any():
        step_keys, op_keys = thread_keys((steps["rank"].to_numpy(), steps["pid"].to_numpy()), (launch.rank, launch.pid))
        found = innermost_per_thread(step_keys, steps["start"].to_numpy(np.int64), steps["end"].to_numpy(np.int64),
                                     np.where(launch.launched, op_keys, -1), launch.time)
        hit = found >= 0
        codes[hit] = names.cat.codes.to_numpy()[found[hit]]
    return pd.Categorical.from_codes(codes, categories=names.cat.categories)
