"""The `overlapscope` command: each subcommand parses, calls one public function, renders.

Heavy modules (pandas, plotly, torch) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import BadInput

app = typer.Typer(
    help="Measure and verify compute/communication overlap in distributed LLM inference traces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_BAD_INPUT = 2


@app.callback()
def _root() -> None:
    """Measure and verify compute/communication overlap in distributed LLM inference traces."""

PathsArg = Annotated[list[Path], typer.Argument(help="Trace files (Kineto .json/.json.gz, nsys .sqlite/.nsys-rep) or run directories.", show_default=False)]
RegionOpt = Annotated[Optional[list[str]], typer.Option("--region", help="Regex over host range names (NVTX, record_function); repeatable.")]
CommPatternOpt = Annotated[Optional[list[str]], typer.Option("--comm-pattern", help="Extra regex naming communication kernels; repeatable.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DbOpt = Annotated[Optional[Path], typer.Option("--db", help="SQLite history database: record this run and its numbers (created if missing).")]
CacheDirOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="Cache directory (default: $OVERLAPSCOPE_CACHE or ~/.cache/overlapscope).")]


# the library names its parameters; the command line names the flags users typed
_FLAGS = {"region": "--region", "comm_patterns": "--comm-pattern", "jobs": "--jobs", "executor": "--executor",
          "scheduler": "--scheduler", "memory_budget": "--memory-budget"}


def bad_input(e: BadInput) -> None:
    """Bad input as one line, named by the flag when it came from one."""
    fail(f"{_FLAGS.get(e.source, e.source)}: {e.problem}")


def fail(message: str) -> None:
    """One line on stderr and exit code 2: the contract for bad input."""
    typer.echo(f"overlapscope: error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def load_run(paths: list[Path], comm_patterns: list[str] | None = None, config_file: Path | None = None):
    """Load one run with the project's configured comm patterns, showing progress for big files."""
    from .config import load_config
    from .renderers.progress import loading_progress
    from .pipeline import load

    config = load_config(config_file)
    patterns = [*config.comm_patterns, *(comm_patterns or [])]
    with loading_progress(paths) as on_progress:
        return load(paths, comm_patterns=patterns, on_progress=on_progress)


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
) -> None:
    """How much communication is hidden under compute: per rank, region and profiler step."""
    from .config import load_config
    from .pipeline import ScaleOptions, analyze_run, parse_size
    from .renderers.progress import loading_progress

    try:
        options = ScaleOptions(jobs=jobs, executor=executor, scheduler=scheduler, skew=skew,
                               use_cache=not no_cache, cache_dir=cache_dir,
                               memory_budget=None if memory_budget is None else parse_size(memory_budget))
        patterns = [*load_config().comm_patterns, *(comm_pattern or [])]
        with loading_progress(paths) as on_progress:
            run = analyze_run(paths, region or [], patterns, options, on_progress)
    except BadInput as e:
        bad_input(e)
    result = run.analysis
    if json:
        from .renderers.json import dumps

        typer.echo(dumps(run.to_dict()))
    else:
        from .renderers.console import print_analysis

        print_analysis(result)
        if run.skew is not None:
            for line in run.skew.summary():
                typer.echo(line)
            if len(run.skew.waiting):
                typer.echo("Overlap with that waiting excluded:")
                print_analysis(run.skew.excluding_wait)
    if problem := result.nothing_measured():
        fail(f"{', '.join(map(str, paths))}: {problem}")
    if db is not None:
        from .history import record_run

        try:
            record_run(db, run.facts, result, command="analyze")
        except BadInput as e:
            bad_input(e)


@app.command()
def run(
    model: Annotated[str, typer.Argument(help="deepseek_v4_tbo, deepseek_v32_nsa_cp or staging_transfer.", show_default=False)],
    variant: Annotated[Optional[str], typer.Option(help="Variant of the model (default: its baseline).")] = None,
    world_size: Annotated[int, typer.Option("--world-size", help="Ranks to spawn on this host.")] = 2,
    profiler: Annotated[str, typer.Option(help="torch | nsys | none.")] = "torch",
    device: Annotated[str, typer.Option(help="cuda | cpu (cpu: gloo, small sizes, streams are no-ops).")] = "cuda",
    steps: Annotated[int, typer.Option(help="Profiled steps.")] = 6,
    warmup: Annotated[int, typer.Option(help="Unprofiled steps first, so every code path is loaded.")] = 3,
    out: Annotated[Optional[Path], typer.Option(help="Output directory (default: out/MODEL/VARIANT).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE model size override; repeatable.")] = None,
) -> None:
    """Run a reference model on local ranks under a profiler, write its traces and run.json, analyse them."""
    from .capture import RunFailed, RunRequest, run_model

    request = RunRequest(model, variant, world_size, profiler, device, steps, warmup, out, list(set_ or []))
    command = ["overlapscope", "run", model, "--world-size", str(world_size), "--profiler", profiler,
               "--device", device, "--steps", str(steps), "--warmup", str(warmup)]
    command += [*(["--variant", variant] if variant else []), *(["--out", str(out)] if out else []),
                *(arg for item in set_ or [] for arg in ("--set", item))]
    try:
        outcome = run_model(request, command)
    except BadInput as e:
        bad_input(e)
    except RunFailed as e:
        typer.echo(f"overlapscope: run failed: {e}", err=True)
        raise typer.Exit(1) from None
    for line in outcome.summary():
        typer.echo(line)
    if profiler != "none":
        from .overlap import analyze as run_analysis
        from .renderers.console import print_analysis

        try:
            print_analysis(run_analysis(load_run([outcome.out_dir]), [outcome.manifest["overlap_region"]]))
        except BadInput as e:
            bad_input(e)


@app.command()
def report(
    paths: PathsArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write.", show_default=False)],
    region: RegionOpt = None,
    comm_pattern: CommPatternOpt = None,
    db: Annotated[Optional[Path], typer.Option("--db", help="History database to draw the trend from (read only).")] = None,
) -> None:
    """One self-contained HTML page (works offline): summary, timelines, profiler steps, races, run facts."""
    from .history import read_trend
    from .renderers.html import write_html
    from .report import build_report

    if not output.parent.is_dir():
        fail(f"{output}: its directory does not exist")
    try:
        trend = read_trend(db) if db is not None else None
        page = build_report(load_run(paths, comm_pattern), region or [], trend=trend)
        write_html(page, output)
    except BadInput as e:
        bad_input(e)
    except OSError as e:
        fail(f"{output}: cannot write: {e.strerror}")
    if problem := page.analysis.nothing_measured():
        typer.echo(f"overlapscope: warning: {problem}", err=True)
    typer.echo(f"report written to {output}")


@app.command()
def gate(
    paths: PathsArg,
    min_overlap: Annotated[Optional[float], typer.Option("--min-overlap", help="Floor in percent for the overlap of every rank (in --region, else the whole trace).")] = None,
    region: Annotated[Optional[str], typer.Option("--region", help="Regex over host range names: the scope --min-overlap applies to.")] = None,
    max_races: Annotated[Optional[int], typer.Option("--max-races", help="Race findings allowed per rank (runs the race checker).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file with a [tool.overlapscope.gate] (or [gate]) table.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Write JUnit XML: one test case per rank and check.")] = None,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Write a Markdown summary (e.g. $GITHUB_STEP_SUMMARY).")] = None,
    comm_pattern: CommPatternOpt = None,
    db: DbOpt = None,
) -> None:
    """Check overlap floors and race limits on every rank: exit 0 pass, 1 fail, 2 bad input."""
    from .config import load_config
    from .gate import evaluate_gate, gate_settings
    from .renderers.junit import gate_junit
    from .renderers.markdown import gate_markdown

    try:
        settings = gate_settings(load_config(config).gate, min_overlap, region, max_races)
        trace = load_run(paths, comm_pattern, config)
        result = evaluate_gate(trace, settings)
        if db is not None:
            from .history import record_run

            record_run(db, trace, result.analysis, command="gate", gate=result)
    except BadInput as e:
        bad_input(e)
    for path, render in ((junit, gate_junit), (markdown, gate_markdown)):
        if path is not None:
            try:
                path.write_text(render(result), encoding="utf-8")
            except OSError as e:
                fail(f"{path}: cannot write: {e.strerror}")
    # plain Markdown, not a rich table: CI logs are not terminals, and lines there must not wrap
    typer.echo(gate_markdown(result, for_html=False), nl=False)
    raise typer.Exit(0 if result.passed else 1)


@app.command()
def diff(
    before: Annotated[Path, typer.Argument(help="The run before the change: a trace file or a run directory.", show_default=False)],
    after: Annotated[Path, typer.Argument(help="The run after the change.", show_default=False)],
    region: RegionOpt = None,
    comm_pattern: CommPatternOpt = None,
    json: JsonOpt = False,
) -> None:
    """Before/after: overlap and exposed comm per rank and region, new and gone race findings."""
    from .diff import diff_runs

    try:
        result = diff_runs(load_run([before], comm_pattern), load_run([after], comm_pattern), region or [])
    except BadInput as e:
        bad_input(e)
    if json:
        from .renderers.json import dumps

        typer.echo(dumps(result.to_dict()))
    else:
        from .renderers.diff_console import print_diff

        print_diff(result)


@app.command()
def history(
    db: Annotated[Path, typer.Option("--db", help="The history database (written by analyze --db / gate --db).", show_default=False)],
    last: Annotated[int, typer.Option("--last", min=1, help="How many of the latest runs to show.")] = 20,
    json: JsonOpt = False,
) -> None:
    """The overlap trend per region over the recorded runs."""
    from .history import read_trend

    try:
        trend = read_trend(db, last=last)
    except BadInput as e:
        bad_input(e)
    if json:
        from .renderers.json import dumps

        typer.echo(dumps(trend.to_dict()))
    else:
        from rich.console import Console
        from rich.markdown import Markdown

        from .renderers.markdown import trend_markdown

        Console().print(Markdown(trend_markdown(trend, for_html=False)))


@app.command()
def races(paths: PathsArg, json: JsonOpt = False) -> None:
    """Stream races, host/NIC races, wrong joins, collective order: exit 0 none, 1 findings, 2 bad input."""
    from .races import check_races

    try:
        report = check_races(load_run(paths))
    except BadInput as e:
        bad_input(e)
    if json:
        from .renderers.json import dumps

        typer.echo(dumps({"findings": [f.to_dict() for f in report.findings]}))
        for note in report.notes:  # what could not be checked, kept out of the JSON contract
            typer.echo(f"overlapscope: note: {note}", err=True)
    else:
        from .renderers.races_console import print_races

        print_races(report)
    raise typer.Exit(1 if report.findings else 0)


cache_app = typer.Typer(help="The columnar cache of read trace files: show or clear it.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("show")
def cache_show(cache_dir: CacheDirOpt = None) -> None:
    """Where the cache is, how many entries it holds and how much space they take."""
    from .cache import cache_available, cache_stats, default_dir

    stats = cache_stats(cache_dir or default_dir())
    typer.echo(f"{stats.directory}: {stats.entries} entries, {stats.bytes / 2**20:,.1f} MiB "
               f"({stats.stale} stale from other versions, {stats.incomplete} incomplete writes)")
    if not cache_available():
        typer.echo("pyarrow is not installed, so the cache is off: pip install 'overlapscope[scale]'")


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDirOpt = None) -> None:
    """Delete every entry of the cache (nothing else in its directory)."""
    from .cache import clear_cache, default_dir

    removed = clear_cache(cache_dir or default_dir())
    typer.echo(f"{removed.directory}: removed {removed.entries + removed.stale + removed.incomplete} entries, "
               f"{removed.bytes / 2**20:,.1f} MiB")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
