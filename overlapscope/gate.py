"""The CI gate: thresholds on a run's overlap and race findings, each checked on every rank.

It fails closed: a rank with no GPU ops, a region no host range matches, or a scope with no
communication (overlap 0/0, not applicable) is a failed check with a message saying so, never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import Floor, GateSettings
from .errors import BadInput
from .overlap import Analysis, RankRow, ScopeRow, analyze
from .races.findings import Finding, RankCoverage, group_findings
from .trace.model import Trace
from .trace.names import compile_regex


@dataclass(frozen=True)
class Check:
    rank: int | None  # None: a check on the run as a whole
    name: str  # e.g. "overlap >= 80 % in region /tbo/"
    passed: bool
    detail: str  # what was measured, or why the check could not pass
    checked: bool = True  # False: the check could not be evaluated (failed, or let through by allow_unchecked)


@dataclass
class GateResult:
    checks: list[Check]
    analysis: Analysis
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the race checker could not check

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


def gate_settings(configured: GateSettings, min_overlap: float | None = None, regions: list[str] | None = None,
                  max_races: int | None = None, allow_unchecked: bool = False) -> GateSettings:
    """Given thresholds win over the configuration: min_overlap replaces the configured floors (one
    floor per region, each gated; the whole trace when no region is given), max_races the configured
    race limit."""
    regions = list(regions or [])
    if regions and min_overlap is None:
        raise BadInput("regions", "a region needs an overlap floor to be checked against (min_overlap)")
    if min_overlap is not None and not 0 <= min_overlap <= 100:
        raise BadInput("min_overlap", f"must be a percentage from 0 to 100, not {min_overlap:g}")
    if max_races is not None and max_races < 0:
        raise BadInput("max_races", f"must be 0 or more, not {max_races}")
    if min_overlap is not None:
        floors = [Floor(region=r, min_overlap=min_overlap) for r in regions or [None]]
    else:
        floors = list(configured.floors)
    settings = GateSettings(floors=floors, max_races=configured.max_races if max_races is None else max_races,
                            allow_unchecked=allow_unchecked or configured.allow_unchecked)
    if settings.is_empty():
        raise BadInput("gate", "nothing to check: give --min-overlap and/or --max-races, or a "
                               "[tool.overlapscope.gate] table (docs/gate.md)")
    for floor in settings.floors:
        if floor.region is not None:
            compile_regex(floor.region, "regions")
    return settings


def evaluate_gate(trace: Trace, settings: GateSettings) -> GateResult:
    """Every check of `settings` on every rank of the run (runs the race checker when races are limited)."""
    regions = list(dict.fromkeys(f.region for f in settings.floors if f.region is not None))
    analysis = analyze(trace, regions)
    result = GateResult(checks=[], analysis=analysis)
    if settings.max_races is not None:
        from .races import check_races

        report = check_races(trace)
        result.findings, result.notes = report.findings, list(report.notes)
        coverage = {c.rank: c for c in report.coverage}
    ops_per_rank = trace.gpu_ops["rank"].value_counts().to_dict()
    if not trace.ranks:
        result.checks.append(Check(None, "trace has ranks", False, "no rank in the trace: nothing to check"))
    for info in trace.ranks:
        if not ops_per_rank.get(info.rank):
            result.checks.append(Check(info.rank, "rank has GPU ops", False,
                                       "no GPU ops on this rank: nothing to measure (failing closed)"))
            continue
        for floor in settings.floors:
            result.checks += _floor_checks(info.rank, floor, analysis)
        if settings.max_races is not None:
            result.checks.append(_race_check(info.rank, settings, result.findings, coverage.get(info.rank)))
    return result


def _floor_checks(rank: int, floor: Floor, analysis: Analysis) -> list[Check]:
    scope = "the whole trace" if floor.region is None else f"region /{floor.region}/"
    row = _row(rank, floor.region, analysis)
    names = []
    if floor.min_overlap is not None:
        names.append((f"overlap >= {floor.min_overlap:g} % in {scope}", "overlap"))
    if floor.max_exposed_comm_us is not None:
        names.append((f"exposed comm <= {floor.max_exposed_comm_us:g} us in {scope}", "exposed"))
    if isinstance(row, ScopeRow) and row.ranges == 0:
        why = f"no host range matches /{floor.region}/ on this rank (failing closed)"
        return [Check(rank, name, False, why) for name, _ in names]
    if row.comm_ns == 0:
        why = f"no communication in {scope}: overlap is not applicable (0/0), failing closed"
        return [Check(rank, name, False, why) for name, _ in names]
    checks = []
    for name, what in names:
        if what == "overlap":
            pct = row.overlap_pct
            checks.append(Check(rank, name, pct >= floor.min_overlap,
                                f"{pct:.2f} % of {row.comm_ns / 1e3:,.1f} us of comm is hidden"))
        else:
            exposed_us = row.exposed_comm_ns / 1e3
            checks.append(Check(rank, name, exposed_us <= floor.max_exposed_comm_us,
                                f"{exposed_us:,.3f} us of comm is exposed"))
    return checks


def _row(rank: int, region: str | None, analysis: Analysis) -> RankRow | ScopeRow:
    if region is None:
        return next(r for r in analysis.ranks if r.rank == rank)
    return next(r for r in analysis.regions if r.rank == rank and r.region == region)


def _race_check(rank: int, settings: GateSettings, findings: list[Finding], coverage: RankCoverage | None) -> Check:
    """Race findings against the limit; a rank whose accesses could not be checked (no Execution
    Trace or access marks, or pairs across waits the trace does not resolve) fails closed unless
    allow_unchecked, and then reads "not checked", never "pass"."""
    name = f"race findings <= {settings.max_races}"
    mine = [f for f in findings if f.rank == rank]
    if len(mine) > settings.max_races:
        groups = group_findings(mine)  # one root cause, one line
        detail = f"{len(mine)} race finding(s) in {len(groups)} group(s): " + "; ".join(
            f"{g.rule} ({g.kind}) ×{len(g.occurrences)} on {g.buffer_family}" for g in groups[:5])
        return Check(rank, name, False, detail + (" ..." if len(groups) > 5 else ""))
    unchecked = _unchecked_reason(coverage)
    if unchecked:
        how = ("capture with the torch profiler's Execution Trace (overlapscope run does), or mark buffers with "
               "overlapscope.instrument.accesses; an Nsight Systems capture with --cuda-event-trace=true resolves waits")
        if settings.allow_unchecked:
            return Check(rank, name, True, f"not checked (allowed): {unchecked}", checked=False)
        return Check(rank, name, False, f"not checked, failing closed: {unchecked}; {how} "
                                        "(or pass --allow-unchecked)", checked=False)
    return Check(rank, name, True, f"{len(mine)} race finding(s); {coverage.pairs_checked} access pair(s) checked")


def _unchecked_reason(coverage: RankCoverage | None) -> str:
    if coverage is None or not coverage.accesses_known:
        return "no memory access of this rank is known"
    if coverage.pairs_unchecked:
        return (f"{coverage.pairs_unchecked} conflicting access pair(s) lie across waits the trace does not resolve, "
                "so their order is unknown")
    return ""
