"""Interval algebra against a brute-force per-nanosecond oracle."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from overlapscope import intervals as iv

span = st.tuples(st.integers(0, 200), st.integers(0, 60)).map(lambda t: (t[0], t[0] + t[1]))
spans = st.lists(span, max_size=25)


def covered(intervals: list[tuple[int, int]]) -> set[int]:
    """Every nanosecond [t, t+1) that some interval covers."""
    return {t for s, e in intervals for t in range(s, e)}


def as_set(pairs: list[tuple[int, int]]) -> iv.IntervalSet:
    return iv.union(np.array([s for s, _ in pairs], np.int64), np.array([e for _, e in pairs], np.int64))


def pairs_of(s: iv.IntervalSet) -> list[tuple[int, int]]:
    return list(zip(s[0].tolist(), s[1].tolist()))


@given(spans)
def test_union_is_disjoint_sorted_and_covers_the_same_nanoseconds(a):
    u = as_set(a)
    assert iv.measure(u) == len(covered(a))
    assert covered(pairs_of(u)) == covered(a)
    assert np.all(u[0][1:] > u[1][:-1])  # disjoint, not even touching
    assert np.all(u[1] > u[0])


@given(spans, spans)
@settings(max_examples=300)
def test_intersection_and_difference_match_the_oracle(a, b):
    inter = iv.intersection(as_set(a), as_set(b))
    diff = iv.difference(as_set(a), as_set(b))
    assert covered(pairs_of(inter)) == covered(a) & covered(b)
    assert covered(pairs_of(diff)) == covered(a) - covered(b)
    assert iv.measure(inter) + iv.measure(diff) == len(covered(a))


@given(spans, st.lists(st.integers(-5, 265), max_size=30))
def test_contains_matches_the_oracle(a, points):
    inside = iv.contains(as_set(a), np.array(points, np.int64))
    cov = covered(a)
    assert inside.tolist() == [p in cov for p in points]


def test_touching_intervals_merge_and_empty_ones_vanish():
    s = as_set([(0, 5), (5, 9), (20, 20), (30, 25)])
    assert pairs_of(s) == [(0, 9)]


def test_empty_sets():
    e = iv.empty()
    assert iv.measure(iv.intersection(e, as_set([(1, 2)]))) == 0
    assert pairs_of(iv.difference(as_set([(1, 2)]), e)) == [(1, 2)]
    assert iv.contains(e, np.array([1])).tolist() == [False]
