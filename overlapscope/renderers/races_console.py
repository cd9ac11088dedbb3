"""The race report for the terminal: the verdict, one panel per finding group (a root cause with its
occurrences), what each rank let the checker check, and the notes. Every string from a trace is
shown as plain text, never as Rich markup."""

from __future__ import annotations

import re

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..races.findings import Access, FindingGroup, RaceReport
from .console import make_console
from .format import duration

_RULE_TITLE = {
    "cross-stream": "unsynchronised cross-stream access",
    "host-consumer": "host/NIC access not ordered with the GPU",
    "wrong-join": "side stream joined into the wrong stream",
    "collective-order": "collectives in a different order on different ranks",
}
_TIMING = {"overlapped": "the two overlapped in time", "inverted": "the one issued second ran entirely first",
           "in order": "ran in issue order without overlapping", "diverged": "the ranks' orders differ"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _plain(s: object) -> str:
    """Trace-derived text without terminal control characters (Text() already keeps markup literal)."""
    return _CONTROL.sub("?", str(s))


def print_races(report: RaceReport, console: Console | None = None) -> None:
    console = console or make_console()
    verdict = report.verdict
    if verdict == "not checked":
        console.print(Text.assemble(("Not checked: ", "bold yellow"), _plain(report.reason)))
    elif verdict == "none" and report.unchecked_pairs:
        console.print(Text(f"No race found, but {report.unchecked_pairs} conflicting access pair(s) could not be "
                           "checked (their order depends on waits the trace does not resolve; see below).",
                           style="yellow"))
    elif verdict == "none":
        console.print(Text("No race found.", style="green"), Text(f"({_plain(report.reason)})", style="dim"))
    groups = report.groups
    for g in groups:
        console.print(_panel(g))
    if report.findings:
        manifest = sum(f.kind == "manifest" for f in report.findings)
        console.print(f"{len(report.findings)} finding(s) in {len(groups)} group(s): {manifest} manifest (the "
                      f"accesses overlapped in time, or ran against issue order: the race bit), "
                      f"{len(report.findings) - manifest} latent (in issue order without overlapping).")
    if report.coverage:
        console.print(Text("Checked:", style="bold"))
        for c in report.coverage:
            line = (f"  rank {c.rank}: {c.accesses_known} memory access(es) known, {c.pairs_checked} conflicting "
                    f"pair(s) checked, {c.pairs_unchecked} left unchecked, {c.collectives} collective(s)")
            console.print(Text(line + (f"; {_plain(c.reason)}" if c.reason else ""), style="dim"))
    if report.notes:
        console.print(Text("Notes:", style="bold"))
        for note in report.notes:
            console.print(Text(f"  • {_plain(note)}", style="dim"))


def _span(values: list[int]) -> str:
    """1, 2, 3, 5 -> "1-3, 5"."""
    out, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ", ".join(out)


def _steps(steps: tuple[str, ...]) -> str:
    numbers = [re.search(r"(\d+)$", s) for s in steps]
    if steps and all(numbers):
        return ("step " if len(steps) == 1 else "steps ") + _span(sorted(int(m.group(1)) for m in numbers))
    return ", ".join(steps)


def _panel(g: FindingGroup) -> Panel:
    colour = "red" if g.kind == "manifest" else "yellow"
    title = Text.assemble((f"#{g.id} {g.kind}", f"bold {colour}"),
                          f" {_RULE_TITLE.get(g.rule, g.rule)} · {g.count} occurrence{'s' if g.count != 1 else ''}"
                          f" ({g.manifest} manifest) · rank{'s' if len(g.ranks) != 1 else ''} "
                          f"{', '.join(map(str, g.ranks))}")
    if g.steps:
        title.append(f" · {_plain(_steps(g.steps))}")
    w = g.worst
    table = Table(show_header=True, box=None, pad_edge=False)
    for col in ("", "op", "stream", "start", "duration", "region"):
        table.add_column(col, overflow="fold")
    start0 = min(w.first.start_ns, w.second.start_ns)
    for label, a in (("first", w.first), ("second", w.second)):
        table.add_row(label, Text(_plain(a.name)), _stream(a), f"+{duration(a.start_ns - start0)}",
                      duration(a.end_ns - a.start_ns), Text(_plain(a.region or "-")))
    worst = f"rank {w.rank}" + (f" · {w.step}" if w.step else "")
    if w.timing:
        worst += f" · {w.timing}: {_TIMING.get(w.timing, w.timing)}"
    body = Group(Text.assemble(("buffers ", "bold"), _plain(g.buffer_family)),
                 Text.assemble(("worst instance ", "bold"), _plain(worst)),
                 table,
                 Text.assemble(("fix ", "bold green"), _plain(g.hint)))
    return Panel(body, title=title, title_align="left", border_style=colour)


def _stream(a: Access) -> str:
    return "host" if a.stream < 0 else str(a.stream)
