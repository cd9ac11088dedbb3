"""Before/after: overlap and exposed communication per rank and scope, and which race findings
appeared or went away.

Ranks are matched by rank number; scopes are the whole trace and each `--region` regex. Race
findings are matched by (rank, rule, buffer, first op name, second op name), counting repeats, so
a finding that only moved in time is neither new nor gone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .overlap import Analysis, analyze
from .races.findings import Finding, RaceReport
from .trace.model import Trace

WHOLE_TRACE = "(whole trace)"


@dataclass(frozen=True)
class Side:
    """One scope on one rank, in one of the two runs (None where that run lacks the rank)."""

    comm_ns: int
    overlap_ns: int
    overlap_pct: float | None
    exposed_comm_ns: int


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

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "scope": self.scope,
                "before": None if self.before is None else asdict(self.before),
                "after": None if self.after is None else asdict(self.after),
                "overlap_delta_pct": self.overlap_delta, "exposed_comm_delta_ns": self.exposed_delta_ns}


@dataclass
class Diff:
    rows: list[DiffRow]
    new_findings: list[Finding] = field(default_factory=list)
    gone_findings: list[Finding] = field(default_factory=list)
    unchanged_findings: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [r.to_dict() for r in self.rows],
                "races": {"new": [f.to_dict() for f in self.new_findings],
                          "gone": [f.to_dict() for f in self.gone_findings],
                          "unchanged": self.unchanged_findings}}


def diff_runs(before: Trace, after: Trace, regions: list[str] | tuple[str, ...] = ()) -> Diff:
    """Compare two runs (for example a model's inline and comm-stream variants)."""
    from .races import check_races

    out = Diff(rows=compare_overlap(analyze(before, regions), analyze(after, regions)))
    out.new_findings, out.gone_findings, out.unchanged_findings = compare_findings(check_races(before),
                                                                                  check_races(after))
    return out


def compare_overlap(before: Analysis, after: Analysis) -> list[DiffRow]:
    b, a = _sides(before), _sides(after)
    keys = sorted(set(b) | set(a), key=lambda k: (k[0], k[1] != WHOLE_TRACE, k[1]))
    return [DiffRow(rank, scope, b.get((rank, scope)), a.get((rank, scope))) for rank, scope in keys]


def compare_findings(before: RaceReport, after: RaceReport) -> tuple[list[Finding], list[Finding], int]:
    """(new, gone, unchanged count): a multiset difference over the findings' identities."""
    new = _unmatched(after.findings, before.findings)
    gone = _unmatched(before.findings, after.findings)
    return new, gone, len(after.findings) - len(new)


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


def _sides(analysis: Analysis) -> dict[tuple[int, str], Side]:
    out = {(r.rank, WHOLE_TRACE): Side(r.comm_ns, r.overlap_ns, r.overlap_pct, r.exposed_comm_ns)
           for r in analysis.ranks}
    out |= {(r.rank, r.region): Side(r.comm_ns, r.overlap_ns, r.overlap_pct, r.exposed_comm_ns)
            for r in analysis.regions}
    return out
