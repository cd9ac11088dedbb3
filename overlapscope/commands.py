"""One public function per command of the command line, with the command's name: what
`overlapscope NAME ...` computes, callable from Python with the same arguments.

Each reads the project configuration where the command does, loads the run through the one
pipeline (pipeline.py) and returns a result whose `to_dict()` is the command's JSON. None prints;
cli.py parses options, calls one of these, and hands the result to a renderer.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInput

if TYPE_CHECKING:
    from .diff import Diff
    from .gate import GateResult
    from .history import Trend
    from .pipeline import RunAnalysis
    from .races.findings import RaceReport
    from .ranges import RangeTable
    from .report import Report
    from .trace.load import ProgressFn
    from .trace.model import Trace

Paths = Sequence[str | os.PathLike[str]]


def _patterns(comm_patterns: Sequence[str], config: Path | None = None) -> list[str]:
    """The configured communication patterns, then the ones given."""
    from .config import load_config

    return [*load_config(config).comm_patterns, *comm_patterns]


def _excluded(exclude_kernels: Sequence[str], config: Path | None = None) -> tuple[str, ...]:
    """The configured kernels to leave out, then the ones given (run.json's are added when read)."""
    from .config import load_config

    return tuple(dict.fromkeys([*load_config(config).exclude_kernels, *exclude_kernels]))


def _regions(regions: Sequence[str], presets: Sequence[str]) -> list[str]:
    from .presets import expand_regions

    return expand_regions(list(regions), list(presets)) if presets else list(regions)


def parse_ranks(items: Sequence[str]) -> tuple[tuple[str, int], ...]:
    """FILE=N items (the user's ranks for files whose rank cannot be told) as (FILE, N) pairs."""
    out = []
    for item in items:
        name, sep, number = item.rpartition("=")
        if not sep or not name or not number.strip().isdigit():
            raise BadInput("ranks", f"expected FILE=N (a rank number), not {item!r}")
        out.append((name, int(number)))
    return tuple(out)


def load_run(paths: Paths, comm_patterns: Sequence[str] = (), config: Path | None = None,
             on_progress: ProgressFn | None = None, ranks: Sequence[str] = (), exclude_kernels: Sequence[str] = (),
             copy_comm: bool = False) -> Trace:
    """A run, with the project's configured communication patterns and kernels to leave out."""
    from .pipeline import ScaleOptions, load

    options = ScaleOptions(jobs=1, ranks=parse_ranks(ranks), exclude_kernels=_excluded(exclude_kernels, config),
                           copy_comm=copy_comm)
    return load(paths, _patterns(comm_patterns, config), on_progress, options)


def analyze(paths: Paths, regions: Sequence[str] = (), comm_patterns: Sequence[str] = (), *,
            jobs: int | None = None, executor: str = "local", scheduler: str | None = None,
            use_cache: bool = True, cache_dir: Path | None = None, memory_budget: str | None = None,
            skew: bool = False, ranks: Sequence[str] = (), exclude_kernels: Sequence[str] = (),
            copy_comm: bool = False, presets: Sequence[str] = (), top: int = 20,
            on_progress: ProgressFn | None = None) -> RunAnalysis:
    """Overlap per rank, region and profiler step (and, with skew, the stragglers)."""
    from .pipeline import ScaleOptions, analyze_run, parse_size

    options = ScaleOptions(jobs=jobs, executor=executor, scheduler=scheduler, skew=skew, use_cache=use_cache,
                           cache_dir=cache_dir, ranks=parse_ranks(ranks), copy_comm=copy_comm,
                           exclude_kernels=_excluded(exclude_kernels),
                           memory_budget=None if memory_budget is None else parse_size(memory_budget))
    return analyze_run(paths, _regions(regions, presets), _patterns(comm_patterns), options, on_progress, top)


def races(paths: Paths, comm_patterns: Sequence[str] = (), ranks: Sequence[str] = (),
          on_progress: ProgressFn | None = None) -> RaceReport:
    """Every race the run's traces show, and what could not be checked."""
    from .races import check_races

    return check_races(load_run(paths, comm_patterns, on_progress=on_progress, ranks=ranks))


def report(paths: Paths, output: Path, regions: Sequence[str] = (), comm_patterns: Sequence[str] = (),
           db: Path | None = None, ranks: Sequence[str] = (), exclude_kernels: Sequence[str] = (),
           presets: Sequence[str] = (), on_progress: ProgressFn | None = None) -> Report:
    """Write the HTML report of a run to `output` (never onto one of the run's own files)."""
    from .history import read_trend
    from .renderers.html import write_html
    from .report import build_report

    _refuse_to_overwrite_inputs(output, paths)
    if not output.parent.is_dir():
        raise BadInput(output, "its directory does not exist")
    trend = read_trend(db) if db is not None else None
    trace = load_run(paths, comm_patterns, on_progress=on_progress, ranks=ranks, exclude_kernels=exclude_kernels)
    page = build_report(trace, _regions(regions, presets), trend=trend, excluded=_excluded(exclude_kernels))
    try:
        write_html(page, output)
    except OSError as e:
        raise BadInput(output, f"cannot write: {e.strerror}") from None
    return dataclasses.replace(page, path=output)


def gate(paths: Paths, min_overlap: float | None = None, regions: Sequence[str] = (), max_races: int | None = None,
         config: Path | None = None, comm_patterns: Sequence[str] = (), allow_unchecked: bool = False,
         db: Path | None = None, label: str | None = None, ranks: Sequence[str] = (),
         exclude_kernels: Sequence[str] = (), presets: Sequence[str] = (),
         on_progress: ProgressFn | None = None) -> GateResult:
    """Every threshold of the flags (or the configuration) checked on every rank."""
    from .config import load_config
    from .gate import evaluate_gate, gate_settings

    settings = gate_settings(load_config(config).gate, min_overlap, _regions(regions, presets), max_races,
                             allow_unchecked)
    trace = load_run(paths, comm_patterns, config, on_progress, ranks, exclude_kernels)
    result = evaluate_gate(trace, settings)
    if db is not None:
        from .history import record_run

        record_run(db, trace, result.analysis, command="gate", gate=result, label=label)
    return result


def diff(before: Path, after: Path, regions: Sequence[str] = (), comm_patterns: Sequence[str] = (),
         exclude_kernels: Sequence[str] = (), presets: Sequence[str] = (), top: int = 10,
         html: Path | None = None) -> Diff:
    """Before/after: overlap and exposed comm per rank and scope, new and gone race findings; with
    `html`, also a before/after page with each rank's representative step one above the other."""
    from .diff import diff_runs

    if html is not None:
        _refuse_to_overwrite_inputs(html, [before, after])

    def side(path: Path) -> Trace:
        return load_run([path], comm_patterns, exclude_kernels=exclude_kernels)

    traces = side(before), side(after)
    result = diff_runs(*traces, _regions(regions, presets), top=top)
    if html is not None:
        from .renderers.diff_html import render_diff_html

        write_text(html, render_diff_html(result, *traces))
    return result


def write_text(path: Path, text: str) -> None:
    """A file the user asked for (a page, a CI report); one that cannot be written is bad input."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise BadInput(path, f"cannot write: {e.strerror}") from None


def ranges(paths: Paths, comm_patterns: Sequence[str] = (), include_cpu_ops: bool = False,
           ranks: Sequence[str] = (), on_progress: ProgressFn | None = None) -> RangeTable:
    """The host range names of a run (what --region can match) with the communication they launch."""
    from .ranges import list_ranges

    return list_ranges(load_run(paths, comm_patterns, on_progress=on_progress, ranks=ranks),
                       include_cpu_ops=include_cpu_ops)


@dataclass
class Exported:
    """`overlapscope export`: the files written, and why a single file may not round-trip exactly."""

    files: list[Path]
    caveats: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"files": [str(f) for f in self.files], "caveats": list(self.caveats)}


def export(paths: Paths, output: Path, regions: Sequence[str] = (), comm_patterns: Sequence[str] = (),
           ranks: Sequence[str] = (), with_races: bool = True, on_progress: ProgressFn | None = None) -> Exported:
    """A Chrome/Perfetto trace of the run with overlap tracks (docs/export.md)."""
    from .export import export_trace, write_export

    _refuse_to_overwrite_inputs(output, paths)
    trace = load_run(paths, comm_patterns, on_progress=on_progress, ranks=ranks)
    findings = None
    if with_races:
        from .races import check_races

        findings = check_races(trace).findings
    data = export_trace(trace, findings=findings, regions=list(regions))
    try:
        files = write_export(data, output)
    except OSError as e:
        raise BadInput(output, f"cannot write: {e.strerror}") from None
    single = output.suffix == ".json" or output.name.endswith(".json.gz")
    return Exported(files, list(data.get("overlapscope", {}).get("one_file", [])) if single else [])


def history(db: Path, last: int = 20) -> Trend:
    """The overlap trend per scope over the recorded runs."""
    from .history import read_trend

    return read_trend(db, last=last)


@dataclass
class RunResult:
    """`overlapscope run`: what ran, and the overlap of the model's region in its traces."""

    outcome: Any  # capture.RunOutcome
    analysis: Any  # overlap.Analysis, or None when nothing was profiled

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.outcome.out_dir), "manifest": self.outcome.manifest,
                "analysis": None if self.analysis is None else self.analysis.to_dict()}


def run(request: Any) -> RunResult:
    """Run a workload on local ranks under a profiler (capture.RunRequest), then analyse its traces."""
    from .capture import run_model
    from .overlap import analyze as analyze_trace

    outcome = run_model(request)
    if request.profiler == "none":
        return RunResult(outcome, None)
    region = outcome.manifest.get("overlap_region")
    return RunResult(outcome, analyze_trace(load_run([outcome.out_dir]), [region] if region else []))


def _refuse_to_overwrite_inputs(output: Path, paths: Paths) -> None:
    """An output that is one of the run's own files (a trace, its run.json, an Execution Trace)
    would destroy the input: refuse before reading anything."""
    from .trace.load import run_files

    target = output.resolve()
    given = [Path(p).resolve() for p in paths]
    if target in given:
        raise BadInput(output, "is an input of this run: refusing to overwrite it (write the output elsewhere)")
    if not target.exists() or target.parent not in given:
        return
    files = run_files(paths)
    inputs = [f.path for f in files.traces] + [f.path for f in files.manifests + files.execution_traces]
    if target in {Path(f).resolve() for f in inputs}:
        raise BadInput(output, "is an input of this run: refusing to overwrite it (write the output elsewhere)")
