"""Markdown for CI job summaries ($GITHUB_STEP_SUMMARY) and, through rich, for the terminal.

GitHub renders HTML inside Markdown, so with `for_html` every value is HTML-escaped as well as
kept out of table syntax (pipes, newlines).
"""

from __future__ import annotations

import html

from ..gate import Check, GateResult
from ..history import Trend
from .format import duration, pct, points


def cell(value: object, for_html: bool = True) -> str:
    s = " ".join(str(value).split())
    s = html.escape(s, quote=False) if for_html else s
    return s.replace("|", "\\|")


def gate_markdown(result: GateResult, for_html: bool = True) -> str:
    unchecked = sum(not c.checked for c in result.checks)
    if not result.passed:
        verdict = f"❌ FAILED ({len(result.failures)} of {len(result.checks)} checks)"
    elif unchecked:
        verdict = f"⚠️ passed, {unchecked} check(s) not checked (allowed)"
    else:
        verdict = "✅ passed"
    lines = [f"## overlapscope gate: {verdict}", "",
             "| result | rank | check | measured |", "|---|---|---|---|"]
    for c in result.checks:
        rank = "run" if c.rank is None else str(c.rank)
        lines.append(f"| {_outcome(c)} | {rank} | {cell(c.name, for_html)} | "
                     f"{cell(c.detail, for_html)} |")
    if result.notes:
        lines += ["", "Not checked by the race checker:", ""] + [f"- {cell(n, for_html)}" for n in result.notes]
    return "\n".join(lines) + "\n"


def trend_markdown(trend: Trend, for_html: bool = True) -> str:
    if not trend.points:
        return "The history database holds no run yet.\n"
    lines = []
    for scope in trend.scopes():
        lines += [f"### {cell(scope, for_html)}", "",
                  "| run | recorded | commit | command | overlap, all ranks | change | worst rank | comm exposed |",
                  "|---|---|---|---|---|---|---|---|"]
        previous = None
        for p in trend.of(scope):
            pooled = p.pooled_pct
            change = "" if previous is None or pooled is None else points(pooled - previous)
            recorded = p.recorded_at[:16].replace("T", " ")  # to the minute: the table stays narrow
            lines.append(f"| #{p.run_id} | {cell(recorded, for_html)} | {cell((p.git_commit or '-')[:8], for_html)} "
                         f"| {cell(p.command, for_html)} | {pct(pooled)} | {change} | {pct(p.worst_rank_pct)} "
                         f"| {duration(p.exposed_comm_ns)} |")
            previous = pooled if pooled is not None else previous
        lines.append("")
    return "\n".join(lines)


def print_gate(result: GateResult) -> None:
    """The gate in a CI log: plain Markdown, not a rich table (CI logs are no terminals, and lines
    there must not wrap)."""
    print(gate_markdown(result, for_html=False), end="")


def print_trend(trend: Trend) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(trend_markdown(trend, for_html=False)))


def _outcome(check: Check) -> str:
    """pass / FAIL, and "not checked" for a check that could not be evaluated: never "pass"."""
    if not check.checked:
        return "⚠️ not checked" if check.passed else "❌ FAIL (not checked)"
    return "✅ pass" if check.passed else "❌ FAIL"
