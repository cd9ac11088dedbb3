"""The `overlapscope` command: each subcommand parses its options, calls the function of the same
name in overlapscope.commands, and hands the result to a renderer (`renderers.render`).

Heavy modules (pandas, plotly, torch) are imported inside the commands so `--help` stays fast.
Errors name command-line flags only here: the library names its own parameters.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from .errors import BadInput

app = typer.Typer(
    help="Measure and verify compute/communication overlap in distributed LLM inference traces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts hold [tool.overlapscope.gate] and regexes, not markup
)

EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_CHECKED = 3
T = TypeVar("T")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"overlapscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Measure and verify compute/communication overlap in distributed LLM inference traces."""


PathsArg = Annotated[list[Path], typer.Argument(help="Trace files (Kineto .json/.json.gz, nsys .sqlite/.nsys-rep) or run directories.", show_default=False)]
RegionOpt = Annotated[Optional[list[str]], typer.Option("--region", help="Regex over host range names (NVTX, record_function); repeatable.")]
CommPatternOpt = Annotated[Optional[list[str]], typer.Option("--comm-pattern", help="Extra regex naming communication kernels; repeatable.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DbOpt = Annotated[Optional[Path], typer.Option("--db", help="SQLite history database: record this run and its numbers (created if missing).")]
ExcludeOpt = Annotated[Optional[list[str]], typer.Option("--exclude-kernel", help="Regex of kernels to leave out of every view and total (pacing, sleep, warm-up); repeatable.")]
PresetOpt = Annotated[Optional[list[str]], typer.Option("--preset", help="An engine's regions: sglang-tbo, vllm or atom (docs/presets.md); repeatable.")]
LabelOpt = Annotated[Optional[str], typer.Option("--label", help="How the history names this run (default: run.json's model/variant and profiler).")]
RankOpt = Annotated[Optional[list[str]], typer.Option("--rank", help="FILE=N: the rank of a trace file whose rank cannot be told from it; repeatable.")]
CacheDirOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="Cache directory (default: $OVERLAPSCOPE_CACHE or ~/.cache/overlapscope).")]

# the library names its parameters; the command line names the flags users typed
FLAGS = {"region": "--region", "comm_patterns": "--comm-pattern", "jobs": "--jobs", "executor": "--executor",
         "scheduler": "--scheduler", "memory_budget": "--memory-budget", "min_overlap": "--min-overlap",
         "max_races": "--max-races", "regions": "--region", "model": "MODEL", "variant": "--variant",
         "world_size": "--world-size", "profiler": "--profiler", "device": "--device", "overrides": "--set",
         "last": "--last", "ranks": "--rank", "exclude_kernels": "--exclude-kernel",
         "preset": "--preset"}


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """One line on stderr and exit code 2: the contract for bad input."""
    from .renderers.format import plain

    typer.echo(f"overlapscope: error: {plain(message)}", err=True)
    raise typer.Exit(code)


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """The library call of a command: bad input becomes one line naming the file or the flag, exit 2."""
    try:
        return fn(*args, **kwargs)
    except BadInput as e:
        fail(f"{FLAGS.get(e.source, e.source)}: {e.problem}")
    raise AssertionError("unreachable")  # pragma: no cover


def with_progress(fn: Callable[..., T], paths: list[Path], *args: Any, **kwargs: Any) -> T:
    """`call`, with a progress bar on stderr while big files are read."""
    from .renderers.progress import loading_progress

    with loading_progress(paths) as on_progress:
        return call(fn, paths, *args, on_progress=on_progress, **kwargs)


def warn(lines: list[str] | tuple[str, ...], what: str = "warning") -> None:
    """Lines on stderr, out of the way of --json on stdout."""
    from .renderers.format import plain

    for line in lines:
        typer.echo(f"overlapscope: {what}: {plain(line)}", err=True)


@app.command()
def analyze(
    paths: PathsArg,
    region: RegionOpt = None,
    comm_pattern: CommPatternOpt = None,
    json: JsonOpt = False,
    db: DbOpt = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Files read and analysed at once, each in its own process (default: one per core).", show_default=False)] = None,
    executor: Annotated[str, typer.Option(help="local (this machine's cores) or dask (a running Dask cluster: --scheduler).")] = "local",
    scheduler: Annotated[Optional[str], typer.Option(help="The Dask scheduler's address, e.g. tcp://10.0.0.5:8786.", show_default=False)] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Read every file; neither use nor fill the cache.")] = False,
    cache_dir: CacheDirOpt = None,
    memory_budget: Annotated[Optional[str], typer.Option(envvar="OVERLAPSCOPE_MEMORY_BUDGET", help="Memory for reading on this machine, e.g. 1G: bounds the JSON text decoded per step.", show_default=False)] = None,
    skew: Annotated[bool, typer.Option("--skew", help="Match collectives across ranks: report kernels that waited for a late peer, and overlap without that waiting.")] = False,
    rank: RankOpt = None,
    exclude_kernel: ExcludeOpt = None,
    preset: PresetOpt = None,
    copy_comm: Annotated[bool, typer.Option("--copy-comm", help="Count peer-to-peer copies between GPUs as communication.")] = False,
    top: Annotated[int, typer.Option("--top", min=0, help="Exposed communication kernels listed in --json (worst first).")] = 20,
    label: LabelOpt = None,
) -> None:
    """How much communication is hidden under compute: per rank, region and profiler step, and where it is exposed."""
    from . import commands
    from .renderers import render

    run = with_progress(commands.analyze, paths, region or [], comm_pattern or [], jobs=jobs, executor=executor,
                        scheduler=scheduler, use_cache=not no_cache, cache_dir=cache_dir,
                        memory_budget=memory_budget, skew=skew, ranks=rank or [], exclude_kernels=exclude_kernel or [],
                        copy_comm=copy_comm, presets=preset or [], top=top)
    warn(run.facts.notes, "note")
    warn(run.analysis.warnings())
    render(run, "json" if json else "console")
    if problem := run.analysis.nothing_measured():
        fail(f"{', '.join(map(str, paths))}: {problem}")
    if db is not None:
        from .history import record_run

        call(record_run, db, run.facts, run.analysis, command="analyze", label=label)


@app.command()
def run(
    model: Annotated[str, typer.Argument(help="A reference model (deepseek_v4_tbo, deepseek_v32_nsa_cp, staging_transfer) or your workload as package.module:factory.", show_default=False)],
    variant: Annotated[Optional[str], typer.Option(help="Variant of the model (default: its baseline).")] = None,
    world_size: Annotated[int, typer.Option("--world-size", help="Ranks to spawn on this host.")] = 2,
    profiler: Annotated[str, typer.Option(help="torch | nsys | rocprofv3 | none.")] = "torch",
    device: Annotated[str, typer.Option(help="cuda | cpu (cpu: gloo, small sizes, streams are no-ops).")] = "cuda",
    steps: Annotated[int, typer.Option(help="Profiled steps.")] = 6,
    warmup: Annotated[int, typer.Option(help="Unprofiled steps first, so every code path is loaded.")] = 3,
    out: Annotated[Optional[Path], typer.Option(help="Output directory (default: out/MODEL/VARIANT).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE model size override; repeatable.")] = None,
) -> None:
    """Run a workload on local ranks under a profiler, write its traces and run.json, analyse them."""
    from . import commands
    from .capture import RunFailed, RunRequest
    from .renderers import render

    request = RunRequest(model, variant, world_size, profiler, device, steps, warmup, out, list(set_ or []))
    try:
        result = call(commands.run, request)
    except RunFailed as e:
        fail(f"run failed: {e}", code=EXIT_FINDINGS)
    render(result)


@app.command()
def report(
    paths: PathsArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write.", show_default=False)],
    region: RegionOpt = None,
    comm_pattern: CommPatternOpt = None,
    db: Annotated[Optional[Path], typer.Option("--db", help="History database to draw the trend from (read only).")] = None,
    rank: RankOpt = None,
    exclude_kernel: ExcludeOpt = None,
    preset: PresetOpt = None,
) -> None:
    """One self-contained HTML page (works offline): summary, timelines, profiler steps, races, run facts."""
    from . import commands
    from .renderers import render

    page = with_progress(commands.report, paths, output, region or [], comm_pattern or [], db=db, ranks=rank or [],
                         exclude_kernels=exclude_kernel or [], presets=preset or [])
    if problem := page.analysis.nothing_measured():
        warn([problem])
    render(page)


@app.command()
def gate(
    paths: PathsArg,
    min_overlap: Annotated[Optional[float], typer.Option("--min-overlap", help="Floor in percent for the overlap of every rank, in each --region (else the whole trace).")] = None,
    region: Annotated[Optional[list[str]], typer.Option("--region", help="Regex over host range names: a scope --min-overlap applies to; repeatable, each region is gated.")] = None,
    max_races: Annotated[Optional[int], typer.Option("--max-races", help="Race findings allowed per rank (runs the race checker; fails when it could not check).")] = None,
    allow_unchecked: Annotated[bool, typer.Option("--allow-unchecked", help="Let --max-races pass when memory accesses could not be checked.")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file with a [tool.overlapscope.gate] (or [gate]) table.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Write JUnit XML: one test case per rank and check.")] = None,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY).")] = None,
    comm_pattern: CommPatternOpt = None,
    db: DbOpt = None,
    rank: RankOpt = None,
    exclude_kernel: ExcludeOpt = None,
    preset: PresetOpt = None,
    label: LabelOpt = None,
) -> None:
    """Check overlap floors and race limits on every rank: exit 0 pass, 1 fail, 2 bad input."""
    from . import commands
    from .renderers import render
    from .renderers.junit import gate_junit
    from .renderers.markdown import gate_markdown

    result = with_progress(commands.gate, paths, min_overlap, region or [], max_races, config, comm_pattern or [],
                           allow_unchecked=allow_unchecked, db=db, label=label, ranks=rank or [],
                           exclude_kernels=exclude_kernel or [], presets=preset or [])
    for path, write in ((junit, gate_junit), (markdown, gate_markdown)):
        if path is not None:
            call(commands.write_text, path, write(result))
    render(result)
    raise typer.Exit(0 if result.passed else EXIT_FINDINGS)


@app.command()
def diff(
    before: Annotated[Path, typer.Argument(help="The run before the change: a trace file or a run directory.", show_default=False)],
    after: Annotated[Path, typer.Argument(help="The run after the change.", show_default=False)],
    region: RegionOpt = None,
    comm_pattern: CommPatternOpt = None,
    json: JsonOpt = False,
    exclude_kernel: ExcludeOpt = None,
    preset: PresetOpt = None,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Write a card to paste into a pull request.")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Write a before/after page: each rank's representative step, one above the other.")] = None,
    fail_on_regression: Annotated[Optional[float], typer.Option("--fail-on-regression", help="Exit 1 when the overlap of any rank and scope fell by more than PTS points (or could no longer be measured).", metavar="PTS")] = None,
    fail_on_new_races: Annotated[bool, typer.Option("--fail-on-new-races", help="Exit 1 when a new race group appears (or the races could no longer be checked).")] = False,
    top: Annotated[int, typer.Option("--top", min=0, help="Exposed range paths that moved most, listed.")] = 10,
) -> None:
    """Before/after: overlap, exposed comm and step time per rank and region, the biggest movers, new and gone races."""
    from . import commands
    from .renderers import render
    from .renderers.diff_markdown import render_diff_markdown

    result = call(commands.diff, before, after, region or [], comm_pattern or [], exclude_kernel or [], preset or [],
                  top=top, html=html)
    if markdown is not None:
        call(commands.write_text, markdown, render_diff_markdown(result))
    render(result, "json" if json else "console")
    reasons = result.regressions(fail_on_regression, fail_on_new_races)
    warn(reasons, "regression")
    raise typer.Exit(EXIT_FINDINGS if reasons else 0)


@app.command()
def history(
    db: Annotated[Path, typer.Option("--db", help="The history database (written by analyze --db / gate --db).", show_default=False)],
    last: Annotated[int, typer.Option("--last", min=1, help="How many of the latest runs to show.")] = 20,
    json: JsonOpt = False,
) -> None:
    """The overlap trend per region over the recorded runs."""
    from . import commands
    from .renderers import render

    render(call(commands.history, db, last), "json" if json else "console")


@app.command()
def races(paths: PathsArg, comm_pattern: CommPatternOpt = None, json: JsonOpt = False, rank: RankOpt = None) -> None:
    """Stream races, host/NIC races, wrong joins, collective order: exit 0 none, 1 findings, 2 bad input,
    3 not checked (no memory access could be known)."""
    from . import commands
    from .renderers import render

    report = with_progress(commands.races, paths, comm_pattern or [], ranks=rank or [])
    render(report, "json" if json else "console")
    if json:
        warn([f"not checked: {note}" for note in report.notes])
    verdict = getattr(report, "verdict", "races" if report.findings else "none")
    raise typer.Exit({"races": EXIT_FINDINGS, "none": 0, "not checked": EXIT_NOT_CHECKED}[verdict])


@app.command()
def ranges(
    paths: PathsArg,
    comm_pattern: CommPatternOpt = None,
    cpu_ops: Annotated[bool, typer.Option("--cpu-ops", help="List PyTorch operator ranges (cpu_op) too.")] = False,
    json: JsonOpt = False,
    rank: RankOpt = None,
) -> None:
    """What --region can match: host range names, counts, nesting depth and the communication they launch."""
    from . import commands
    from .renderers import render

    table = with_progress(commands.ranges, paths, comm_pattern or [], include_cpu_ops=cpu_ops, ranks=rank or [])
    render(table, "json" if json else "console")


@app.command()
def export(
    paths: PathsArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="FILE.json (one file, ui.perfetto.dev / chrome://tracing) or a directory (one file per rank).", show_default=False)],
    region: RegionOpt = None,
    comm_pattern: CommPatternOpt = None,
    no_races: Annotated[bool, typer.Option("--no-races", help="Skip the race check (no race arrows).")] = False,
    rank: RankOpt = None,
) -> None:
    """A Chrome/Perfetto trace of the run with comm hidden/exposed, region, step and race tracks."""
    from . import commands
    from .renderers import render

    result = with_progress(commands.export, paths, output, region or [], comm_pattern or [], ranks=rank or [],
                           with_races=not no_races)
    warn(result.caveats)
    render(result)


cache_app = typer.Typer(help="The columnar cache of read trace files: show or clear it.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("show")
def cache_show(cache_dir: CacheDirOpt = None) -> None:
    """Where the cache is, how many entries it holds and how much space they take."""
    from .cache import cache_available, cache_stats, default_dir

    stats = call(cache_stats, cache_dir or default_dir())
    typer.echo(f"{stats.directory}: {stats.entries} entries, {stats.bytes / 2**20:,.1f} MiB "
               f"({stats.stale} stale from other versions, {stats.incomplete} incomplete writes)")
    if not cache_available():
        typer.echo("pyarrow is not installed, so the cache is off: pip install 'overlapscope[scale]'")


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDirOpt = None) -> None:
    """Delete every entry of the cache (nothing else in its directory)."""
    from .cache import clear_cache, default_dir

    removed = call(clear_cache, cache_dir or default_dir())
    typer.echo(f"{removed.directory}: removed {removed.entries + removed.stale + removed.incomplete} entries, "
               f"{removed.bytes / 2**20:,.1f} MiB")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
