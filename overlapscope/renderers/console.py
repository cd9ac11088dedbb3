"""Rich tables for the terminal."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..overlap import Analysis, ScopeRow
from .format import console_text, duration, pct
from .format import duration as fmt_ns  # noqa: F401  TODO(lead): races_console moves to format


def make_console() -> Console:
    """A terminal's own width; piped output gets room for whole numbers and file names."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def print_analysis(analysis: Analysis, console: Console | None = None) -> None:
    console = console or make_console()
    table = Table(title="Communication hidden under compute, per rank (whole trace)")
    for col in ("rank", "device", "comm", "compute", "overlapped", "overlap", "exposed comm", "file"):
        table.add_column(col, justify="left" if col == "file" else "right", overflow="fold")
    for r in analysis.ranks:
        table.add_row(str(r.rank), "-" if r.device is None else str(r.device), duration(r.comm_ns),
                      duration(r.compute_ns), duration(r.overlap_ns), pct(r.overlap_pct, "n/a (no comm)"),
                      duration(r.exposed_comm_ns), console_text(Path(r.source).name))
    console.print(table)
    if analysis.regions:
        console.print(_scope_table("Per region", "region", analysis.regions))
    if analysis.steps:
        console.print(_scope_table("Per profiler step", "step", analysis.steps))


def _scope_table(title: str, label: str, rows: list[ScopeRow]) -> Table:
    table = Table(title=title)
    for col in ("rank", label, "ranges", "comm", "overlapped", "overlap", "exposed comm"):
        table.add_column(col, justify="left" if col == label else "right", overflow="fold",
                         min_width=len(max((r.region for r in rows), key=len, default="")) if col == label else None)
    for r in rows:
        shown = "no such range" if r.ranges == 0 else pct(r.overlap_pct, "n/a (no comm)")
        table.add_row(str(r.rank), console_text(r.region), str(r.ranges), duration(r.comm_ns), duration(r.overlap_ns),
                      shown, duration(r.exposed_comm_ns))
    return table
