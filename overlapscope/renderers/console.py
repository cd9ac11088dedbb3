"""Rich tables for the terminal."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..overlap import Analysis, ScopeRow


def fmt_pct(pct: float | None) -> str:
    return "n/a (no comm)" if pct is None else f"{pct:.1f} %"


def fmt_ns(ns: int) -> str:
    """Durations in the unit that keeps them readable, exact ns below a microsecond."""
    if abs(ns) < 1_000:
        return f"{ns} ns"
    if abs(ns) < 1_000_000:
        return f"{ns / 1e3:.1f} µs"
    if abs(ns) < 1_000_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.3f} s"


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
        table.add_row(str(r.rank), "-" if r.device is None else str(r.device), fmt_ns(r.comm_ns),
                      fmt_ns(r.compute_ns), fmt_ns(r.overlap_ns), fmt_pct(r.overlap_pct),
                      fmt_ns(r.exposed_comm_ns), Path(r.source).name)
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
        pct = "no such range" if r.ranges == 0 else fmt_pct(r.overlap_pct)
        table.add_row(str(r.rank), r.region, str(r.ranges), fmt_ns(r.comm_ns), fmt_ns(r.overlap_ns), pct,
                      fmt_ns(r.exposed_comm_ns))
    return table
