"""The race checker: happens-before from the trace, who touched which memory, findings with a fix.

    from overlapscope import load
    from overlapscope.races import check_races
    report = check_races(load(["run/"]))
    print(report.verdict, report.reason)           # "races" | "none" | "not checked"
    for g in report.groups: print(g.rule, g.kind, g.count, g.ranks, g.hint)
    for f in report.findings: print(f.rule, f.kind, f.timing, f.rank, f.step)  # every occurrence

See docs/races.md for the definitions as implemented.
"""

from __future__ import annotations

from .check import check_races
from .findings import Access, Finding, FindingGroup, RaceReport, RankCoverage, buffer_family

__all__ = ["check_races", "RaceReport", "Finding", "FindingGroup", "RankCoverage", "Access", "buffer_family"]
