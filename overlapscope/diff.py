"""Before/after: what changed between two runs, and why (docs/diff.md).

Per rank and scope (the whole trace and each `--region` regex), both runs' comm, compute, overlap,
exposed comm, exposed comm per profiler step and GPU step time, and the change; the exposed tree's
biggest movers (attribution.py's range paths whose exposed time changed most); the race groups
that appeared or went away.

- Ranks are matched by rank number, scopes by name (the regex as given).
- `compute_ns` is |K|, the union of all compute ops of the rank (every scope shares it: overlap is
  measured against it).
- `exposed_per_step_ns`: the mean over the rank's profiler steps of the exposed comm launched in
  that step (analyze's per-step rows; a step without comm counts as 0). None without profiler steps.
- `step_ns` (GPU step time): for each profiler step, the span from the start of the first to the
  end of the last GPU op (any class) launched in that step (in a region: launched in the region
  in that step); the mean over the steps with at least one such op. None without profiler steps.
- Movers: `Attribution.by_path()` of both runs merged on (rank, range path), nodes of depth >= 1,
  delta of `exposed_ns` (the sum over the instances launched under the path, whole trace), the
  `top` largest |delta| (ties: deeper paths last, then by name).
- Race findings are matched by (rank, rule, buffer, first op name, second op name), counting
  repeats, so a finding that only moved in time is neither new nor gone. Race *groups* are matched
  by (rule, first side, second side, buffer family) of `RaceReport.groups`, counting occurrences
  (ranks and streams may differ between the runs).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .overlap import DEFAULT_TOP, Analysis, analyze, percent
from .races.findings import Finding, FindingGroup, RaceReport
from .trace.model import Trace

WHOLE_TRACE = "(whole trace)"
DEFAULT_MOVERS = 10


@dataclass(frozen=True)
class Side:
    """One scope on one rank, in one of the two runs (None where that run lacks the rank)."""

    comm_ns: int
    overlap_ns: int
    overlap_pct: float | None
    exposed_comm_ns: int
    compute_ns: int = 0  # |K| of the rank (shared by all its scopes)
    steps: int = 0  # profiler steps of the rank
    exposed_per_step_ns: float | None = None  # mean over the steps of the exposed comm launched in each
    step_ns: float | None = None  # mean GPU span of a step (first to last op launched in it, in the scope)


@dataclass(frozen=True)
class DiffRow:
    rank: int
    scope: str
    before: Side | None
    after: Side | None

    @property
    def overlap_delta(self) -> float | None:
        """Percentage points; None when either side is not applicable."""
        if self.before is None or self.after is None or None in (self.before.overlap_pct, self.after.overlap_pct):
            return None
        return self.after.overlap_pct - self.before.overlap_pct

    @property
    def exposed_delta_ns(self) -> int | None:
        if self.before is None or self.after is None:
            return None
        return self.after.exposed_comm_ns - self.before.exposed_comm_ns

    def delta(self, name: str) -> float | None:
        """after - before of a Side field; None when either is missing."""
        a = None if self.after is None else getattr(self.after, name)
        b = None if self.before is None else getattr(self.before, name)
        return None if a is None or b is None else a - b

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "scope": self.scope,
                "before": None if self.before is None else asdict(self.before),
                "after": None if self.after is None else asdict(self.after),
                "overlap_delta_pct": self.overlap_delta, "exposed_comm_delta_ns": self.exposed_delta_ns,
                "comm_delta_ns": self.delta("comm_ns"), "compute_delta_ns": self.delta("compute_ns"),
                "exposed_per_step_delta_ns": self.delta("exposed_per_step_ns"),
                "step_delta_ns": self.delta("step_ns")}


@dataclass(frozen=True)
class Mover:
    """A node of the exposed tree (rank, range path) whose exposed time changed."""

    rank: int
    path: str
    depth: int
    exposed_before_ns: int
    exposed_after_ns: int
    comm_before_ns: int
    comm_after_ns: int

    @property
    def delta_ns(self) -> int:
        return self.exposed_after_ns - self.exposed_before_ns

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exposed_delta_ns": self.delta_ns}


@dataclass(frozen=True)
class GroupChange:
    """A race root cause (rule, the two sides, the buffer family) and its occurrences in each run."""

    rule: str
    first: str
    second: str
    buffer_family: str
    before: int  # occurrences
    after: int
    kind: str  # manifest when any occurrence (in the run that has it, after first) is
    hint: str

    @property
    def status(self) -> str:
        return "new" if not self.before else "gone" if not self.after else "kept"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


@dataclass
class Diff:
    rows: list[DiffRow]
    new_findings: list[Finding] = field(default_factory=list)
    gone_findings: list[Finding] = field(default_factory=list)
    unchanged_findings: int = 0
    movers: list[Mover] = field(default_factory=list)
    groups: list[GroupChange] = field(default_factory=list)  # every race root cause of either run
    regions: list[str] = field(default_factory=list)
    race_verdicts: tuple[str, str] = ("", "")  # RaceReport.verdict of before, after ("" when unknown)
    labels: tuple[str, str] = ("before", "after")

    @property
    def new_groups(self) -> list[GroupChange]:
        return [g for g in self.groups if g.status == "new"]

    @property
    def gone_groups(self) -> list[GroupChange]:
        return [g for g in self.groups if g.status == "gone"]

    def regressions(self, fail_on_regression_pts: float | None = None,
                    fail_on_new_races: bool = False) -> list[str]:
        """Why this change should fail CI (empty: pass). With `fail_on_regression_pts`: every
        rank and scope whose overlap fell by more than that many points, and (failing closed)
        every one measured before that cannot be measured after (rank missing, or no comm).
        With `fail_on_new_races`: every new race group, and an after run whose races could not
        be checked (no memory access known) while the before run's were."""
        out: list[str] = []
        if fail_on_regression_pts is not None:
            limit = float(fail_on_regression_pts)
            for row in self.rows:
                b, a = row.before, row.after
                if b is None or b.overlap_pct is None:
                    continue
                where = f"rank {row.rank}, {row.scope}"
                if a is None:
                    out.append(f"{where}: overlap {b.overlap_pct:.1f} % before, rank missing after")
                elif a.overlap_pct is None:
                    out.append(f"{where}: overlap {b.overlap_pct:.1f} % before, not applicable after "
                               "(no communication in the scope)")
                elif row.overlap_delta is not None and row.overlap_delta < -limit:
                    out.append(f"{where}: overlap fell from {b.overlap_pct:.1f} % to {a.overlap_pct:.1f} % "
                               f"({row.overlap_delta:+.1f} pts, more than {limit:g} pts)")
        if fail_on_new_races:
            for g in self.new_groups:
                out.append(f"new race: {g.rule} between {g.first} and {g.second} on {g.buffer_family} "
                           f"({g.after} occurrence(s), {g.kind})")
            before, after = self.race_verdicts
            if after == "not checked" and before != "not checked":
                out.append("races not checked in the after run (no memory access known): new races cannot be "
                           "ruled out")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows],
                "races": {"new": [f.to_dict() for f in self.new_findings],
                          "gone": [f.to_dict() for f in self.gone_findings],
                          "unchanged": self.unchanged_findings,
                          "verdict_before": self.race_verdicts[0], "verdict_after": self.race_verdicts[1],
                          "groups": [g.to_dict() for g in self.groups]},
                "movers": [m.to_dict() for m in self.movers],
                "regions": list(self.regions),
                "labels": list(self.labels)}


def diff_runs(before: Trace, after: Trace, regions: list[str] | tuple[str, ...] = (),
              top: int = DEFAULT_MOVERS) -> Diff:
    """Compare two runs (for example a model's inline and comm-stream variants); `top` movers."""
    from .attribution import attribute
    from .races import check_races

    analyses = analyze(before, regions, DEFAULT_TOP), analyze(after, regions, DEFAULT_TOP)
    spans = step_spans(before, regions), step_spans(after, regions)
    out = Diff(rows=compare_overlap(*analyses, spans=spans), regions=list(regions),
               labels=(run_label(before, "before"), run_label(after, "after")))
    reports = check_races(before), check_races(after)
    out.new_findings, out.gone_findings, out.unchanged_findings = compare_findings(*reports)
    out.groups = compare_groups(*reports)
    out.race_verdicts = (reports[0].verdict, reports[1].verdict)
    out.movers = movers(attribute(before).by_path(), attribute(after).by_path(), top)
    return out


def run_label(trace: Trace, default: str) -> str:
    """run.json's model/variant (profiler), else `default`."""
    m = trace.manifest or {}
    name = "/".join(str(m[k]) for k in ("model", "variant") if m.get(k))
    if not name:
        return default
    return f"{name} ({m['profiler']})" if m.get("profiler") else name


def compare_overlap(before: Analysis, after: Analysis,
                    spans: tuple[dict, dict] | None = None) -> list[DiffRow]:
    b, a = _sides(before, spans[0] if spans else {}), _sides(after, spans[1] if spans else {})
    keys = sorted(set(b) | set(a), key=lambda k: (k[0], k[1] != WHOLE_TRACE, k[1]))
    return [DiffRow(rank, scope, b.get((rank, scope)), a.get((rank, scope))) for rank, scope in keys]


def compare_findings(before: RaceReport, after: RaceReport) -> tuple[list[Finding], list[Finding], int]:
    """(new, gone, unchanged count): a multiset difference over the findings' identities."""
    new = _unmatched(after.findings, before.findings)
    gone = _unmatched(before.findings, after.findings)
    return new, gone, len(after.findings) - len(new)


def group_identity(g: FindingGroup) -> tuple[str, str, str, str]:
    return g.rule, g.first.what, g.second.what, g.buffer_family


def compare_groups(before: RaceReport, after: RaceReport) -> list[GroupChange]:
    """Every race root cause of either run with its occurrences in each: new ones first, then
    gone, then kept (each in the order of the run that has it)."""
    counts: dict[tuple, list[int]] = {}
    shown: dict[tuple, tuple[int, list[FindingGroup]]] = {}  # the groups of the run that has it, after first
    for side, report in ((1, after), (0, before)):
        for g in report.groups:  # a property: computed once per report here
            key = group_identity(g)
            counts.setdefault(key, [0, 0])[side] += g.count
            if shown.setdefault(key, (side, []))[0] == side:
                shown[key][1].append(g)
    info = {key: next((g for g in gs if g.kind == "manifest"), gs[0]) for key, (_, gs) in shown.items()}
    out = [GroupChange(*key, before=c[0], after=c[1], kind=info[key].kind, hint=info[key].hint)
           for key, c in counts.items()]
    rank = {"new": 0, "gone": 1, "kept": 2}
    return sorted(out, key=lambda g: rank[g.status])


def movers(before_paths, after_paths, top: int = DEFAULT_MOVERS) -> list[Mover]:
    """The exposed tree's nodes (depth >= 1) whose exposed time changed most, by |delta|."""
    import pandas as pd

    cols = ["rank", "path", "depth", "comm_ns", "exposed_ns"]
    b = before_paths.loc[before_paths["depth"] >= 1, cols]
    a = after_paths.loc[after_paths["depth"] >= 1, cols]
    merged = pd.merge(b, a, on=["rank", "path"], how="outer", suffixes=("_b", "_a"))
    if not len(merged):
        return []
    for c in ("comm_ns", "exposed_ns"):
        for s in ("_b", "_a"):
            merged[c + s] = merged[c + s].fillna(0).astype("int64")
    merged["depth"] = merged["depth_b"].fillna(merged["depth_a"]).astype("int64")
    merged["delta"] = merged["exposed_ns_a"] - merged["exposed_ns_b"]
    merged = merged[merged["delta"] != 0]
    merged["abs"] = merged["delta"].abs()
    merged = merged.sort_values(["abs", "depth", "rank", "path"], ascending=[False, True, True, True],
                                kind="stable").head(max(int(top), 0))
    return [Mover(int(r.rank), str(r.path), int(r.depth), int(r.exposed_ns_b), int(r.exposed_ns_a),
                  int(r.comm_ns_b), int(r.comm_ns_a)) for r in merged.itertuples(index=False)]


def step_spans(trace: Trace, regions: list[str] | tuple[str, ...] = ()) -> dict[tuple[int, str], float | None]:
    """(rank, scope) -> mean GPU step time: per profiler step, last op end - first op start of the
    ops launched in that step (and, for a region, in the region); mean over steps with ops."""
    from .trace.links import launch_points, launched_in_region, steps_of

    ops = trace.gpu_ops
    out: dict[tuple[int, str], float | None] = {}
    if not len(ops):
        return out
    launch = launch_points(trace)
    codes = np.asarray(steps_of(trace, launch).codes, dtype=np.int64)
    ranks = ops["rank"].to_numpy().astype(np.int64)
    starts, ends = ops["start"].to_numpy(np.int64), ops["end"].to_numpy(np.int64)
    scopes = [(WHOLE_TRACE, np.ones(len(ops), dtype=bool))]
    scopes += [(regex, launched_in_region(trace, regex, launch)) for regex in regions]
    for scope, mask in scopes:
        keep = mask & (codes >= 0)
        for rank in np.unique(ranks):
            mine = keep & (ranks == rank)
            if not mine.any():
                out[(int(rank), scope)] = None
                continue
            c = codes[mine]
            lo = np.full(codes.max() + 1, np.iinfo(np.int64).max)
            hi = np.full(codes.max() + 1, np.iinfo(np.int64).min)
            np.minimum.at(lo, c, starts[mine])
            np.maximum.at(hi, c, ends[mine])
            used = np.unique(c)
            out[(int(rank), scope)] = float(np.mean(hi[used] - lo[used]))
    return out


def _unmatched(findings: list[Finding], others: list[Finding]) -> list[Finding]:
    """The findings with no counterpart of the same identity among `others` (each used once)."""
    left = Counter(finding_identity(f) for f in others)
    out = []
    for f in findings:
        key = finding_identity(f)
        if left[key]:
            left[key] -= 1
        else:
            out.append(f)
    return out


def finding_identity(f: Finding) -> tuple[int, str, str, str, str]:
    return f.rank, f.rule, f.buffer, f.first.name, f.second.name


def _per_step(rows: list, rank: int, scope: str | None) -> tuple[int, float | None]:
    """(steps, mean exposed per step) from analyze's step rows of one rank (and region)."""
    mine = [r for r in rows if r.rank == rank and (scope is None or r.region == scope)]
    if not mine:
        return 0, None
    return len(mine), sum(r.exposed_comm_ns for r in mine) / len(mine)


def _sides(analysis: Analysis, spans: dict) -> dict[tuple[int, str], Side]:
    compute = {r.rank: r.compute_ns for r in analysis.ranks}
    out = {}
    for r in analysis.ranks:
        steps, per_step = _per_step(analysis.steps, r.rank, None)
        out[(r.rank, WHOLE_TRACE)] = Side(r.comm_ns, r.overlap_ns, r.overlap_pct, r.exposed_comm_ns, r.compute_ns,
                                          steps, per_step, spans.get((r.rank, WHOLE_TRACE)))
    for r in analysis.regions:
        steps, per_step = _per_step(analysis.region_steps, r.rank, r.region)
        out[(r.rank, r.region)] = Side(r.comm_ns, r.overlap_ns, r.overlap_pct, r.exposed_comm_ns,
                                       compute.get(r.rank, 0), steps, per_step, spans.get((r.rank, r.region)))
    return out


def pooled_overlap(rows: list[DiffRow], side: str) -> float | None:
    """Overlap of a scope pooled over ranks, on one side ("before" / "after"): hidden over all comm."""
    sides = [getattr(r, side) for r in rows if getattr(r, side) is not None]
    return percent(sum(s.overlap_ns for s in sides), sum(s.comm_ns for s in sides))
