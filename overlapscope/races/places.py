"""Where a race's accesses happened: the region and profiler step of each GPU op and host mark."""

from __future__ import annotations

import numpy as np

from ..trace.where import LIBRARY_RANGE, REGION_SOURCES, innermost, innermost_per_thread, thread_keys


def region_label(name: str) -> str:
    """A range's name as people should read it: an access mark shows its label."""
    from ..instrument import parse_access_mark

    mark = parse_access_mark(name)
    return mark.label if mark is not None else name


def _innermost_labels(named, launch, which: np.ndarray) -> np.ndarray:
    """For the ops in `which`: the label of the innermost of `named` around their launch on its thread."""
    out = np.full(which.size, "", dtype=object)
    rk, ok = thread_keys((named["pid"].to_numpy(), named["tid"].to_numpy()), (launch.pid, launch.tid))
    found = innermost_per_thread(rk, named["start"].to_numpy(np.int64), named["end"].to_numpy(np.int64),
                                 np.where(which, ok, -1), launch.time)
    names = named["name"].astype("category")
    labels_of = np.array([region_label(str(c)) for c in names.cat.categories] + [""], dtype=object)
    labels = labels_of[names.cat.codes.to_numpy()]  # code -1 (missing) picks the ""
    hit = found >= 0
    out[hit] = labels[found[hit]]
    return out


def op_places(trace, launch) -> tuple[np.ndarray, np.ndarray]:
    """For each GPU op of a one-rank trace: the innermost named region its launch lies in (on the
    launching thread; "" when none) and the profiler step (any thread; "" when none)."""
    from ..trace.model import NO_ID

    n = launch.tid.size
    regions = np.full(n, "", dtype=object)
    steps = np.full(n, "", dtype=object)
    launched = launch.tid != NO_ID
    ranges = trace.ranges
    named = ranges[ranges["source"].isin(REGION_SOURCES)]
    if len(named) and launched.any():
        # the user's own ranges first: a communication library's range around its kernel launch
        # ("ncclAllGather", "nccl:_all_gather_base") names the call, not the code that needs the fix
        is_library = named["name"].astype(str).str.contains(LIBRARY_RANGE).to_numpy()
        for frame in (named[~is_library], named[is_library]):
            empty = launched & (regions == "")
            if len(frame) and empty.any():
                regions[empty] = _innermost_labels(frame, launch, empty)[empty]
    steps_frame = ranges[ranges["source"] == "profiler_step"]
    if len(steps_frame) and launched.any():
        found = innermost(steps_frame["start"].to_numpy(np.int64), steps_frame["end"].to_numpy(np.int64), launch.time)
        hit = (found >= 0) & launched
        steps[hit] = steps_frame["name"].astype(str).to_numpy(object)[found[hit]]
    return regions, steps


def range_places(trace, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For host ranges (rows of a one-rank ranges frame, e.g. on="host" access marks): the
    innermost named range around each start on its thread, not counting the given ranges
    themselves, and the profiler step (any thread) each start lies in."""
    ranges = trace.ranges
    rows = np.asarray(rows, dtype=np.int64)
    regions = np.full(rows.size, "", dtype=object)
    steps = np.full(rows.size, "", dtype=object)
    if not rows.size:
        return regions, steps
    me = ranges.iloc[rows]
    start = me["start"].to_numpy(np.int64)
    others = ranges[ranges["source"].isin(REGION_SOURCES).to_numpy() & ~np.isin(np.arange(len(ranges)), rows)]
    if len(others):
        rk, pk = thread_keys((others["pid"].to_numpy(), others["tid"].to_numpy()),
                             (me["pid"].to_numpy(), me["tid"].to_numpy()))
        found = innermost_per_thread(rk, others["start"].to_numpy(np.int64), others["end"].to_numpy(np.int64),
                                     pk, start)
        hit = found >= 0
        regions[hit] = [region_label(str(n)) for n in others["name"].astype(str).to_numpy()[found[hit]]]
    step_frame = ranges[ranges["source"] == "profiler_step"]
    if len(step_frame):
        found = innermost(step_frame["start"].to_numpy(np.int64), step_frame["end"].to_numpy(np.int64), start)
        hit = found >= 0
        steps[hit] = step_frame["name"].astype(str).to_numpy(object)[found[hit]]
    return regions, steps
