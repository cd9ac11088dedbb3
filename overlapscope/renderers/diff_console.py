"""Rich tables for `overlapscope diff`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..diff import Diff, DiffRow, GroupChange, Side
from ..races.findings import Finding
from .console import make_console
from .diff_verdict import verdict_sentence
from .format import console_text as escape
from .format import duration, pct, points, signed_duration


def print_diff(diff: Diff, console: Console | None = None) -> None:
    console = console or make_console()
    before, after = diff.labels
    console.print(f"[bold]{escape(before)} → {escape(after)}[/]")
    console.print(escape(verdict_sentence(diff, code=lambda s: s)))
    table = Table(title="Overlap before → after, per rank and scope")
    for col in ("rank", "scope", "overlap before", "overlap after", "change", "exposed before", "exposed after",
                "change "):
        table.add_column(col, justify="left" if col == "scope" else "right", overflow="fold")
    for row in diff.rows:
        table.add_row(str(row.rank), escape(row.scope), _pct(row.before), _pct(row.after), _delta_pct(row),
                      _exposed(row.before), _exposed(row.after), _delta_exposed(row))
    console.print(table)
    times = Table(title="Time per rank and scope: change after - before; GPU step time before → after")
    for col in ("rank", "scope", "comm", "compute", "exposed per step", "GPU step time"):
        times.add_column(col, justify="left" if col == "scope" else "right", overflow="fold")
    for row in diff.rows:
        times.add_row(str(row.rank), escape(row.scope), _delta(row, "comm_ns"), _delta(row, "compute_ns"),
                      _delta(row, "exposed_per_step_ns", lower_is_better=True), _step(row))
    console.print(times)
    if diff.movers:
        movers = Table(title="Exposed comm: range paths that moved most (whole trace)")
        for col in ("rank", "range path", "exposed before", "exposed after", "change"):
            movers.add_column(col, justify="left" if col == "range path" else "right", overflow="fold")
        for m in diff.movers:
            colour = "green" if m.delta_ns < 0 else "red"
            movers.add_row(str(m.rank), escape(m.path), duration(m.exposed_before_ns), duration(m.exposed_after_ns),
                           f"[{colour}]{signed_duration(m.delta_ns)}[/]")
        console.print(movers)
    for title, groups, style in (("New race groups", diff.new_groups, "red"),
                                 ("Race groups gone", diff.gone_groups, "green")):
        if groups:
            console.print(_groups_table(title, groups, style))
    for title, findings, style in (("New race findings", diff.new_findings, "red"),
                                   ("Race findings gone", diff.gone_findings, "green")):
        if findings:
            console.print(_findings_table(title, findings, style))
    console.print(f"race groups: {len(diff.new_groups)} new, {len(diff.gone_groups)} gone; "
                  f"race findings: {len(diff.new_findings)} new, {len(diff.gone_findings)} gone, "
                  f"{diff.unchanged_findings} unchanged")


def _pct(side: Side | None) -> str:
    return "(no such rank)" if side is None else pct(side.overlap_pct, "n/a (no comm)")


def _exposed(side: Side | None) -> str:
    return "-" if side is None else duration(side.exposed_comm_ns)


def _delta_pct(row: DiffRow) -> str:
    d = row.overlap_delta
    if d is None:
        return points(d)
    colour = "green" if d > 0 else "red" if d < 0 else "default"
    return f"[{colour}]{points(d)}[/]"


def _delta_exposed(row: DiffRow) -> str:
    d = row.exposed_delta_ns
    if d is None:
        return "n/a"
    colour = "green" if d < 0 else "red" if d > 0 else "default"
    return f"[{colour}]{signed_duration(d)}[/]"


def _delta(row: DiffRow, name: str, lower_is_better: bool = False) -> str:
    d = row.delta(name)
    if d is None:
        return "n/a"
    d = round(d)
    if not lower_is_better:
        return signed_duration(d)
    colour = "green" if d < 0 else "red" if d > 0 else "default"
    return f"[{colour}]{signed_duration(d)}[/]"


def _step(row: DiffRow) -> str:
    def one(side: Side | None) -> str:
        return "-" if side is None or side.step_ns is None else duration(round(side.step_ns))

    return f"{one(row.before)} → {one(row.after)}"


def _groups_table(title: str, groups: list[GroupChange], style: str) -> Table:
    table = Table(title=title, title_style=style)
    for col in ("rule", "kind", "first", "second", "buffers", "occurrences before → after"):
        table.add_column(col, overflow="fold")
    for g in groups:
        table.add_row(escape(g.rule), escape(g.kind), escape(g.first), escape(g.second), escape(g.buffer_family),
                      f"{g.before} → {g.after}")
    return table


def _findings_table(title: str, findings: list[Finding], style: str) -> Table:
    table = Table(title=title, title_style=style)
    for col in ("rank", "rule", "kind", "buffer", "first", "second"):
        table.add_column(col, overflow="fold")
    for f in findings:
        table.add_row(str(f.rank), escape(f.rule), escape(f.kind), escape(f.buffer),
                      escape(f"{f.first.name} (stream {f.first.stream})"),
                      escape(f"{f.second.name} (stream {f.second.stream})"))
    return table
