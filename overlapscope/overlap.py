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
from typing import Any

import numpy as np
import pandas as pd

from . import intervals as iv
from .trace.links import host_ranges, launch_points, launched_inside, steps_of
from .trace.model import Trace
from .trace.names import compile_all, names_matching
from .trace.taxonomy import SUSPECT, suggested_pattern


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
    dropped_rows: dict[str, int] = field(default_factory=dict)  # malformed rows the reader left out, by kind


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
    matched: tuple[str, ...] = ()  # the distinct names of those ranges (history groups regexes by them; not in JSON)


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
class StepRegionRow:
    """A region within one profiler step on one rank (with --region, the step table per region)."""

    rank: int
    step: str
    region: str
    comm_ns: int
    overlap_ns: int
    overlap_pct: float | None
    exposed_comm_ns: int


@dataclass
class FamilyRow:
    """The communication of one family (trace/taxonomy.py) on one rank: "fused" kernels are
    reported here and counted neither as comm nor as compute; peer copies between GPUs are
    "memory" unless --copy-comm counts them as "comm"."""

    rank: int
    family: str
    op_class: str  # "comm" | "fused" | "memory" (peer copies not counted)
    kernels: int
    time_ns: int  # union of the family's kernels on the rank


@dataclass
class SuspectRow:
    """A kernel counted as compute whose name looks like communication, and how to count it."""

    rank: int
    kernel: str
    kernels: int
    time_ns: int  # sum of the launches' durations
    comm_pattern: str  # the --comm-pattern that would count it


@dataclass
class ExposedRow:
    """One communication kernel instance and how much of it no compute hid (attribution.py)."""

    rank: int
    step: str
    range_path: str  # the user's host ranges around its launch, outermost first, joined by " > "
    kernel: str
    stream: int
    start_ns: int
    end_ns: int
    comm_ns: int
    exposed_ns: int


@dataclass
class PathRow:
    """A node of the exposed tree: the comm launched under a range path (descendants included)."""

    rank: int
    path: str
    depth: int
    comm_ns: int
    exposed_ns: int
    instances: int


_ROW_LISTS = ("ranks", "regions", "steps", "region_steps", "families", "suspects", "exposed", "exposed_paths")
DEFAULT_TOP = 20


@dataclass
class Analysis:
    ranks: list[RankRow] = field(default_factory=list)
    regions: list[ScopeRow] = field(default_factory=list)
    steps: list[ScopeRow] = field(default_factory=list)
    region_steps: list[StepRegionRow] = field(default_factory=list)
    families: list[FamilyRow] = field(default_factory=list)
    suspects: list[SuspectRow] = field(default_factory=list)
    exposed: list[ExposedRow] = field(default_factory=list)  # the worst instances, up to `top`
    exposed_paths: list[PathRow] = field(default_factory=list)  # the exposed tree's worst nodes, up to `top` per rank
    top: int = DEFAULT_TOP

    def nothing_measured(self) -> str | None:
        """Why no overlap number exists for this run at all, or None when one does."""
        if not any(r.compute_ns or r.comm_ns for r in self.ranks):
            return "no GPU kernels in the trace: nothing to measure"
        if not any(r.comm_ns for r in self.ranks):
            if self.suspects:
                s = max(self.suspects, key=lambda r: r.time_ns)
                return (f"no communication kernel recognised, but {len({x.kernel for x in self.suspects})} kernel "
                        f"name(s) look like communication (e.g. {s.kernel[:80]!r}): if it is, pass "
                        f"--comm-pattern {s.comm_pattern!r}; until then overlap is not applicable (null)")
            return "no communication kernels in the trace: overlap is not applicable (null)"
        return None

    def warnings(self) -> list[str]:
        """What the numbers left out: malformed rows (per file) and peer copies not counted as comm."""
        out = [f"{source}: {count:,} {what} left out (malformed rows; dropped_rows in --json)"
               for source, dropped in {r.source: r.dropped_rows for r in self.ranks}.items()
               for what, count in dropped.items()]
        copies = [f for f in self.families if f.op_class == "memory"]
        if copies:
            out.append(f"{sum(f.kernels for f in copies):,} peer-to-peer copies between GPUs "
                       f"({sum(f.time_ns for f in copies) / 1e6:,.3f} ms) are not counted as communication; "
                       "--copy-comm counts them")
        return out

    def _map(self, fn) -> Analysis:
        return Analysis(**{name: [fn(row) for row in getattr(self, name)] for name in _ROW_LISTS}, top=self.top)

    def renumbered(self, by: int) -> Analysis:
        """The same rows with rank numbers moved up by `by`."""
        return self if not by else self._map(lambda row: dataclasses.replace(row, rank=row.rank + by))

    def with_source(self, old: str, new: str) -> Analysis:
        return self._map(lambda row: dataclasses.replace(row, source=new)
                         if getattr(row, "source", None) == old else row)

    @classmethod
    def joined(cls, parts: list[Analysis]) -> Analysis:
        """Rows of several files' analyses in rank order, each rank's rows in the order `analyze` gives them."""
        def by_rank(row: Any) -> int:
            return row.rank

        top = max((p.top for p in parts), default=DEFAULT_TOP)
        out = cls(**{name: sorted((r for p in parts for r in getattr(p, name)), key=by_rank) for name in _ROW_LISTS},
                  top=top)
        out.exposed = _worst(out.exposed, top)
        return out

    def to_dict(self) -> dict:
        return {name: [_row_dict(r) for r in getattr(self, name)] for name in _ROW_LISTS}


def analyze(trace: Trace, regions: list[str] | tuple[str, ...] = (), top: int = DEFAULT_TOP,
            attribution: Any = None) -> Analysis:
    """The overlap table of a run: whole trace per rank, each region regex, each profiler step
    (and, with regions, each region within each step), communication per family and the kernels
    that look like communication but are counted as compute. `attribution`: the trace's
    attribution.attribute(), when the caller needs it too (it is computed otherwise)."""
    patterns = compile_regions(regions)
    launch = launch_points(trace)
    step_of = steps_of(trace, launch)
    ops = trace.gpu_ops
    op_class = ops["op_class"].to_numpy()
    out = Analysis(top=top)
    _attributed(trace, out, attribution)
    for info in trace.ranks:
        mine = (ops["rank"] == info.rank).to_numpy()
        comm = mine & (op_class == "comm")
        compute_set = _union_of(ops, mine & (op_class == "compute"))
        whole = overlap_of(_union_of(ops, comm), compute_set)
        out.ranks.append(RankRow(info.rank, info.source, info.device, whole.comm_ns, whole.compute_ns,
                                 whole.overlap_ns, whole.overlap_pct, whole.exposed_comm_ns, dict(info.dropped_rows)))
        rank_ranges = host_ranges(trace.ranges[trace.ranges["rank"].to_numpy() == info.rank])
        steps = rank_ranges[rank_ranges["source"] == "profiler_step"]
        step_ranges = steps["name"].astype(str).value_counts()
        out.steps.extend(_step_rows(info.rank, ops, comm, step_of, step_ranges, compute_set))
        for regex, pattern in zip(regions, patterns):
            matched = rank_ranges[names_matching(rank_ranges["name"], pattern)]
            inside = comm & launched_inside(launch, matched)
            names = tuple(sorted(set(matched["name"].astype(str))))
            out.regions.append(dataclasses.replace(
                _scope_row(info.rank, regex, len(matched), _union_of(ops, inside), compute_set), matched=names))
            out.region_steps.extend(StepRegionRow(info.rank, row.region, regex, row.comm_ns, row.overlap_ns,
                                                  row.overlap_pct, row.exposed_comm_ns)
                                    for row in _step_rows(info.rank, ops, inside, step_of, step_ranges, compute_set))
        out.families.extend(_family_rows(info.rank, ops, mine))
        out.suspects.extend(_suspect_rows(info.rank, ops, mine & (op_class == "compute")))
    return out


def _attributed(trace: Trace, out: Analysis, found: Any = None) -> None:
    """The worst exposed instances and the worst nodes of each rank's exposed tree (from `found`,
    an attribution.Attribution of this trace, when the caller already has one)."""
    if found is None:
        from .attribution import attribute

        found = attribute(trace)
    out.exposed = [ExposedRow(**{k: _plain(v) for k, v in row.items()})
                   for row in found.worst(out.top)[list(ExposedRow.__dataclass_fields__)].to_dict("records")]
    paths = found.by_path()
    paths = paths[paths["depth"] >= 1].sort_values(["rank", "exposed_ns"], ascending=[True, False], kind="stable")
    paths = paths.groupby("rank", sort=False).head(out.top)
    out.exposed_paths = [PathRow(**{k: _plain(v) for k, v in row.items()})
                         for row in paths[list(PathRow.__dataclass_fields__)].to_dict("records")]


def _row_dict(row: Any) -> dict[str, Any]:
    out = asdict(row)
    out.pop("matched", None)
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value) if not isinstance(value, (int, str)) else value


def _worst(rows: list[ExposedRow], top: int) -> list[ExposedRow]:
    return sorted(rows, key=lambda r: (-r.exposed_ns, r.start_ns, r.rank))[:top]


def _step_rows(rank: int, ops: pd.DataFrame, comm: np.ndarray, step_of: pd.Categorical, step_ranges: pd.Series,
               compute: iv.IntervalSet) -> list[ScopeRow]:
    """One row per ProfilerStep name of the rank, in one pass: each comm op's step is known, then
    each step's comm is intersected only with the compute inside that comm's span (steps × ops
    would cost seconds on a million ops)."""
    if not len(step_ranges):
        return []
    codes = np.where(comm, step_of.codes, -1)
    categories = list(step_of.categories)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(categories) + 1))
    starts, ends = ops["start"].to_numpy(), ops["end"].to_numpy()
    rows = []
    for name in step_ranges.index.sort_values(key=_step_number):  # ProfilerStep#2 before #10
        i = categories.index(name) if name in categories else -1
        idx = order[bounds[i]:bounds[i + 1]] if i >= 0 else np.empty(0, np.int64)
        c = iv.union(starts[idx], ends[idx])
        rows.append(_scope_row(rank, str(name), int(step_ranges[name]), c, _within(compute, c)))
    return rows


def _step_number(names: pd.Index) -> pd.Index:
    return names.map(lambda n: int(n.rsplit("#", 1)[-1]) if n.rsplit("#", 1)[-1].isdigit() else -1)


def _family_rows(rank: int, ops: pd.DataFrame, mine: np.ndarray) -> list[FamilyRow]:
    families = ops["family"].to_numpy()
    cls = ops["op_class"].to_numpy()
    rows = []
    for family in sorted({f for f in families[mine] if f}):
        these = mine & (families == family)
        rows.append(FamilyRow(rank, str(family), str(cls[these][0]), int(these.sum()), iv.measure(_union_of(ops, these))))
    return sorted(rows, key=lambda r: -r.time_ns)


def _suspect_rows(rank: int, ops: pd.DataFrame, compute: np.ndarray) -> list[SuspectRow]:
    """Compute kernels whose names look like communication: each distinct name tested once."""
    names = ops["name"].cat
    codes = names.codes.to_numpy()
    hit = compute & names_matching(ops["name"], SUSPECT)
    if not hit.any():
        return []
    counts = np.bincount(codes[hit], minlength=len(names.categories))
    times = np.zeros(len(names.categories), dtype=np.int64)  # exact ns: no float weights
    np.add.at(times, codes[hit], ops["end"].to_numpy()[hit] - ops["start"].to_numpy()[hit])
    rows = [SuspectRow(rank, str(names.categories[c]), int(counts[c]), int(times[c]),
                       suggested_pattern(str(names.categories[c]))) for c in np.flatnonzero(counts)]
    return sorted(rows, key=lambda r: -r.time_ns)


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
