"""Plain-Python interval oracles for the tests: independent of overlapscope's numpy algebra."""

from __future__ import annotations


def union(intervals) -> list[tuple[int, int]]:
    """Sorted, disjoint, merged [start, end) intervals; empty ones dropped."""
    out: list[list[int]] = []
    for s, e in sorted((s, e) for s, e in intervals if e > s):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def measure(u) -> int:
    return sum(e - s for s, e in u)


def intersection_length(a, b) -> int:
    """|a ∩ b| of two sorted disjoint unions."""
    i = j = total = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total
