"""The files of a run: expand directories, recognise each file by its content, read one trace file
with the right reader, and check the run as a whole (unique ranks, its manifest, its Execution
Traces). Reading many files and numbering their ranks is overlapscope/pipeline.py's job.

All PATHs given together are the files of one run (one per rank, plus optional PyTorch Execution
Trace files and a run.json manifest).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ..errors import BadInput
from .kineto import read_kineto
from .model import RankInfo, Trace
from .sniff import MANIFEST_MARK, READ_FORMATS, TRACE_KINDS, sniff

# on_progress(source, bytes_done, bytes_total) while a file is read
ProgressFn = Callable[[str, int, int], None]

_GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 25  # 32 MiB of decompressed text per step (the default; a memory budget picks less)

# Ranks in the names engines give their files (never a process or job id: PyTorch's default
# `<host>_<pid>.<ns>.pt.trace.json` carries the pid):
_RANK_IN_NAME = (
    re.compile(r"(?:^|[^a-z])rank[-_]?(\d+)", re.IGNORECASE),  # rank-3, rank_3, rank3, vLLM ..._rank3.<ns>
    re.compile(r"(?:^|[^a-z])worker[-_]?(\d+)", re.IGNORECASE),  # worker3 (PARAM, DLRM)
)
# SGLang: <time>-TP-<tp>[-DP-<dp>][-PP-<pp>][-EP-<ep>]...trace.json.gz
_SGLANG_PARTS = re.compile(r"-(TP|DP|PP|EP)-(\d+)")


@dataclass
class _File:
    path: Path
    kind: str  # a trace kind (sniff.TRACE_KINDS) | "execution-trace" | "manifest"


@dataclass(frozen=True)
class TraceFile:
    """One trace file of a run, with what reading it on its own needs."""

    path: Path
    kind: str  # one of sniff.TRACE_KINDS
    default_rank: int | None = None  # Kineto: the rank when the trace names none (file name, or a lone file)
    forced_rank: int | None = None  # --rank FILE=N: the user's word wins over everything the file says


@dataclass
class RunFiles:
    """The files of one run, recognised by content, and what was left out and why."""

    traces: list[TraceFile]
    manifests: list[_File]
    execution_traces: list[_File]
    notes: list[str] = field(default_factory=list)

    @functools.cached_property
    def manifest(self) -> dict | None:
        """The run's run.json, read once (the pipeline needs its exclusions before the tasks, the
        run's facts after them)."""
        return _read_manifest(self.manifests)


def rank_from_name(path: Path) -> int | None:
    """The rank a file's name gives (rank-3, rank3, _rank3., worker3, SGLang's -TP-3), or None."""
    for pattern in _RANK_IN_NAME:
        m = pattern.search(path.name)
        if m:
            return int(m.group(1))
    parts = sglang_parts(path)
    return parts.get("TP") if parts else None


def sglang_parts(path: Path) -> dict[str, int]:
    """SGLang's parallel ranks in a file name: {"TP": 3, "DP": 1, ...} (empty when none)."""
    return {k: int(v) for k, v in _SGLANG_PARTS.findall(path.name)}


def run_files(paths: Sequence[str | os.PathLike[str]], ranks: Mapping[str, int] | None = None) -> RunFiles:
    """The trace files (in the order given, directories sorted), manifests and Execution Traces.
    `ranks`: file path (as given, or its name) -> rank, the user's `--rank FILE=N`."""
    files, notes = _recognise(_expand(paths))
    if not any(f.kind in TRACE_KINDS for f in files):
        where = ", ".join(str(p) for p in paths)
        ets = [f for f in files if f.kind == "execution-trace"]
        if ets:
            raise BadInput(ets[0].path, "a PyTorch Execution Trace without its Kineto trace: pass the rank's Kineto "
                                        "trace (the profiler's .pt.trace.json) with it")
        raise BadInput(where, f"no trace found (expected {READ_FORMATS})" + (f"; {notes[0]}" if notes else ""))
    forced = _forced_ranks(ranks or {}, [f.path for f in files if f.kind in TRACE_KINDS])
    kineto = [f for f in files if f.kind == "kineto"]
    defaults = _default_ranks([f.path for f in kineto])
    traces = [TraceFile(f.path, f.kind, defaults.get(f.path), forced.get(f.path)) for f in files
              if f.kind in TRACE_KINDS]
    notes += _sglang_note(kineto, defaults)
    return RunFiles(traces, [f for f in files if f.kind == "manifest"],
                    [f for f in files if f.kind == "execution-trace"], notes)


def _default_ranks(paths: list[Path]) -> dict[Path, int | None]:
    """Each Kineto file's rank from its name; a lone file is rank 0. SGLang files whose TP ranks
    repeat (DP/PP/EP runs) are numbered by (PP, DP, TP, EP)."""
    out = {p: rank_from_name(p) for p in paths}
    if len(paths) == 1 and out[paths[0]] is None:
        out[paths[0]] = 0
    parts = {p: sglang_parts(p) for p in paths}
    if all(parts.values()) and len({v.get("TP") for v in parts.values()}) < len(paths):
        order = sorted(paths, key=lambda p: tuple(parts[p].get(k, -1) for k in ("PP", "DP", "TP", "EP")))
        out = {p: i for i, p in enumerate(order)}
    return out


def _sglang_note(kineto: list[_File], defaults: dict[Path, int | None]) -> list[str]:
    parts = [sglang_parts(f.path) for f in kineto]
    if len(kineto) > 1 and all(parts) and any(set(p) - {"TP"} for p in parts):
        return ["ranks of SGLang files whose TP rank repeats are numbered in (PP, DP, TP, EP) order "
                "unless the traces carry distributedInfo; --rank FILE=N sets them"]
    return []


def _forced_ranks(ranks: Mapping[str, int], paths: list[Path]) -> dict[Path, int]:
    out: dict[Path, int] = {}
    for given, rank in ranks.items():
        hits = [p for p in paths if p == Path(given) or p.name == given or p.resolve() == Path(given).resolve()]
        if len(hits) != 1:
            raise BadInput("ranks", f"{given}={rank}: {'no' if not hits else 'more than one'} trace file of the run "
                                    "is called that")
        out[hits[0]] = rank
    return out


def read_trace_file(f: TraceFile, on_progress: ProgressFn | None = None, first_rank: int = 0,
                    chunk_size: int = CHUNK) -> Trace:
    """One trace file on its own, its GPU ops not yet classified. Ranks a format cannot name (one per
    (process, GPU)) are numbered from `first_rank`; `chunk_size` is the decompressed Kineto text handled
    per step."""
    source = str(f.path)
    if f.kind == "kineto":
        rank = f.default_rank if f.forced_rank is None else f.forced_rank  # a file with no rank takes the user's
        return read_kineto(iter_chunks(f.path, on_progress, chunk_size), source, rank)
    if f.kind == "rocprofv3":
        from .rocprofv3 import read_rocprofv3

        return read_rocprofv3(read_bytes(f.path), source, first_rank)
    if f.kind == "rocpd":
        from .rocpd import read_rocpd

        return read_rocpd(f.path, source, first_rank)
    sqlite_path = f.path if f.kind == "nsys" else _export_nsys_rep(f.path)
    return _read_nsys(sqlite_path, source, first_rank=first_rank)


def with_forced_rank(trace: Trace, f: TraceFile) -> Trace:
    """The file's trace with the rank the user gave it (--rank FILE=N), if any."""
    if f.forced_rank is None:
        return trace
    if len(trace.ranks) != 1:
        raise BadInput(f.path, f"holds {len(trace.ranks)} ranks: --rank sets the rank of one-rank files only")
    return trace.renumbered(f.forced_rank - trace.ranks[0].rank)


def run_exclusions(run: RunFiles) -> list[str]:
    """Kernels the run's own manifest says to leave out (`exclude_kernels` in run.json: pacing)."""
    manifest = run.manifest or {}
    patterns = manifest.get("exclude_kernels") or []
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise BadInput(run.manifests[0].path, "exclude_kernels must be a list of regular expressions")
    return patterns


def run_facts(run: RunFiles, ranks: list[RankInfo]) -> Trace:
    """The run without its events: ranks (checked to be unique), manifest and Execution Traces."""
    _check_unique_ranks(ranks)
    ranks = sorted(ranks, key=lambda r: r.rank)
    return dataclasses.replace(Trace.empty(ranks), manifest=run.manifest, notes=tuple(run.notes),
                               execution_traces=_match_execution_traces(run.execution_traces, ranks))


def _expand(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, bool]]:
    """(file, given explicitly) for every path; directories contribute their regular files."""
    out: list[tuple[Path, bool]] = []
    for p in map(Path, paths):
        try:
            os.stat(p)
        except FileNotFoundError:
            raise BadInput(p, "no such file or directory") from None
        except OSError as e:  # a name over 255 bytes, a loop of links, no permission
            raise BadInput(_shown(p), f"cannot read: {e.strerror}") from None
        if p.is_dir():
            out.extend((child, False) for child in sorted(p.iterdir()) if child.is_file())
        elif p.is_file():
            out.append((p, True))
        elif p.exists():
            raise BadInput(p, "not a regular file or directory")
        else:
            raise BadInput(p, "no such file or directory")
    return out


def _shown(path: Path, limit: int = 120) -> str:
    """A path short enough for one line of an error message."""
    text = str(path)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text):,} characters)"


def _recognise(files: list[tuple[Path, bool]]) -> tuple[list[_File], list[str]]:
    """The run's files by kind, and a note for each file of a directory left out. A file given by
    name that is no trace we read is an error; so is a foreign trace when nothing else is readable."""
    out: list[_File] = []
    notes: list[str] = []
    foreign: list[tuple[Path, str]] = []
    for path, explicit in files:
        found = sniff(path)
        if found.kind is None or found.kind == "foreign":
            if explicit:
                raise BadInput(path, found.why if found.kind == "foreign" else f"not a trace ({found.why}): expected "
                                     f"{READ_FORMATS}")
            if found.kind == "foreign":
                foreign.append((path, found.why))
            notes.append(f"skipped {path}: {found.why}")
            continue
        out.append(_File(path, found.kind))
    if foreign and not any(f.kind in TRACE_KINDS for f in out):
        raise BadInput(foreign[0][0], foreign[0][1])
    return out, notes


def iter_chunks(path: Path, on_progress: ProgressFn | None = None, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """The file's content in chunks, gunzipped when it is gzip, so that no reader needs the
    whole text at once and progress can be shown."""
    total = path.stat().st_size
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if is_gzip else raw
        try:
            while chunk := stream.read(chunk_size):
                if on_progress:
                    on_progress(str(path), raw.tell(), total)
                yield chunk
        except EOFError:
            raise BadInput(path, "truncated gzip file (it ends before the end-of-stream marker)") from None
        except (OSError, zlib.error) as e:
            raise BadInput(path, f"corrupt gzip data: {e}") from None


def read_bytes(path: Path) -> bytes:
    return b"".join(iter_chunks(path))


def _read_nsys(sqlite_path: Path, source: str, first_rank: int) -> Trace:
    from .nsys import read_nsys  # sqlite3 and friends only when needed

    return read_nsys(sqlite_path, source=source, first_rank=first_rank)


def find_nsys() -> str | None:
    return os.environ.get("OVERLAPSCOPE_NSYS") or shutil.which("nsys")


def _export_nsys_rep(path: Path) -> Path:
    nsys = find_nsys()
    if not nsys:
        raise BadInput(path, "an Nsight Systems report, and nsys is not on PATH (or OVERLAPSCOPE_NSYS): "
                             f"export it with `nsys export --type sqlite -o {path.stem}.sqlite {path}` "
                             "and pass the .sqlite")
    out = Path(tempfile.mkdtemp(prefix="overlapscope-")) / (path.stem + ".sqlite")
    proc = subprocess.run([nsys, "export", "--type", "sqlite", "--force-overwrite", "true", "-o", str(out), str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BadInput(path, f"nsys export failed: {last[0]}")
    return out


def _check_unique_ranks(ranks: list[RankInfo]) -> None:
    seen: dict[int, str] = {}
    for info in ranks:
        if info.rank in seen and seen[info.rank] != info.source:
            raise BadInput(info.source, f"claims rank {info.rank}, which {seen[info.rank]} claims too")
        seen[info.rank] = info.source


def _read_manifest(files: list[_File]) -> dict | None:
    if not files:
        return None
    if len(files) > 1:
        raise BadInput(files[1].path, f"a second run manifest (the first is {files[0].path}): one run at a time")
    try:
        manifest = orjson.loads(read_bytes(files[0].path))
    except orjson.JSONDecodeError as e:
        raise BadInput(files[0].path, f"run manifest is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise BadInput(files[0].path, f"run manifest is a JSON {type(manifest).__name__}, not an object")
    return manifest


def _match_execution_traces(files: list[_File], ranks: list[RankInfo]) -> dict[int, str]:
    """An Execution Trace belongs to the rank whose process it recorded (its `pid`, the pid of the
    rank's host events), else to the rank its file name gives, else to the only rank."""
    by_pid: dict[int, list[int]] = {}
    for r in ranks:
        if r.pid is not None:
            by_pid.setdefault(r.pid, []).append(r.rank)
    numbers = [r.rank for r in ranks]
    out: dict[int, str] = {}
    for f in files:
        pid = _execution_trace_pid(f.path)
        owners = by_pid.get(pid, []) if pid is not None else []
        rank = owners[0] if len(owners) == 1 else rank_from_name(f.path)
        if rank is None and len(numbers) == 1:
            rank = numbers[0]
        if rank is None or rank not in numbers:
            raise BadInput(f.path, "Execution Trace whose rank is unknown: its pid matches no rank's trace and its "
                                   "name none (name it like the rank's trace: rank-3)")
        if rank in out:
            raise BadInput(f.path, f"a second Execution Trace for rank {rank} (the first is {out[rank]})")
        out[rank] = str(f.path)
    return out


_ET_PID = re.compile(rb'"pid"\s*:\s*(\d+)')


def _execution_trace_pid(path: Path) -> int | None:
    m = _ET_PID.search(next(iter_chunks(path, chunk_size=1 << 14), b"")[:1 << 14])
    return int(m.group(1)) if m else None
