"""Where something happened on the host: the innermost range that encloses an instant.

Used for the region a GPU op was launched in (innermost named range on the launching thread),
the profiler step it belongs to, the Execution Trace op that launched it (innermost linked
`cpu_op`) and the path of ranges around a launch. Ranges on one thread nest (record_function and NVTX push/pop);
ranges that overlap without nesting are handled as "the latest-opened range still open wins".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
    """One comparable int64 per (pid, tid) pair, consistent across all the arrays given (hashing,
    not sorting: a million launches take milliseconds)."""
    pids = np.concatenate([np.asarray(p, dtype=np.int64) for p, _ in pid_tid])
    tids = np.concatenate([np.asarray(t, dtype=np.int64) for _, t in pid_tid])
    if pids.size == 0:
        return [np.empty(0, dtype=np.int64) for _ in pid_tid]
    pid_codes, pid_uniques = pd.factorize(pids)
    tid_codes, _ = pd.factorize(tids)
    pair_codes, _ = pd.factorize(tid_codes.astype(np.int64) * len(pid_uniques) + pid_codes)
    cuts = np.cumsum([len(p) for p, _ in pid_tid])[:-1]
    return np.split(pair_codes.astype(np.int64), cuts)


# ranges people name their code with (a region), as opposed to the profiler's own
REGION_SOURCES = ("nvtx", "user_annotation")
