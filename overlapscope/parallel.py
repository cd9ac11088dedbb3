"""Analyse a run's trace files in parallel: on this machine's cores (--jobs N) or on a Dask cluster
(--executor dask --scheduler ADDRESS), through one code path.

The task is `analyse_file`: it reads one trace file (through the cache when it is on), classifies
its GPU ops, analyses its ranks and returns only small results: rank facts, the overlap rows and, for
--skew, a summary of its collectives. The parent numbers nsys ranks the way `load` does, checks the
run as a whole (unique ranks, manifest, Execution Traces), joins the rows, and matches collectives
across ranks. When some kernels waited for a late peer, a second round of tasks, only for the files
holding them, measures overlap with that waiting excluded (reading those files again: from the cache,
unless it is off).

Memory budget: the bytes the run may use on this machine, shared by its worker processes (on a Dask
cluster: per task). It sets the decompressed Kineto text handled per step (chunk size), which with
the events decoded from it is what grows with the JSON text; what the reader keeps (the columns of
the frames) grows with the number of events, not with the budget.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from .errors import BadInput
from .overlap import Analysis, analyze, compile_regions
from .skew import DEFAULT_THRESHOLD_NS, Skew, collective_summary, exclude_waiting, find_waiting
from .trace.classify import classified, compile_patterns
from .trace.load import CHUNK, ProgressFn, TraceFile, next_rank_after, read_trace_file, run_facts, run_files
from .trace.model import RankInfo, Trace

MIN_CHUNK = 1 << 20
# the text in flight (chunk, carried tail, the run of events being decoded and its decoded structs)
# measured at about 12 chunks: a budget keeps it to a tenth of itself
_CHUNKS_PER_BUDGET = 128
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ScaleOptions:
    jobs: int | None = None  # worker processes on this machine; None: one per core
    executor: str = "local"  # "local" | "dask"
    scheduler: str | None = None  # the Dask scheduler's address, for executor "dask"
    use_cache: bool = False  # read files from the cache of read files, and fill it
    cache_dir: Path | None = None  # None: the default where the task runs ($OVERLAPSCOPE_CACHE, ~/.cache/...)
    memory_budget: int | None = None  # bytes; None: the reader's default chunk size
    skew: bool = False
    skew_threshold_ns: int = DEFAULT_THRESHOLD_NS


@dataclass(frozen=True)
class FileTask:
    """Everything one task needs; picklable, so it travels to a process or a Dask worker."""

    file: TraceFile
    comm_patterns: tuple[str, ...]
    regions: tuple[str, ...]
    use_cache: bool
    cache_dir: str | None
    chunk_size: int
    with_collectives: bool = False
    waiting: pd.DataFrame | None = None  # second round: the file's waiting kernels, in its own rank numbers


@dataclass
class FileResult:
    ranks: list[RankInfo]  # nsys files: numbered from 0, the parent renumbers
    analysis: Analysis
    collectives: pd.DataFrame | None = None


@dataclass
class FileFailure:
    """Bad input found by a task (BadInput does not pickle, so it travels as its two parts)."""

    source: str
    problem: str


@dataclass
class RunAnalysis:
    facts: Trace  # the run's ranks, manifest and Execution Traces, without events (those stayed in the tasks)
    analysis: Analysis
    skew: Skew | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.analysis.to_dict()
        if self.skew is not None:
            out["skew"] = self.skew.to_dict()
        return out


def analyse_file(task: FileTask, on_progress: ProgressFn | None = None) -> FileResult | FileFailure:
    """The task: one trace file in, small results out."""
    try:
        trace = read_file(task.file, task.use_cache, task.cache_dir, task.chunk_size, on_progress)
        trace = classified(trace, task.comm_patterns)
        if task.waiting is not None:
            trace = exclude_waiting(trace, task.waiting)
        analysis = analyze(trace, task.regions)
        collectives = collective_summary(trace) if task.with_collectives else None
    except BadInput as e:
        return FileFailure(e.source, e.problem)
    return FileResult(trace.ranks, analysis, collectives)


def read_file(f: TraceFile, use_cache: bool, cache_dir: str | Path | None = None, chunk_size: int = CHUNK,
              on_progress: ProgressFn | None = None) -> Trace:
    """One file's trace, GPU ops not yet classified: from the cache when it holds the file, else read
    (and stored there). Where pyarrow is missing, the cache is off."""
    from .cache import TraceCache, cache_available, default_dir

    if not use_cache or not cache_available():
        return read_trace_file(f, on_progress, chunk_size=chunk_size)
    cache = TraceCache(Path(cache_dir) if cache_dir is not None else default_dir())
    try:
        key = cache.key(f)
    except OSError as e:
        raise BadInput(f.path, f"cannot read: {e.strerror}") from None
    trace = cache.get(key, str(f.path))
    if trace is None:
        trace = read_trace_file(f, on_progress, chunk_size=chunk_size)
        cache.put(key, trace)
    return trace


def analyze_run(paths: Sequence[str | os.PathLike[str]], regions: Sequence[str] = (),
                comm_patterns: Sequence[str] = (), options: ScaleOptions = ScaleOptions(),
                on_progress: ProgressFn | None = None) -> RunAnalysis:
    """The overlap table of a run (and, with options.skew, its stragglers), one task per trace file."""
    compile_patterns(comm_patterns)  # bad patterns fail before any file is read
    compile_regions(list(regions))
    run = run_files(paths)
    executor = _executor(options, len(run.traces))
    cache_dir = None if options.cache_dir is None else str(options.cache_dir)
    tasks = [FileTask(f, tuple(comm_patterns), tuple(regions), options.use_cache, cache_dir,
                      chunk_size_for(options.memory_budget, executor.workers), with_collectives=options.skew)
             for f in run.traces]
    outcomes = _checked(executor.map(tasks, on_progress))
    results = [_numbered(r, first) for r, first in zip(outcomes, _first_ranks(run.traces, outcomes))]
    facts = run_facts(run, [info for r in results for info in r.ranks])
    out = RunAnalysis(facts, _joined([r.analysis for r in results]))
    if options.skew:
        summaries = [r.collectives for r in results if r.collectives is not None]
        out.skew = find_waiting(pd.concat(summaries, ignore_index=True), options.skew_threshold_ns)
        out.skew.excluding_wait = _excluding_wait(executor, tasks, results, out.skew, on_progress)
    return out


def _excluding_wait(executor: _Executor, tasks: list[FileTask], results: list[_Numbered], skew: Skew,
                    on_progress: ProgressFn | None) -> Analysis:
    """Each file with waiting kernels analysed again with the waiting trimmed; the rest as they were."""
    redo: dict[int, FileTask] = {}
    for i, (task, result) in enumerate(zip(tasks, results)):
        mine = skew.waiting[skew.waiting["rank"].isin([r.rank for r in result.ranks])]
        if len(mine):
            local = mine.assign(rank=mine["rank"] - result.first_rank)
            redo[i] = dataclasses.replace(task, with_collectives=False, waiting=local)
    again = _checked(executor.map(list(redo.values()), on_progress)) if redo else []
    analyses = [r.analysis for r in results]
    for i, result in zip(redo, again):
        analyses[i] = _shifted(result.analysis, results[i].first_rank)
    return _joined(analyses)


def chunk_size_for(memory_budget: int | None, workers: int) -> int:
    """Decompressed text per step for each of `workers` readers sharing the budget."""
    if memory_budget is None:
        return CHUNK
    return max(MIN_CHUNK, min(CHUNK, memory_budget // max(workers, 1) // _CHUNKS_PER_BUDGET))


def parse_size(text: str, option: str = "--memory-budget") -> int:
    """Bytes from "1G", "512MiB", "1.5gb", "1000000" (k/M/G/T are powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise BadInput(option, f"not a size: {text!r} (examples: 1G, 512M, 2000000000)")
    number, unit = float(m.group(1)), m.group(2).lower()
    size = int(number * 1024 ** "_kmgt".index(unit or "_"))
    if size <= 0:
        raise BadInput(option, "must be more than 0 bytes")
    return size


@dataclass
class _Numbered(FileResult):
    first_rank: int = 0  # what the file's own rank 0 became in the run


def _checked(outcomes: list[FileResult | FileFailure]) -> list[FileResult]:
    """The first bad input, in file order, is the run's error (as `load` reports it)."""
    for outcome in outcomes:
        if isinstance(outcome, FileFailure):
            raise BadInput(outcome.source, outcome.problem)
    return outcomes  # type: ignore[return-value]


def _first_ranks(files: list[TraceFile], results: list[FileResult]) -> list[int]:
    """What each file's own rank 0 becomes: nsys files continue one after another, in file order,
    as `load` numbers them; Kineto files keep their ranks."""
    firsts = []
    next_nsys_rank = 0
    for f, result in zip(files, results):
        first = 0 if f.kind == "kineto" else next_nsys_rank
        if f.kind != "kineto":
            next_nsys_rank = next_rank_after(_ranks_from(result.ranks, first), next_nsys_rank)
        firsts.append(first)
    return firsts


def _numbered(result: FileResult, first: int) -> _Numbered:
    collectives = result.collectives
    if collectives is not None and first:
        collectives = collectives.assign(rank=collectives["rank"] + first)
    return _Numbered(_ranks_from(result.ranks, first), _shifted(result.analysis, first), collectives, first)


def _ranks_from(ranks: list[RankInfo], first: int) -> list[RankInfo]:
    return [dataclasses.replace(r, rank=r.rank + first) for r in ranks]


def _shifted(analysis: Analysis, by: int) -> Analysis:
    if not by:
        return analysis
    return Analysis(*([dataclasses.replace(row, rank=row.rank + by) for row in rows]
                      for rows in (analysis.ranks, analysis.regions, analysis.steps)))


def _joined(parts: list[Analysis]) -> Analysis:
    """Rows of all files in rank order, each rank's rows in the order `analyze` gives them."""
    def by_rank(row: Any) -> int:
        return row.rank

    return Analysis(ranks=sorted((r for p in parts for r in p.ranks), key=by_rank),
                    regions=sorted((r for p in parts for r in p.regions), key=by_rank),
                    steps=sorted((r for p in parts for r in p.steps), key=by_rank))


# --- executors: each runs analyse_file over a list of tasks and returns the outcomes in task order ---

class _Executor(Protocol):
    workers: int  # tasks that run at once on this machine (the memory budget is shared among them)

    def map(self, tasks: list[FileTask], on_progress: ProgressFn | None) -> list[FileResult | FileFailure]: ...


class _InProcess:
    workers = 1

    def map(self, tasks: list[FileTask], on_progress: ProgressFn | None) -> list[FileResult | FileFailure]:
        return [analyse_file(task, on_progress) for task in tasks]


class _Processes:
    def __init__(self, workers: int):
        self.workers = workers

    def map(self, tasks: list[FileTask], on_progress: ProgressFn | None) -> list[FileResult | FileFailure]:
        import multiprocessing

        # forkserver: workers never inherit the parent's threads (a progress bar's, a notebook's),
        # and the preload imports pandas & co. once for all of them
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        outcomes: list[Any] = [None] * len(tasks)
        with ProcessPoolExecutor(min(self.workers, len(tasks)) or 1, mp_context=context) as pool:
            futures = {pool.submit(analyse_file, task): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                i = futures[future]
                outcomes[i] = future.result()
                _report_done(on_progress, tasks[i])
        return outcomes


class _Dask:
    workers = 1  # each task has the budget to itself: the cluster's workers have their own memory

    def __init__(self, address: str):
        self.address = address

    def map(self, tasks: list[FileTask], on_progress: ProgressFn | None) -> list[FileResult | FileFailure]:
        try:
            from distributed import Client, as_completed as dask_completed
        except ImportError:
            raise BadInput("--executor dask", "needs dask.distributed: pip install 'overlapscope[scale]'") from None
        try:  # how long to try is Dask's own setting: distributed.comm.timeouts.connect
            client = Client(self.address)
        except (OSError, TimeoutError) as e:
            raise BadInput("--scheduler", f"cannot reach the Dask scheduler at {self.address}: {e}") from None
        # workers run in other directories, maybe on other hosts (sharing the files): they get
        # absolute paths, and the results name the files as they were given
        remote = [dataclasses.replace(task, file=dataclasses.replace(task.file, path=task.file.path.resolve()),
                                      cache_dir=task.cache_dir and str(Path(task.cache_dir).resolve()))
                  for task in tasks]
        with client:
            futures = client.map(analyse_file, remote, pure=False)
            index = {future.key: i for i, future in enumerate(futures)}
            for future in dask_completed(futures):
                _report_done(on_progress, tasks[index[future.key]])
            outcomes = client.gather(futures)
        return [_renamed(outcome, str(r.file.path), str(task.file.path))
                for outcome, r, task in zip(outcomes, remote, tasks)]


def _renamed(outcome: FileResult | FileFailure, source: str, given: str) -> FileResult | FileFailure:
    """The outcome with the file's source spelt `given`."""
    if isinstance(outcome, FileFailure):
        return FileFailure(given if outcome.source == source else outcome.source, outcome.problem)

    def named(row: Any) -> Any:
        return dataclasses.replace(row, source=given) if row.source == source else row

    analysis = Analysis([named(r) for r in outcome.analysis.ranks], outcome.analysis.regions, outcome.analysis.steps)
    return FileResult([named(r) for r in outcome.ranks], analysis, outcome.collectives)


def _report_done(on_progress: ProgressFn | None, task: FileTask) -> None:
    if on_progress is not None:
        size = task.file.path.stat().st_size
        on_progress(str(task.file.path), size, size)


def _executor(options: ScaleOptions, n_files: int) -> _Executor:
    if options.executor == "dask":
        if not options.scheduler:
            raise BadInput("--executor dask", "needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786)")
        return _Dask(options.scheduler)
    if options.executor != "local":
        raise BadInput("--executor", f"unknown executor {options.executor!r} (local or dask)")
    if options.scheduler:
        raise BadInput("--scheduler", "only with --executor dask")
    jobs = options.jobs if options.jobs is not None else os.cpu_count() or 1
    if jobs < 1:
        raise BadInput("--jobs", "must be at least 1")
    workers = min(jobs, n_files)
    return _InProcess() if workers <= 1 else _Processes(workers)

