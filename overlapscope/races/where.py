"""Where something happened on the host: the innermost range that encloses an instant.

Used for three things: the region a GPU op was launched in (innermost named range on the
launching thread), the profiler step it belongs to, and the Execution Trace op that launched it
(innermost linked `cpu_op`). Ranges on one thread nest (record_function and NVTX push/pop);
ranges that overlap without nesting are handled as "the latest-opened range still open wins".
"""

from __future__ import annotations

import numpy as np

NONE = -1
# ranges a communication library opens around its own calls: NCCL/RCCL's NVTX ranges and
# PyTorch's record_functions around them
LIBRARY_RANGE = r"^(?:nccl|rccl)(?::|[A-Z])|^c10d::|^record_param_comms$"


def innermost(starts: np.ndarray, ends: np.ndarray, points: np.ndarray) -> np.ndarray:
    """For each point, the index of the innermost range [start, end) that contains it, or -1.

    One sort and one pass over the ranges build the step function "innermost open range at
    time t"; the points are then looked up with a binary search."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    points = np.asarray(points, dtype=np.int64)
    if starts.size == 0 or points.size == 0:
        return np.full(points.size, NONE, dtype=np.int64)
    change_t, change_id = _innermost_steps(starts, ends)
    at = np.searchsorted(change_t, points, side="right") - 1
    out = np.full(points.size, NONE, dtype=np.int64)
    ok = at >= 0
    out[ok] = change_id[at[ok]]
    return out


def _innermost_steps(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(times, ids): from times[i] on, the innermost open range is ids[i] (-1: none). Where two
    entries share a time the later one wins, which `searchsorted(side="right")` respects."""
    order = np.lexsort((-ends, starts))  # outer ranges first when two start together
    times: list[int] = []
    ids: list[int] = []
    stack: list[int] = []
    s_list, e_list = starts.tolist(), ends.tolist()

    def close_until(t: float) -> None:
        while stack and e_list[stack[-1]] <= t:
            end = e_list[stack.pop()]
            while stack and e_list[stack[-1]] <= end:  # ended while hidden under the one just closed
                stack.pop()
            times.append(end)
            ids.append(stack[-1] if stack else NONE)

    for r in order.tolist():
        close_until(s_list[r])
        stack.append(r)
        times.append(s_list[r])
        ids.append(r)
    close_until(float("inf"))
    return np.asarray(times, dtype=np.int64), np.asarray(ids, dtype=np.int64)


def innermost_per_thread(range_keys: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                         point_keys: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`innermost`, where a range only contains points of its own thread. Keys are one int64
    per (pid, tid) (see `thread_keys`); returns indices into the ranges, or -1."""
    out = np.full(np.asarray(points).size, NONE, dtype=np.int64)
    if len(starts) == 0 or out.size == 0:
        return out
    range_keys = np.asarray(range_keys)
    point_keys = np.asarray(point_keys)
    for key in np.intersect1d(np.unique(range_keys), np.unique(point_keys)):
        r_idx = np.flatnonzero(range_keys == key)
        p_idx = np.flatnonzero(point_keys == key)
        found = innermost(starts[r_idx], ends[r_idx], points[p_idx])
        hit = found >= 0
        out[p_idx[hit]] = r_idx[found[hit]]
    return out


def thread_keys(*pid_tid: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """One comparable int64 per (pid, tid) pair, consistent across all the arrays given."""
    pids = [np.asarray(p, dtype=np.int64) for p, _ in pid_tid]
    tids = [np.asarray(t, dtype=np.int64) for _, t in pid_tid]
    pairs = np.stack([np.concatenate(pids), np.concatenate(tids)], axis=1)
    if pairs.shape[0] == 0:
        return [np.empty(0, dtype=np.int64) for _ in pid_tid]
    _, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    cuts = np.cumsum([len(p) for p in pids])[:-1]
    return np.split(inverse, cuts)


REGION_SOURCES = ("nvtx", "user_annotation")


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
