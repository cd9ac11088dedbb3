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
    """Per scope, the recorded runs oldest first. "change" is the pooled overlap's change from the
    previous run with a number; between runs of different profilers it reads "profiler changed"
    (the two measure different things: launch links, clocks, what counts as a kernel), never a
    bare delta. A scope several regexes were recorded as (they matched the same ranges) lists them."""
    if not trend.points:
        return "The history database holds no run yet.\n"
    lines = []
    for scope in trend.scopes():
        others = [r for r in trend.regexes(scope) if r != scope]
        also = f" (also recorded as {', '.join(cell(r, for_html) for r in others)})" if others else ""
        lines += [f"### {cell(scope, for_html)}{also}", "",
                  "| run | label | recorded | commit | command | overlap, all ranks | change | worst rank "
                  "| comm exposed |",
                  "|---|---|---|---|---|---|---|---|---|"]
        previous = None
        for p in trend.of(scope):
            pooled = p.pooled_pct
            if previous is not None and previous.profiler != p.profiler:
                change = cell(f"profiler changed ({previous.profiler or 'unknown'} → {p.profiler or 'unknown'})",
                              for_html)
            elif previous is None or pooled is None or previous.pooled_pct is None:
                change = ""
            else:
                change = points(pooled - previous.pooled_pct)
            recorded = p.recorded_at[:16].replace("T", " ")  # to the minute: the table stays narrow
            lines.append(f"| #{p.run_id} | {cell(p.label or '-', for_html)} | {cell(recorded, for_html)} "
                         f"| {cell((p.git_commit or '-')[:8], for_html)} "
                         f"| {cell(p.command, for_html)} | {pct(pooled)} | {change} | {pct(p.worst_rank_pct)} "
                         f"| {duration(p.exposed_comm_ns)} |")
            if pooled is not None:
                previous = p
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
