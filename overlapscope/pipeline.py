"""The one path from the paths a user gives to a run's results; every command goes through it.

    paths ──trace/load.py (discovery, sniffing)──▶ one task per trace file
          ──task: read (through the cache, with the memory budget's chunk size), classify,
                  then the command's per-file work──▶ in this process, on a pool of processes
                  (--jobs N) or on a Dask cluster (--executor dask --scheduler ADDRESS)
          ──ranks numbered once, the run checked as a whole (unique ranks, manifest,
                  Execution Traces)──▶ `load` (the whole Trace) or `analyze_run` (overlap rows)

`analyze_run` ships only small results back from its tasks (overlap rows and, for --skew, a
summary of the file's collectives), so a run of many large files is analysed on many cores without
moving its events between processes. When some kernels waited for a late peer, a second round of
tasks, only for the files holding them, measures overlap with that waiting excluded.

Memory budget: the bytes the run may use on this machine, shared by its worker processes (on a Dask
cluster: per task). It sets the decompressed Kineto text handled per step (chunk size), which with
the events decoded from it is what grows with the JSON text; what the reader keeps (the columns of
the frames) grows with the number of events, not with the budget.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from .errors import BadInput
from .overlap import DEFAULT_TOP, Analysis, analyze, compile_regions
from .skew import DEFAULT_THRESHOLD_NS, Skew, collective_summary, exclude_waiting, find_waiting
from .trace.classify import classified, compile_patterns, without_kernels
from .trace.load import (CHUNK, ProgressFn, TraceFile, read_trace_file, run_exclusions, run_facts, run_files,
                         with_forced_rank)
from .trace.names import compile_all
from .trace.model import RankInfo, Trace

MIN_CHUNK = 1 << 20
_PRELOAD = ("numpy", "pandas", "msgspec", "orjson", "pyarrow")
# the text in flight (chunk, carried tail, the run of events being decoded and its decoded structs)
# measured at about 12 chunks: a budget keeps it to a tenth of itself
_CHUNKS_PER_BUDGET = 128
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ScaleOptions:
    """How a run's files are read: where (processes, Dask), through the cache or not, in how much memory."""

    jobs: int | None = None  # worker processes on this machine; None: one per core
    executor: str = "local"  # "local" | "dask"
    scheduler: str | None = None  # the Dask scheduler's address, for executor "dask"
    use_cache: bool = False  # read files from the cache of read files, and fill it
    cache_dir: Path | None = None  # None: the default where the task runs ($OVERLAPSCOPE_CACHE, ~/.cache/...)
    memory_budget: int | None = None  # bytes; None: the reader's default chunk size
    skew: bool = False
    skew_threshold_ns: int = DEFAULT_THRESHOLD_NS
    ranks: tuple[tuple[str, int], ...] = ()  # --rank FILE=N: the user's rank for a file
    exclude_kernels: tuple[str, ...] = ()  # kernels neither comm nor compute (pacing, sleep), besides run.json's
    copy_comm: bool = False  # peer-to-peer copies count as communication


IN_PROCESS = ScaleOptions(jobs=1)


@dataclass(frozen=True)
class FileTask:
    """Everything one task needs; picklable, so it travels to a process or a Dask worker."""

    file: TraceFile
    comm_patterns: tuple[str, ...]
    work: Callable[[Trace], Any]  # the command's per-file work: a module-level callable
    exclude_kernels: tuple[str, ...]
    copy_comm: bool
    use_cache: bool
    cache_dir: str | None
    chunk_size: int


@dataclass
class FileResult:
    """A task's outcome: the file's ranks (numbered from 0 for nsys files) and what `work` returned,
    which must have `renumbered(by)` and `with_source(old, new)`."""

    ranks: list[RankInfo]
    value: Any


@dataclass
class FileFailure:
    """Bad input found by a task (BadInput does not pickle, so it travels as its two parts)."""

    source: str
    problem: str


@dataclass
class RunResults:
    """Each file's result with the run's rank numbers, and the run's facts (ranks, manifest, ETs)."""

    facts: Trace
    values: list[Any]
    tasks: list[FileTask]
    first_ranks: list[int]  # what each file's own rank 0 became in the run


def run_file(task: FileTask, on_progress: ProgressFn | None = None) -> FileResult | FileFailure:
    """The task: read one trace file, classify its GPU ops, do the command's work on it."""
    try:
        trace = read_file(task.file, task.use_cache, task.cache_dir, task.chunk_size, on_progress)
        trace = classified(with_forced_rank(trace, task.file), task.comm_patterns, task.copy_comm)
        trace = without_kernels(trace, task.exclude_kernels)
        return FileResult(trace.ranks, task.work(trace))
    except BadInput as e:
        return FileFailure(e.source, e.problem)


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


def read_run(paths: Sequence[str | os.PathLike[str]], work: Callable[[Trace], Any], comm_patterns: Sequence[str] = (),
             options: ScaleOptions = IN_PROCESS, on_progress: ProgressFn | None = None) -> RunResults:
    """Every trace file of the run through `work`, on the executor `options` choose; ranks numbered once."""
    compile_patterns(comm_patterns)  # bad patterns fail before any file is read
    compile_all(options.exclude_kernels, "exclude_kernels")
    run = run_files(paths, dict(options.ranks))
    exclude = tuple(dict.fromkeys([*options.exclude_kernels, *run_exclusions(run)]))
    executor = executor_for(options, len(run.traces))
    cache_dir = None if options.cache_dir is None else str(options.cache_dir)
    tasks = [FileTask(f, tuple(comm_patterns), work, exclude, options.copy_comm, options.use_cache, cache_dir,
                      chunk_size_for(options.memory_budget, executor.workers)) for f in run.traces]
    outcomes = _checked(executor.map(tasks, on_progress))
    firsts = first_ranks(run.traces, [o.ranks for o in outcomes])
    ranks = [dataclasses.replace(r, rank=r.rank + first) for o, first in zip(outcomes, firsts) for r in o.ranks]
    values = [o.value.renumbered(first) for o, first in zip(outcomes, firsts)]
    facts = run_facts(run, ranks)
    if exclude:
        facts = dataclasses.replace(facts, notes=(*facts.notes, "kernels matching " + ", ".join(map(repr, exclude))
                                                  + " are left out (neither communication nor compute)"))
    return RunResults(facts, values, tasks, firsts)


def first_ranks(files: list[TraceFile], ranks: list[list[RankInfo]]) -> list[int]:
    """What each file's own rank 0 becomes: files whose ranks the format cannot name (nsys: one per
    (process, GPU)) continue one after another in file order; Kineto files keep their ranks."""
    firsts = []
    next_rank = 0
    for f, mine in zip(files, ranks):
        if f.kind == "kineto":
            firsts.append(0)
            continue
        firsts.append(next_rank)
        next_rank = max((r.rank + next_rank for r in mine), default=next_rank - 1) + 1
    return firsts


def whole_trace(trace: Trace) -> Trace:
    """The per-file work of `load`: the file's trace itself."""
    return trace


def load(paths: Sequence[str | os.PathLike[str]], comm_patterns: Sequence[str] = (),
         on_progress: ProgressFn | None = None, options: ScaleOptions = IN_PROCESS) -> Trace:
    """One run from files and/or directories: a finished, classified Trace."""
    run = read_run(paths, whole_trace, comm_patterns, options, on_progress)
    trace = Trace.concat(run.values)
    return dataclasses.replace(trace, ranks=run.facts.ranks, manifest=run.facts.manifest,
                               execution_traces=run.facts.execution_traces, notes=run.facts.notes)


@dataclass
class FileAnalysis:
    """What an analysing task sends back: overlap rows and, for --skew, the collectives summary."""

    analysis: Analysis
    collectives: pd.DataFrame | None = None

    def renumbered(self, by: int) -> FileAnalysis:
        if not by:
            return self
        collectives = None if self.collectives is None else self.collectives.assign(rank=self.collectives["rank"] + by)
        return FileAnalysis(self.analysis.renumbered(by), collectives)

    def with_source(self, old: str, new: str) -> FileAnalysis:
        return FileAnalysis(self.analysis.with_source(old, new), self.collectives)


@dataclass(frozen=True)
class AnalyseFile:
    """The per-file work of `analyze_run` (a class, so that it pickles with its settings)."""

    regions: tuple[str, ...]
    top: int = DEFAULT_TOP
    with_collectives: bool = False
    waiting: pd.DataFrame | None = field(default=None, compare=False)  # second round, in the file's rank numbers

    def __call__(self, trace: Trace) -> FileAnalysis:
        if self.waiting is not None:
            trace = exclude_waiting(trace, self.waiting)
        collectives = collective_summary(trace) if self.with_collectives else None
        return FileAnalysis(analyze(trace, self.regions, self.top), collectives)


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


def analyze_run(paths: Sequence[str | os.PathLike[str]], regions: Sequence[str] = (),
                comm_patterns: Sequence[str] = (), options: ScaleOptions = ScaleOptions(),
                on_progress: ProgressFn | None = None, top: int = DEFAULT_TOP) -> RunAnalysis:
    """The overlap table of a run (and, with options.skew, its stragglers), one task per trace file."""
    compile_regions(list(regions))
    work = AnalyseFile(tuple(regions), top, with_collectives=options.skew)
    run = read_run(paths, work, comm_patterns, options, on_progress)
    out = RunAnalysis(run.facts, Analysis.joined([v.analysis for v in run.values]))
    if options.skew:
        summaries = [v.collectives for v in run.values if v.collectives is not None]
        out.skew = find_waiting(pd.concat(summaries, ignore_index=True), options.skew_threshold_ns)
        out.skew.excluding_wait = _excluding_wait(run, out.skew, options, on_progress)
    return out


def _excluding_wait(run: RunResults, skew: Skew, options: ScaleOptions, on_progress: ProgressFn | None) -> Analysis:
    """Each file with waiting kernels analysed again with the waiting trimmed; the rest as they were."""
    redo: dict[int, FileTask] = {}
    for i, (task, first, value) in enumerate(zip(run.tasks, run.first_ranks, run.values)):
        mine = skew.waiting[skew.waiting["rank"].isin([r.rank for r in value.analysis.ranks])]
        if len(mine):
            work = dataclasses.replace(task.work, with_collectives=False, waiting=mine.assign(rank=mine["rank"] - first))
            redo[i] = dataclasses.replace(task, work=work)
    again = _checked(executor_for(options, len(redo)).map(list(redo.values()), on_progress)) if redo else []
    analyses = [v.analysis for v in run.values]
    for i, result in zip(redo, again):
        analyses[i] = result.value.analysis.renumbered(run.first_ranks[i])
    return Analysis.joined(analyses)


def chunk_size_for(memory_budget: int | None, workers: int) -> int:
    """Decompressed text per step for each of `workers` readers sharing the budget."""
    if memory_budget is None:
        return CHUNK
    return max(MIN_CHUNK, min(CHUNK, memory_budget // max(workers, 1) // _CHUNKS_PER_BUDGET))


def parse_size(text: str, option: str = "memory_budget") -> int:
    """Bytes from "1G", "512MiB", "1.5gb", "1000000" (k/M/G/T are powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise BadInput(option, f"not a size: {text!r} (examples: 1G, 512M, 2000000000)")
    number, unit = float(m.group(1)), m.group(2).lower()
    size = int(number * 1024 ** "_kmgt".index(unit or "_"))
    if size <= 0:
        raise BadInput(option, "must be more than 0 bytes")
    return size


def _checked(outcomes: list[FileResult | FileFailure]) -> list[FileResult]:
    """The first bad input, in file order, is the run's error."""
    for outcome in outcomes:
        if isinstance(outcome, FileFailure):
            raise BadInput(outcome.source, outcome.problem)
    return outcomes  # type: ignore[return-value]


# --- executors: each runs run_file over a list of tasks and returns the outcomes in task order ---

class _Executor(Protocol):
    workers: int  # tasks that run at once on this machine (the memory budget is shared among them)

    def map(self, tasks: list[FileTask], on_progress: ProgressFn | None) -> list[FileResult | FileFailure]: ...


class _InProcess:
    workers = 1

    def map(self, tasks: list[FileTask], on_progress: ProgressFn | None) -> list[FileResult | FileFailure]:
        return [run_file(task, on_progress) for task in tasks]


class _Processes:
    def __init__(self, workers: int):
        self.workers = workers

    def map(self, tasks: list[FileTask], on_progress: ProgressFn | None) -> list[FileResult | FileFailure]:
        import multiprocessing

        # forkserver: workers never inherit the parent's threads (a progress bar's, a notebook's),
        # and the preload imports the heavy libraries once for all of them. Not overlapscope itself:
        # the server starts as `python -c`, with the current directory first on sys.path, where a
        # folder named overlapscope (a clone's parent) would shadow the package; each worker imports
        # it after taking the parent's sys.path.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(_PRELOAD))
        outcomes: list[Any] = [None] * len(tasks)
        with ProcessPoolExecutor(min(self.workers, len(tasks)) or 1, mp_context=context) as pool:
            futures = {pool.submit(run_file, task): i for i, task in enumerate(tasks)}
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
            raise BadInput("executor", "dask needs dask.distributed: pip install 'overlapscope[scale]'") from None
        try:  # how long to try is Dask's own setting: distributed.comm.timeouts.connect
            client = Client(self.address)
        except (OSError, TimeoutError, ValueError, TypeError) as e:  # unreachable, or no address at all
            raise BadInput("scheduler", f"cannot reach the Dask scheduler at {self.address}: {e}") from None
        # workers run in other directories, maybe on other hosts (sharing the files): they get
        # absolute paths, and the results name the files as they were given
        remote = [dataclasses.replace(task, file=dataclasses.replace(task.file, path=task.file.path.resolve()),
                                      cache_dir=task.cache_dir and str(Path(task.cache_dir).resolve()))
                  for task in tasks]
        with client:
            futures = client.map(run_file, remote, pure=False)
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
    ranks = [dataclasses.replace(r, source=given) if r.source == source else r for r in outcome.ranks]
    return FileResult(ranks, outcome.value.with_source(source, given))


def _report_done(on_progress: ProgressFn | None, task: FileTask) -> None:
    if on_progress is not None:
        size = task.file.path.stat().st_size
        on_progress(str(task.file.path), size, size)


def executor_for(options: ScaleOptions, n_files: int) -> _Executor:
    if options.executor == "dask":
        if not options.scheduler:
            raise BadInput("executor", "dask needs a scheduler address (e.g. tcp://10.0.0.5:8786)")
        return _Dask(options.scheduler)
    if options.executor != "local":
        raise BadInput("executor", f"unknown executor {options.executor!r} (local or dask)")
    if options.scheduler:
        raise BadInput("scheduler", "only with the dask executor")
    jobs = options.jobs if options.jobs is not None else os.cpu_count() or 1
    if jobs < 1:
        raise BadInput("jobs", "must be at least 1")
    workers = min(jobs, n_files)
    return _InProcess() if workers <= 1 else _Processes(workers)

