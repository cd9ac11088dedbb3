"""Rich tables for the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..overlap import Analysis, ScopeRow
from .format import console_text, duration, pct, plain


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
    if analysis.families:
        console.print(_families_table(analysis))
    if analysis.regions:
        console.print(_scope_table("Per region", "region", analysis.regions))
    if analysis.steps:
        console.print(_scope_table("Per profiler step (launches from any thread of the process)", "step",
                                   analysis.steps))
    if analysis.region_steps:
        console.print(_region_steps_table(analysis))
    if analysis.exposed:
        console.print(_exposed_table(analysis))
    if analysis.suspects:
        console.print(_suspects_table(analysis))
    for r in analysis.ranks:
        for what, count in r.dropped_rows.items():
            console.print(f"[yellow]rank {r.rank}: {count:,} {console_text(what)} left out (malformed)[/]")


def _families_table(analysis: Analysis) -> Table:
    table = Table(title="Communication per family (fused: communication inside a compute kernel, counted as neither)")
    for col in ("rank", "family", "class", "kernels", "time"):
        table.add_column(col, justify="left" if col in ("family", "class") else "right")
    for f in analysis.families:
        table.add_row(str(f.rank), console_text(f.family), f.op_class, f"{f.kernels:,}", duration(f.time_ns))
    return table


def _region_steps_table(analysis: Analysis) -> Table:
    table = Table(title="Per profiler step and region")
    for col in ("rank", "step", "region", "comm", "overlap", "exposed comm"):
        table.add_column(col, justify="left" if col in ("step", "region") else "right", overflow="fold")
    for r in analysis.region_steps:
        table.add_row(str(r.rank), console_text(r.step), console_text(r.region), duration(r.comm_ns),
                      pct(r.overlap_pct, "n/a (no comm)"), duration(r.exposed_comm_ns))
    return table


def _exposed_table(analysis: Analysis, most: int = 5) -> Table:
    table = Table(title=f"Where communication stays exposed: the {min(most, len(analysis.exposed))} worst kernels "
                        "(--json lists more), then the worst range paths")
    for col in ("rank", "step", "launched in", "kernel", "stream", "comm", "exposed"):
        table.add_column(col, justify="right" if col in ("rank", "stream", "comm", "exposed") else "left",
                         overflow="fold")
    for e in analysis.exposed[:most]:
        table.add_row(str(e.rank), console_text(e.step or "-"), console_text(e.range_path or "-"),
                      console_text(_short(e.kernel)), str(e.stream), duration(e.comm_ns), duration(e.exposed_ns))
    worst_paths = sorted(analysis.exposed_paths, key=lambda p: -p.exposed_ns)[:most]
    if worst_paths:
        table.add_section()
        for p in worst_paths:
            table.add_row(str(p.rank), "all steps", console_text(p.path), f"{p.instances:,} kernels", "",
                          duration(p.comm_ns), duration(p.exposed_ns))
    return table


def _suspects_table(analysis: Analysis) -> Table:
    table = Table(title="Counted as compute, but the names look like communication: if they are, count them with "
                        "--comm-pattern")
    for col in ("rank", "kernel", "launches", "time", "--comm-pattern"):
        table.add_column(col, justify="right" if col in ("rank", "launches", "time") else "left", overflow="fold")
    for s in analysis.suspects:
        table.add_row(str(s.rank), console_text(_short(s.kernel)), f"{s.kernels:,}", duration(s.time_ns),
                      console_text(repr(s.comm_pattern)))
    return table


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


def _short(name: str, limit: int = 90) -> str:
    return name if len(name) <= limit else name[:limit - 1] + "…"


def print_run_analysis(run: Any, console: Console | None = None) -> None:
    """`analyze`: the overlap tables, then the stragglers and the overlap without their waiting."""
    console = console or make_console()
    print_analysis(run.analysis, console)
    if run.skew is None:
        return
    for line in skew_lines(run.skew):
        console.print(line, markup=False, highlight=False)
    if len(run.skew.waiting):
        console.print("Overlap with that waiting excluded:")
        print_analysis(run.skew.excluding_wait, console)


def skew_lines(skew: Any, most: int = 10) -> list[str]:
    """A few lines for the terminal: the counts and the longest waits."""
    basis = getattr(skew, "basis", "")
    lines = [f"skew: {skew.matched} collectives matched across ranks ({skew.unmatched} on one rank only, "
             f"{skew.inconsistent} inconsistent){f', matched by {basis}' if basis else ''}; {len(skew.waiting)} "
             f"kernels waited more than {skew.threshold_ns / 1e3:g} µs for a late peer"]
    if getattr(skew, "note", ""):
        lines.append(f"  {plain(skew.note)}")
    for row in skew.waiting.head(most).itertuples():
        group = plain(row.process_group) or "-"
        group = group if group.startswith("stream ") else f"process group {group}"
        lines.append(f"  rank {row.rank}: {plain(row.collective)} #{row.seq} ({group}) waited "
                     f"{duration(row.wait)} of {duration(row.end - row.start)} for rank {row.late_rank}")
    if len(skew.waiting) > most:
        lines.append(f"  ... and {len(skew.waiting) - most} more (--json lists them all)")
    return lines


def run_lines(outcome: Any) -> list[str]:
    """`run`: what ran where, step time and numerics, what was written."""
    m = outcome.manifest
    times = [t for rank in m["step_times_ms"] for t in rank]
    checks = [c for rank in m["numerics"] for c in rank]
    failed = sum(c["ok"] is False for c in checks)
    unchecked = sum(c["ok"] is None for c in checks)
    numerics = (f"numerics failed in {failed} of {len(checks)} rank-steps (baseline: {m['baseline']})"
                if unchecked < len(checks) else "numerics not checked (the workload has no check)")
    region = m["overlap_region"] or "none declared"
    return [f"{m['model']} / {m['variant']}: {m['world_size']} ranks on {m['gpu_name'] or m['device']}, "
            f"{len(m['step_times_ms'][0])} profiled steps, profiler {m['profiler']}",
            f"step time mean {sum(times) / len(times):.3f} ms; {numerics}",
            f"wrote {outcome.out_dir} (overlap region: {region})"]


def print_run(result: Any, console: Console | None = None) -> None:
    """`run`: what ran, then the overlap of the model's region."""
    console = console or make_console()
    for line in run_lines(result.outcome):
        console.print(plain(line), markup=False, highlight=False)
    if result.analysis is not None:
        print_analysis(result.analysis, console)


def print_report_written(report: Any, console: Console | None = None) -> None:
    (console or make_console()).print(f"report written to {console_text(report.path)}")


def print_ranges(table: Any, console: Console | None = None) -> None:
    """`ranges`: every host range name with what it launched, and the regex that selects it."""
    from ..ranges import suggested_regex

    console = console or make_console()
    out = Table(title="Host ranges (what --region matches), those that launch communication first")
    for col in ("name", "source", "ranges", "ranks", "depth", "comm kernels", "comm", "--region"):
        out.add_column(col, justify="right" if col in ("ranges", "ranks", "comm kernels", "comm") else "left",
                       overflow="fold")
    for r in table.ranges:
        depth = str(r.min_depth) if r.min_depth == r.max_depth else f"{r.min_depth}-{r.max_depth}"
        out.add_row(console_text(_short(r.name, 60)), r.source, f"{r.count:,}", str(r.ranks), depth, f"{r.comm_ops:,}",
                    duration(r.comm_ns), console_text(_short(suggested_regex(r.name), 60)))
    console.print(out)


def print_exported(result: Any, console: Console | None = None) -> None:
    for f in result.files:
        (console or make_console()).print(f"wrote {console_text(f)}", highlight=False)
