"""The `overlapscope` command: each subcommand parses, calls one public function, renders.

Heavy modules (pandas, plotly, torch) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

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


def fail(message: str) -> None:
    """One line on stderr and exit code 2: the contract for bad input."""
    typer.echo(f"overlapscope: error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def load_run(paths: list[Path], comm_patterns: list[str] | None = None, config_file: Path | None = None):
    """Load one run with the project's configured comm patterns, showing progress for big files."""
    from .config import load_config
    from .renderers.progress import loading_progress
    from .trace.load import load

    config = load_config(config_file)
    patterns = [*config.comm_patterns, *(comm_patterns or [])]
    with loading_progress(paths) as on_progress:
        return load(paths, comm_patterns=patterns, on_progress=on_progress)


@app.command()
def analyze(paths: PathsArg, region: RegionOpt = None, comm_pattern: CommPatternOpt = None, json: JsonOpt = False) -> None:
    """How much communication is hidden under compute: per rank, region and profiler step."""
    from .errors import BadInput
    from .overlap import analyze as run_analysis

    try:
        trace = load_run(paths, comm_pattern)
        result = run_analysis(trace, region or [])
    except BadInput as e:
        fail(str(e))
    if json:
        from .renderers.json import dumps

        typer.echo(dumps(result.to_dict()))
    else:
        from .renderers.console import print_analysis

        print_analysis(result)
    if problem := result.nothing_measured():
        fail(f"{', '.join(map(str, paths))}: {problem}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
