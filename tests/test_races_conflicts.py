"""The conflict finder and the innermost-range lookup, against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlapscope.races.conflicts import accessors, happens_before_pairs, unordered_conflicts
from overlapscope.races.hb import happens_before
from overlapscope.trace.where import innermost
from overlapscope.trace.kineto import read_kineto
from test_races_hb import action, build

access = st.tuples(st.integers(0, 40), st.integers(0, 1), st.integers(0, 6), st.integers(1, 4), st.booleans())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action(), min_size=8, max_size=24), st.lists(access, min_size=1, max_size=30))
def test_conflicts_against_all_pairs(program, raw_accesses):
    """Every reported pair is a race; and for every access b racing with an earlier access of
    agent A, some pair (a', b) with a' on A is reported (A's latest access stands for the rest)."""
    data, _ = build(program)
    trace = read_kineto([data], "random.json", 0)
    n = len(trace.gpu_ops)
    if n < 2:
        return
    hb = happens_before(trace)
    rows = [(op % n, space, lo, lo + size, w) for op, space, lo, size, w in raw_accesses]
    table = pd.DataFrame(rows, columns=["op", "space", "lo", "hi", "write"]).assign(host=-1, buffer="b", source="t")
    who = accessors(table, hb, trace.ranges)
    got = unordered_conflicts(table, who, hb)
    got_pairs = set(zip(got["a"], got["b"]))

    def races(i: int, j: int) -> bool:
        x, y = rows[i], rows[j]
        return (who.agent[i] != who.agent[j] and x[1] == y[1] and x[2] < y[3] and y[2] < x[3] and (x[4] or y[4])
                and not happens_before_pairs(who, hb, np.array([i]), np.array([j]))[0]
                and not happens_before_pairs(who, hb, np.array([j]), np.array([i]))[0])

    assert all(races(a, b) for a, b in got_pairs)
    order = np.lexsort((who.tiebreak, who.key))
    rank = np.empty(len(rows), int)
    rank[order] = np.arange(len(rows))
    for j in range(len(rows)):
        for i in range(len(rows)):
            if rank[i] < rank[j] and races(i, j):
                assert any(b == j and who.agent[a] == who.agent[i] for a, b in got_pairs), (i, j)


interval = st.tuples(st.integers(0, 50), st.integers(0, 20))


@settings(max_examples=200, deadline=None)
@given(st.lists(interval, max_size=12), st.lists(st.integers(-2, 75), max_size=20))
def test_innermost_against_brute_force_on_nested_ranges(spans, points):
    """Properly nested ranges (a stack of record_function scopes): the innermost containing
    range is the one that started last among those containing the point."""
    starts, ends = [], []
    stack: list[int] = []
    t = 0
    for gap, length in spans:  # build a nesting: open, maybe close some, ...
        t += gap % 5
        while stack and ends[stack[-1]] <= t:
            stack.pop()
        limit = ends[stack[-1]] if stack else t + 100
        end = min(t + length, limit)
        starts.append(t)
        ends.append(end)
        stack.append(len(starts) - 1)
    got = innermost(np.array(starts, np.int64), np.array(ends, np.int64), np.array(points, np.int64))
    for p, g in zip(points, got):
        inside = [i for i in range(len(starts)) if starts[i] <= p < ends[i]]
        want = max(inside, key=lambda i: (starts[i], -ends[i], i)) if inside else -1
        if want == -1:
            assert g == -1
        else:
            assert starts[g] == starts[want] and ends[g] == ends[want]


def test_innermost_with_ranges_that_overlap_without_nesting():
    # [0, 10) and [5, 20): at 7 the later-opened one wins; at 12 only the second is open
    got = innermost(np.array([0, 5]), np.array([10, 20]), np.array([3, 7, 12, 25]))
    assert got.tolist() == [0, 1, 1, -1]
