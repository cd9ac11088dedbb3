"""Interval algebra on numpy arrays of half-open [start, end) int64 nanosecond intervals.

A *set* is a pair (starts, ends) of sorted, disjoint, non-empty intervals, as `union` returns.
All functions are vectorised; none loops over intervals in Python.
"""

from __future__ import annotations

import numpy as np

IntervalSet = tuple[np.ndarray, np.ndarray]


def empty() -> IntervalSet:
    return np.empty(0, np.int64), np.empty(0, np.int64)


def union(starts: np.ndarray, ends: np.ndarray) -> IntervalSet:
    """Merge arbitrary intervals into a set. Empty and inverted intervals are dropped;
    touching intervals ([a, b) and [b, c)) merge into one."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return empty()
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    # a new merged interval begins where a start lies beyond everything before it
    begins = np.empty(starts.size, dtype=bool)
    begins[0] = True
    begins[1:] = starts[1:] > reach[:-1]
    first = np.flatnonzero(begins)
    last = np.append(first[1:] - 1, starts.size - 1)
    return starts[first], reach[last]


def measure(s: IntervalSet) -> int:
    """Total length of a set, in ns."""
    return int((s[1] - s[0]).sum())


def intersection(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """The intervals covered by both sets (each a disjoint, sorted set)."""
    return _where_count(a, b, both=True)


def difference(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """The intervals covered by `a` and not by `b`."""
    return _where_count(a, b, both=False)


def _where_count(a: IntervalSet, b: IntervalSet, both: bool) -> IntervalSet:
    # Sweep: +1/-1 at a's edges, +2/-2 at b's edges; since each set is disjoint the running sum
    # is 1 (a only), 2 (b only) or 3 (both) between consecutive edges.
    times = np.concatenate([a[0], a[1], b[0], b[1]])
    if times.size == 0:
        return empty()
    na, nb = a[0].size, b[0].size
    steps = np.concatenate([np.ones(na), -np.ones(na), np.full(nb, 2.0), np.full(nb, -2.0)]).astype(np.int64)
    order = np.argsort(times, kind="stable")
    times, steps = times[order], steps[order]
    state = np.cumsum(steps)
    wanted = state == 3 if both else state == 1
    # segment i runs from times[i] to times[i+1] in state[i]; zero-length segments vanish in union
    seg_start, seg_end, seg_on = times[:-1], times[1:], wanted[:-1]
    return union(seg_start[seg_on], seg_end[seg_on])


def clip(s: IntervalSet, lo: int, hi: int) -> IntervalSet:
    """The part of a set inside [lo, hi)."""
    return intersection(s, (np.array([lo], np.int64), np.array([hi], np.int64)))


def contains(s: IntervalSet, points: np.ndarray) -> np.ndarray:
    """For each point, whether it lies in the set (start inclusive, end exclusive)."""
    points = np.asarray(points, dtype=np.int64)
    if s[0].size == 0:
        return np.zeros(points.size, dtype=bool)
    i = np.searchsorted(s[0], points, side="right") - 1
    ok = i >= 0
    inside = np.zeros(points.size, dtype=bool)
    inside[ok] = points[ok] < s[1][i[ok]]
    return inside


def coverage(starts: np.ndarray, ends: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The fraction of each bin [edges[i], edges[i+1]) covered by the union of the intervals."""
    before = covered_before(union(starts, ends), edges)
    width = np.diff(edges).astype(np.float64)
    return np.divide(np.diff(before), width, out=np.zeros(width.size), where=width > 0)


def covered_before(s: IntervalSet, points: np.ndarray) -> np.ndarray:
    """For each time point, how many ns of the set lie before it (vectorised prefix measure)."""
    points = np.asarray(points, dtype=np.int64)
    if s[0].size == 0:
        return np.zeros(points.size, dtype=np.int64)
    lengths = s[1] - s[0]
    done = np.concatenate([[0], np.cumsum(lengths)])  # done[k]: length of the first k intervals
    k = np.searchsorted(s[0], points, side="right") - 1  # last interval starting at or before the point
    kk = np.clip(k, 0, None)
    partial = np.clip(points - s[0][kk], 0, lengths[kk])
    return np.where(k >= 0, done[kk] + partial, 0)
