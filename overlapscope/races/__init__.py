"""The race checker: happens-before from the trace, who touched which memory, findings with a fix.

    from overlapscope import load
    from overlapscope.races import check_races
    report = check_races(load(["run/"]))
    for f in report.findings: print(f.rule, f.kind, f.hint)

See docs/races.md for the definitions as implemented.
"""

from __future__ import annotations

from .check import check_races
from .findings import Access, Finding, RaceReport

__all__ = ["check_races", "RaceReport", "Finding", "Access"]
