"""Communication/computation overlap per rank, per region and per profiler step.

DESIGN.md, "Overlap": for a scope on a rank, C = union of the scope's comm ops and K = union of
all compute ops of the rank (every stream, any scope);
overlap_pct = |C ∩ K| / |C| × 100, exposed_comm_ns = |C \\ K|, and null when |C| = 0.
A GPU op belongs to a region (or a profiler step) when the host call that launched it
(linked by correlation id) starts inside one of the region's ranges on the same thread.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from . import intervals as iv
from .trace.links import LaunchPoints, host_ranges, launch_points, launched_inside
from .trace.model import Trace
from .trace.names import compile_all, names_matching


def percent(part_ns: int, whole_ns: int) -> float | None:
    """part / whole × 100: the one place a percentage of communication is computed; None (not
    applicable) when there is no communication at all."""
    return None if whole_ns == 0 else 100.0 * part_ns / whole_ns


@dataclass(frozen=True)
class Overlap:
    comm_ns: int
    compute_ns: int
    overlap_ns: int

    @property
    def exposed_comm_ns(self) -> int:
        return self.comm_ns - self.overlap_ns

    @property
    def overlap_pct(self) -> float | None:
        """None (not applicable) when there is no communication at all."""
        return percent(self.overlap_ns, self.comm_ns)


def overlap_of(comm: iv.IntervalSet, compute: iv.IntervalSet) -> Overlap:
    return Overlap(iv.measure(comm), iv.measure(compute), iv.measure(iv.intersection(comm, compute)))


@dataclass
class RankRow:
    rank: int
    source: str
    device: int | None
    comm_ns: int
    compute_ns: int
    overlap_ns: int
    overlap_pct: float | None
    exposed_comm_ns: int


@dataclass
class ScopeRow:
    """A region (or profiler step) on one rank."""

    rank: int
    region: str
    comm_ns: int
    overlap_ns: int
    overlap_pct: float | None
    exposed_comm_ns: int
    ranges: int  # how many host ranges matched, so "no such region" is told apart from "no comm in it"


@dataclass(frozen=True)
class KernelRow:
    """A communication kernel name, over all ranks: how long it ran and how much of that no compute hid."""

    name: str
    ranks: int
    count: int
    total_ns: int
    exposed_ns: int

    @property
    def exposed_pct(self) -> float | None:
        return percent(self.exposed_ns, self.total_ns)


@dataclass
class Analysis:
    ranks: list[RankRow] = field(default_factory=list)
    regions: list[ScopeRow] = field(default_factory=list)
    steps: list[ScopeRow] = field(default_factory=list)

    def nothing_measured(self) -> str | None:
        """Why no overlap number exists for this run at all, or None when one does."""
        if not any(r.compute_ns or r.comm_ns for r in self.ranks):
            return "no GPU kernels in the trace: nothing to measure"
        if not any(r.comm_ns for r in self.ranks):
            return "no communication kernels in the trace: overlap is not applicable (null)"
        return None

    def renumbered(self, by: int) -> Analysis:
        """The same rows with rank numbers moved up by `by`."""
        if not by:
            return self
        return Analysis(*([dataclasses.replace(row, rank=row.rank + by) for row in rows]
                          for rows in (self.ranks, self.regions, self.steps)))

    def with_source(self, old: str, new: str) -> Analysis:
        ranks = [dataclasses.replace(r, source=new) if r.source == old else r for r in self.ranks]
        return Analysis(ranks, self.regions, self.steps)

    @classmethod
    def joined(cls, parts: list[Analysis]) -> Analysis:
        """Rows of several files' analyses in rank order, each rank's rows in the order `analyze` gives them."""
        def by_rank(row: RankRow | ScopeRow) -> int:
            return row.rank

        return cls(ranks=sorted((r for p in parts for r in p.ranks), key=by_rank),
                   regions=sorted((r for p in parts for r in p.regions), key=by_rank),
                   steps=sorted((r for p in parts for r in p.steps), key=by_rank))

    def to_dict(self) -> dict:
        return {
            "ranks": [asdict(r) for r in self.ranks],
            "regions": [asdict(r) for r in self.regions],
            "steps": [asdict(r) for r in self.steps],
        }


def analyze(trace: Trace, regions: list[str] | tuple[str, ...] = ()) -> Analysis:
    """The overlap table of a run: whole trace per rank, each `--region` regex, each profiler step."""
    patterns = compile_regions(regions)
    launch = launch_points(trace)
    out = Analysis()
    for info in trace.ranks:
        ops = trace.gpu_ops
        mine = (ops["rank"] == info.rank).to_numpy()
        comm = mine & (ops["op_class"] == "comm").to_numpy()
        compute_set = _union_of(ops, mine & (ops["op_class"] == "compute").to_numpy())
        whole = overlap_of(_union_of(ops, comm), compute_set)
        out.ranks.append(RankRow(info.rank, info.source, info.device, whole.comm_ns, whole.compute_ns,
                                 whole.overlap_ns, whole.overlap_pct, whole.exposed_comm_ns))
        rank_ranges = host_ranges(trace.ranges[trace.ranges["rank"].to_numpy() == info.rank])
        for regex, pattern in zip(regions, patterns):
            matched = rank_ranges[names_matching(rank_ranges["name"], pattern)]
            inside = comm & launched_inside(launch, matched)
            out.regions.append(_scope_row(info.rank, regex, len(matched), _union_of(ops, inside), compute_set))
        steps = rank_ranges[rank_ranges["source"] == "profiler_step"]
        out.steps.extend(_step_rows(info.rank, ops, comm, launch, steps, compute_set))
    return out


def _step_rows(rank: int, ops: pd.DataFrame, comm: np.ndarray, launch: LaunchPoints, steps: pd.DataFrame,
               compute: iv.IntervalSet) -> list[ScopeRow]:
    """One row per ProfilerStep name, in one pass: each comm op is assigned its step, then each
    step's comm is intersected only with the compute inside that comm's span (steps × ops would
    cost seconds on a million ops)."""
    if len(steps) == 0:
        return []
    names = steps["name"].astype(str).to_numpy()
    order = pd.unique(names)
    name_index = {n: i for i, n in enumerate(order)}
    step_of_op = np.full(len(ops), -1, dtype=np.int64)
    for (pid, tid), group in steps.groupby(["pid", "tid"], sort=False):
        # steps follow each other on their thread: the step of a launch is the last one starting
        # at or before it, provided the launch is before that step's end
        group = group.sort_values("start")
        ids = np.array([name_index[n] for n in group["name"].astype(str)], dtype=np.int64)
        mine = np.flatnonzero(comm & (launch.pid == pid) & (launch.tid == tid) & (launch.rank == rank))
        at = np.searchsorted(group["start"].to_numpy(), launch.time[mine], side="right") - 1
        ok = at >= 0
        ok[ok] = launch.time[mine][ok] < group["end"].to_numpy()[at[ok]]
        step_of_op[mine[ok]] = ids[at[ok]]
    starts, ends = ops["start"].to_numpy(), ops["end"].to_numpy()
    op_order = np.argsort(step_of_op, kind="stable")
    bounds = np.searchsorted(step_of_op[op_order], np.arange(len(order) + 1))
    ranges_per_name = pd.Series(names).value_counts()
    rows = []
    for i, name in enumerate(order):
        idx = op_order[bounds[i]:bounds[i + 1]]
        c = iv.union(starts[idx], ends[idx])
        k = _within(compute, c)
        rows.append(_scope_row(rank, str(name), int(ranges_per_name[name]), c, k))
    return rows


def _within(s: iv.IntervalSet, span_of: iv.IntervalSet) -> iv.IntervalSet:
    """The intervals of `s` that can meet `span_of` (those overlapping its overall span)."""
    if span_of[0].size == 0 or s[0].size == 0:
        return iv.empty()
    lo = np.searchsorted(s[1], span_of[0][0], side="right")
    hi = np.searchsorted(s[0], span_of[1][-1], side="left")
    return s[0][lo:hi], s[1][lo:hi]


def _scope_row(rank: int, name: str, n_ranges: int, comm: iv.IntervalSet, compute: iv.IntervalSet) -> ScopeRow:
    o = overlap_of(comm, compute)
    return ScopeRow(rank, name, o.comm_ns, o.overlap_ns, o.overlap_pct, o.exposed_comm_ns, n_ranges)


def _union_of(ops: pd.DataFrame, mask: np.ndarray) -> iv.IntervalSet:
    return iv.union(ops["start"].to_numpy()[mask], ops["end"].to_numpy()[mask])


def compile_regions(regions: list[str] | tuple[str, ...]) -> list[re.Pattern[str]]:
    """The region regexes, compiled; a bad one is BadInput."""
    return compile_all(regions, "region")


def exposed_by_kernel(trace: Trace, top: int) -> list[KernelRow]:
    """The comm kernel names with the most exposed time (each op against its own rank's compute)."""
    ops = trace.gpu_ops
    cls, start, end = ops["op_class"].to_numpy(), ops["start"].to_numpy(), ops["end"].to_numpy()
    parts = []
    for info in trace.ranks:
        mine = ops["rank"].to_numpy() == info.rank
        compute = iv.union(start[mine & (cls == "compute")], end[mine & (cls == "compute")])
        comm = ops[mine & (cls == "comm")]
        if not len(comm):
            continue
        s, e = comm["start"].to_numpy(), comm["end"].to_numpy()
        hidden = iv.covered_before(compute, e) - iv.covered_before(compute, s)
        parts.append(pd.DataFrame({"name": comm["name"].astype(str).to_numpy(), "rank": info.rank,
                                   "total": e - s, "exposed": (e - s) - hidden}))
    if not parts:
        return []
    table = pd.concat(parts).groupby("name", sort=False).agg(
        ranks=("rank", "nunique"), launches=("total", "size"), total=("total", "sum"), exposed=("exposed", "sum"))
    table = table.sort_values(["exposed", "total"], ascending=False).head(top)
    return [KernelRow(str(r.Index), int(r.ranks), int(r.launches), int(r.total), int(r.exposed))
            for r in table.itertuples()]
