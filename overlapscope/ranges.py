"""What can I pass to `--region`? The host range names of a run, with the communication each launched.

`list_ranges(trace)` lists every distinct host range name (NVTX push/pop and start/end ranges,
`record_function` / `user_annotation`; `cpu_op` on request; never Kineto's GPU copies of
annotations), one row per name pooled over the run's ranks:

- `count`: how many ranges carry the name (all ranks), `ranks`: on how many ranks it occurs;
- `min_depth` / `max_depth`: how deep the name sits on its thread, 0 being outermost. The depth of a
  range is the number of the listed ranges of its own thread still open when it opens (profiler
  steps, and `cpu_op`s unless included, do not count);
- `host_ns`: the sum of the ranges' durations;
- `comm_ops`: the communication ops (`op_class == "comm"`) launched inside a range of that name on
  the same thread: the region rule of `analyze` (DESIGN.md, "Region"); an op inside an inner range
  counts for every enclosing name too;
- `comm_ns`: the union of those ops' GPU intervals measured per rank, summed over ranks; for each
  rank it equals the `comm_ns` that `analyze(trace, [suggested_regex(name)])` reports for that
  rank's region row. `comm_sum_ns` is the plain sum of their durations (larger when they overlap).

Profiler steps (`ProfilerStep#N`) are listed apart (`steps`), with the step rule of DESIGN.md: a
step is a window of the whole process, so communication launched by any thread of the process
inside it belongs to it.

Rows: names that launched communication first, by `comm_ns` descending, then by `count`
descending, then by name. The computation is columnar: sorts and binary searches over numpy
arrays, one pass per nesting level, never a Python loop over events.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .trace.links import launch_points, steps_of
from .trace.model import Trace

DEFAULT_SOURCES = ("nvtx", "user_annotation")


def suggested_regex(name: str) -> str:
    """The `--region` regex that selects exactly the ranges called `name`."""
    return "^" + re.escape(name) + "$"


@dataclass
class RangeRow:
    name: str
    source: str  # "nvtx", "user_annotation", "cpu_op", "profiler_step"; several joined with "+"
    count: int
    ranks: int
    min_depth: int
    max_depth: int
    host_ns: int
    comm_ops: int
    comm_ns: int  # per-rank union of the comm ops' intervals, summed over ranks
    comm_sum_ns: int = 0  # plain sum of the comm ops' durations
    comm_ns_by_rank: dict[int, int] = field(default_factory=dict)

    @property
    def regex(self) -> str:
        return suggested_regex(self.name)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("comm_ns_by_rank")
        return out


@dataclass
class RangeTable:
    ranges: list[RangeRow] = field(default_factory=list)
    steps: list[RangeRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ranges": [r.to_dict() for r in self.ranges], "steps": [r.to_dict() for r in self.steps]}

    def row(self, name: str) -> RangeRow:
        for r in self.ranges:
            if r.name == name:
                return r
        raise KeyError(name)


def list_ranges(trace: Trace, include_cpu_ops: bool = False) -> RangeTable:
    """The host range names of a run, their counts, nesting and the communication they launched."""
    sources = DEFAULT_SOURCES + (("cpu_op",) if include_cpu_ops else ())
    all_ranges = trace.ranges
    src = all_ranges["source"].to_numpy()
    regions = all_ranges[np.isin(src, sources)].reset_index(drop=True)
    steps = all_ranges[src == "profiler_step"].reset_index(drop=True)

    comm, step_codes, step_names = _comm_launches(trace)
    return RangeTable(ranges=_region_rows(regions, comm), steps=_step_rows(steps, comm, step_codes, step_names))


# ---- communication ops and where they were launched ------------------------------------------


@dataclass
class _Comm:
    """The comm ops that have a launch event: their GPU interval, rank and launch point."""

    rank: np.ndarray
    start: np.ndarray
    end: np.ndarray
    pid: np.ndarray
    tid: np.ndarray
    time: np.ndarray


def _comm_launches(trace: Trace) -> tuple[_Comm, np.ndarray, pd.Index]:
    """The comm ops with a launch event (the shared launch link), and each one's profiler step
    (codes into the categories returned; -1 where no step holds the launch)."""
    ops = trace.gpu_ops
    launch = launch_points(trace)
    keep = (ops["op_class"] == "comm").to_numpy() & launch.launched
    steps = steps_of(trace, launch)
    comm = _Comm(rank=launch.rank[keep].astype(np.int64), start=ops["start"].to_numpy(np.int64)[keep],
                 end=ops["end"].to_numpy(np.int64)[keep], pid=launch.pid[keep], tid=launch.tid[keep],
                 time=launch.time[keep])
    return comm, np.asarray(steps.codes)[keep], steps.categories


# ---- regions ------------------------------------------------------------------------------


def _region_rows(ranges: pd.DataFrame, comm: _Comm) -> list[RangeRow]:
    if len(ranges) == 0:
        return []
    name_codes, name_list = _names(ranges["name"])
    rank = ranges["rank"].to_numpy(np.int64)
    start = ranges["start"].to_numpy(np.int64)
    end = ranges["end"].to_numpy(np.int64)
    # one key per thread (rank, pid, tid), shared by the ranges and the comm launches
    thread, op_thread = _split(_keys(np.concatenate([rank, comm.rank]),
                                     np.concatenate([ranges["pid"].to_numpy(np.int64), comm.pid]),
                                     np.concatenate([ranges["tid"].to_numpy(np.int64), comm.tid])), rank.size)
    clock = _Clock(start, end, comm.time)
    depth, parent, order = _nesting(thread, start, end, clock)
    pair_op, pair_range = _enclosing(thread, start, end, parent, order, op_thread, comm.time, clock)

    pairs = pd.DataFrame({"op": pair_op, "name": name_codes[pair_range]}).drop_duplicates()
    per_name = _comm_per_group(pairs["name"].to_numpy(), pairs["op"].to_numpy(), comm)
    frame = pd.DataFrame({"name": name_codes, "rank": rank, "depth": depth, "dur": end - start,
                          "source": ranges["source"].astype(str).to_numpy()})
    return _rows(frame, name_list, per_name)


def _names(names: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per row the code of its name, and the names by code (categorical: no string per row)."""
    cat = names.astype("category").cat
    return np.asarray(cat.codes, dtype=np.int64), np.asarray(cat.categories.astype(str), dtype=object)


def _rows(frame: pd.DataFrame, name_list: np.ndarray, per_name: dict) -> list[RangeRow]:
    agg = frame.groupby("name", sort=False).agg(count=("dur", "size"), ranks=("rank", "nunique"),
                                                 min_depth=("depth", "min"), max_depth=("depth", "max"),
                                                 host_ns=("dur", "sum"))
    source = (frame.drop_duplicates(["name", "source"]).sort_values("source")
              .groupby("name")["source"].agg("+".join))
    rows = []
    for code, r in zip(agg.index.to_numpy(), agg.itertuples(index=False)):  # one per distinct name
        n_ops, union_ns, sum_ns, by_rank = per_name.get(int(code), (0, 0, 0, {}))
        rows.append(RangeRow(str(name_list[code]), str(source[code]), int(r.count), int(r.ranks),
                             int(r.min_depth), int(r.max_depth), int(r.host_ns), n_ops, union_ns, sum_ns, by_rank))
    rows.sort(key=lambda r: (r.comm_ops == 0, -r.comm_ns, -r.count, r.name))
    return rows


def _keys(*columns: np.ndarray) -> np.ndarray:
    """One int64 per distinct tuple of the columns (dense, 0..k-1)."""
    key = np.zeros(columns[0].size, dtype=np.int64)
    for col in columns:
        codes, uniques = pd.factorize(col)
        key, _ = pd.factorize(key * np.int64(max(len(uniques), 1)) + codes)
    return np.asarray(key, dtype=np.int64)


def _split(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    return values[:n], values[n:]


class _Clock:
    """Dense ranks of every instant involved, so that (thread, instant) folds into one sortable
    int64 (absolute ns times leave no room beside a key)."""

    def __init__(self, *times: np.ndarray):
        t = np.sort(np.concatenate([np.asarray(t, np.int64) for t in times]))
        self.times = t[np.concatenate([[True], t[1:] != t[:-1]])] if t.size else t

    def base(self, thread: np.ndarray) -> np.ndarray:
        return thread * np.int64(self.times.size + 1)

    def key(self, thread: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.base(thread) + np.searchsorted(self.times, t)


def _nesting(thread: np.ndarray, start: np.ndarray, end: np.ndarray,
             clock: _Clock) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each range: its depth on its thread (how many ranges opened before it are still open
    when it opens), its parent (the latest-opened of those, -1 at depth 0), and the order that
    sorts the ranges by (thread, start, longest first)."""
    n = start.size
    order = np.lexsort((-end, start, thread))
    t, s, e = thread[order], start[order], end[order]
    pos = np.arange(n)
    opened_before = pos - np.searchsorted(t, t, side="left")
    # ranges of the thread that ended at or before this one opened
    s_key, e_key = clock.key(t, s), clock.key(t, e)
    e_sorted = np.sort(e_key)
    ended = np.searchsorted(e_sorted, s_key, side="right") - np.searchsorted(e_sorted, clock.base(t), side="left")
    # ... less the zero-length ranges that open at the same instant but sort after this one (they
    # "ended" at s without having opened before it, this one included): the tail of its start block
    block_lo = np.searchsorted(s_key, s_key, side="left")
    block_hi = np.searchsorted(s_key, s_key, side="right")
    zeros = np.concatenate([[0], np.cumsum(e == s)])
    zero_in_block = zeros[block_hi] - zeros[block_lo]
    overcount = np.clip(block_hi - np.maximum(pos, block_hi - zero_in_block), 0, None)
    depth_sorted = np.clip(opened_before - (ended - overcount), 0, None)

    # parent: the latest range of the same thread opened before this one, one level up
    parent_sorted = np.full(n, -1, dtype=np.int64)
    for d in range(1, int(depth_sorted.max(initial=0)) + 1):  # one pass per nesting level
        child = np.flatnonzero(depth_sorted == d)
        up = np.flatnonzero(depth_sorted == d - 1)
        j = np.searchsorted(up, child, side="left") - 1
        ok = j >= 0
        ok[ok] = t[up[j[ok]]] == t[child[ok]]
        parent_sorted[child[ok]] = up[j[ok]]
    depth = np.empty(n, dtype=np.int64)
    depth[order] = depth_sorted
    parent = np.full(n, -1, dtype=np.int64)
    has = parent_sorted >= 0
    parent[order[has]] = order[parent_sorted[has]]
    return depth, parent, order


def _enclosing(thread: np.ndarray, start: np.ndarray, end: np.ndarray, parent: np.ndarray, order: np.ndarray,
               op_thread: np.ndarray, time: np.ndarray, clock: _Clock) -> tuple[np.ndarray, np.ndarray]:
    """(op, range) for every range that contains an op's launch instant on the launching thread,
    half-open [start, end) as `analyze`. The latest range opened at or before the instant is found
    by one binary search; the ranges containing the instant are it and its ancestors that are
    still open (ranges on a thread nest: record_function, NVTX push/pop)."""
    if time.size == 0 or start.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    sorted_key = clock.key(thread[order], start[order])
    at = np.searchsorted(sorted_key, clock.key(op_thread, time), side="right") - 1
    ok = at >= 0
    ok[ok] = thread[order[at[ok]]] == op_thread[ok]
    ops = np.flatnonzero(ok)
    cur = order[at[ok]]
    got_op, got_range = [], []
    while ops.size:  # one pass per nesting level
        inside = (start[cur] <= time[ops]) & (time[ops] < end[cur])
        got_op.append(ops[inside])
        got_range.append(cur[inside])
        cur = parent[cur]
        keep = cur >= 0
        ops, cur = ops[keep], cur[keep]
    return np.concatenate(got_op), np.concatenate(got_range)


def _comm_per_group(group: np.ndarray, op: np.ndarray, comm: _Comm) -> dict[int, tuple[int, int, int, dict]]:
    """Per group (a name): (ops, per-rank union of their intervals summed over ranks, sum of their
    durations, {rank: union})."""
    if group.size == 0:
        return {}
    df = pd.DataFrame({"g": group, "rank": comm.rank[op], "s": comm.start[op], "e": comm.end[op]})
    df = df.sort_values(["g", "rank", "s"], kind="stable").reset_index(drop=True)
    reach = df.groupby(["g", "rank"], sort=False)["e"].cummax().to_numpy(np.int64)
    g, r = df["g"].to_numpy(), df["rank"].to_numpy()
    first = np.ones(len(df), dtype=bool)
    first[1:] = (g[1:] != g[:-1]) | (r[1:] != r[:-1])
    prev = np.roll(reach, 1)  # how far the group's earlier intervals reach (int64 throughout:
    prev[first] = np.iinfo(np.int64).min  # absolute ns do not survive a float64)
    s, e = df["s"].to_numpy(), df["e"].to_numpy()
    df["covered"] = np.clip(e - np.maximum(s, prev), 0, None)
    df["dur"] = np.clip(e - s, 0, None)
    by_rank = df.groupby(["g", "rank"], sort=True)["covered"].sum()
    per = df.groupby("g").agg(ops=("s", "size"), covered=("covered", "sum"), dur=("dur", "sum"))
    ranks: dict[int, dict[int, int]] = {}
    for (g, r), v in by_rank.items():  # one per (name, rank)
        ranks.setdefault(int(g), {})[int(r)] = int(v)
    return {int(g): (int(row.ops), int(row.covered), int(row.dur), ranks.get(int(g), {}))
            for g, row in zip(per.index.to_numpy(), per.itertuples(index=False))}


# ---- profiler steps -----------------------------------------------------------------------


def _step_rows(steps: pd.DataFrame, comm: _Comm, step_codes: np.ndarray, step_names: pd.Index) -> list[RangeRow]:
    """Each profiler step name: a window of the whole process (any thread's launches count;
    trace.links.steps_of assigns them)."""
    if len(steps) == 0:
        return []
    name_codes, name_list = _names(steps["name"])
    index = {str(n): i for i, n in enumerate(name_list)}
    lookup = np.array([index.get(str(n), -1) for n in step_names] + [-1], dtype=np.int64)
    op_codes = lookup[np.where(step_codes >= 0, step_codes, len(step_names))]
    ops = np.flatnonzero(op_codes >= 0)
    per_name = _comm_per_group(op_codes[ops], ops, comm)
    frame = pd.DataFrame({"name": name_codes, "rank": steps["rank"].to_numpy(np.int64), "depth": 0,
                          "dur": steps["end"].to_numpy(np.int64) - steps["start"].to_numpy(np.int64),
                          "source": "profiler_step"})
    return _rows(frame, name_list, per_name)
