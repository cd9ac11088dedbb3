"""The race report for the terminal: one panel per finding, then what could not be checked."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..races.findings import Access, Finding, RaceReport
from .console import fmt_ns

_RULE_TITLE = {
    "cross-stream": "unsynchronised cross-stream access",
    "host-consumer": "host/NIC access not ordered with the GPU",
    "wrong-join": "side stream joined into the wrong stream",
    "collective-order": "collectives in a different order on different ranks",
}


def print_races(report: RaceReport, console: Console | None = None) -> None:
    console = console or Console()
    if not report.findings and report.unchecked_pairs:
        console.print(f"[yellow]No race found, but {report.unchecked_pairs} conflicting access pair(s) could not "
                      "be checked[/yellow] (their order depends on waits the trace does not resolve; see below).")
    elif not report.findings:
        console.print("[green]No race found.[/green]")
    for i, f in enumerate(report.findings, 1):
        console.print(_panel(i, f))
    if report.findings:
        manifest = sum(f.kind == "manifest" for f in report.findings)
        console.print(f"{len(report.findings)} finding(s): {manifest} manifest (the accesses overlapped in time), "
                      f"{len(report.findings) - manifest} latent.")
    if report.notes:
        console.print(Text("Not checked:", style="bold"))
        for note in report.notes:
            console.print(Text(f"  • {note}", style="dim"))


def _panel(i: int, f: Finding) -> Panel:
    colour = "red" if f.kind == "manifest" else "yellow"
    title = f"[bold {colour}]#{i} {f.kind}[/] {_RULE_TITLE.get(f.rule, f.rule)} · rank {f.rank}"
    if f.step:
        title += f" · {f.step}"
    table = Table(show_header=True, box=None, pad_edge=False)
    for col in ("", "op", "stream", "start", "duration", "region"):
        table.add_column(col, overflow="fold")
    start0 = min(f.first.start_ns, f.second.start_ns)
    for label, a in (("first", f.first), ("second", f.second)):
        table.add_row(label, a.name, _stream(a), f"+{fmt_ns(a.start_ns - start0)}", fmt_ns(a.end_ns - a.start_ns),
                      a.region or "-")
    body = Group(Text.assemble(("buffer ", "bold"), f.buffer), table, Text.assemble(("fix ", "bold green"), f.hint))
    return Panel(body, title=title, title_align="left", border_style=colour)


def _stream(a: Access) -> str:
    return "host" if a.stream < 0 else str(a.stream)
