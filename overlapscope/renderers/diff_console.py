"""Rich tables for `overlapscope diff`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..diff import Diff, DiffRow, Side
from ..races.findings import Finding
from .format import console_text as escape
from .format import duration, pct, points, signed_duration


def print_diff(diff: Diff, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="Overlap before → after, per rank and scope")
    for col in ("rank", "scope", "overlap before", "overlap after", "change", "exposed before", "exposed after",
                "change "):
        table.add_column(col, justify="left" if col == "scope" else "right", overflow="fold")
    for row in diff.rows:
        table.add_row(str(row.rank), escape(row.scope), _pct(row.before), _pct(row.after), _delta_pct(row),
                      _exposed(row.before), _exposed(row.after), _delta_exposed(row))
    console.print(table)
    for title, findings, style in (("New race findings", diff.new_findings, "red"),
                                   ("Race findings gone", diff.gone_findings, "green")):
        if findings:
            console.print(_findings_table(title, findings, style))
    console.print(f"race findings: {len(diff.new_findings)} new, {len(diff.gone_findings)} gone, "
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


def _findings_table(title: str, findings: list[Finding], style: str) -> Table:
    table = Table(title=title, title_style=style)
    for col in ("rank", "rule", "kind", "buffer", "first", "second"):
        table.add_column(col, overflow="fold")
    for f in findings:
        table.add_row(str(f.rank), escape(f.rule), escape(f.kind), escape(f.buffer),
                      escape(f"{f.first.name} (stream {f.first.stream})"),
                      escape(f"{f.second.name} (stream {f.second.stream})"))
    return table
