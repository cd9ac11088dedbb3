"""The files of a run: expand directories, recognise each file by its content, read one trace file
with the right reader, and check the run as a whole (unique ranks, its manifest, its Execution
Traces). Reading many files and numbering their ranks is overlapscope/pipeline.py's job.

All PATHs given together are the files of one run (one per rank, plus optional PyTorch Execution
Trace files and a run.json manifest).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from ..errors import BadInput
from .kineto import looks_like_kineto, read_kineto
from .model import RankInfo, Trace

# on_progress(source, bytes_done, bytes_total) while a file is read
ProgressFn = Callable[[str, int, int], None]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_HEAD = 1 << 16
_LONG_HEAD = 1 << 25
CHUNK = 1 << 25  # 32 MiB of decompressed text per step (the default; a memory budget picks less)
MANIFEST_MARK = "overlapscope_run"  # key every run.json written by `overlapscope run` carries

# rank-3, rank_3, rank3, ..._3.json
_RANK_IN_NAME = (re.compile(r"rank[-_]?(\d+)", re.IGNORECASE), re.compile(r"_(\d+)\."))


@dataclass
class _File:
    path: Path
    kind: str  # "kineto" | "nsys" | "nsys-rep" | "execution-trace" | "manifest"


@dataclass(frozen=True)
class TraceFile:
    """One trace file of a run, with what reading it on its own needs."""

    path: Path
    kind: str  # "kineto" | "nsys" | "nsys-rep"
    default_rank: int | None = None  # Kineto: the rank when the trace names none (file name, or a lone file)


@dataclass
class RunFiles:
    """The files of one run, recognised by content."""

    traces: list[TraceFile]
    manifests: list[_File]
    execution_traces: list[_File]


def rank_from_name(path: Path) -> int | None:
    for pattern in _RANK_IN_NAME:
        m = pattern.search(path.name)
        if m:
            return int(m.group(1))
    return None


def run_files(paths: Sequence[str | os.PathLike[str]]) -> RunFiles:
    """The trace files (in the order given, directories sorted), manifests and Execution Traces."""
    files = _recognise(_expand(paths))
    kinds = ("kineto", "nsys", "nsys-rep")
    if not any(f.kind in kinds for f in files):
        where = ", ".join(str(p) for p in paths)
        raise BadInput(where, "no trace found (expected Kineto .json/.json.gz, Nsight Systems .sqlite or .nsys-rep)")
    single_kineto = sum(f.kind == "kineto" for f in files) == 1
    traces = []
    for f in files:
        if f.kind == "kineto":
            default_rank = rank_from_name(f.path)
            traces.append(TraceFile(f.path, f.kind, 0 if default_rank is None and single_kineto else default_rank))
        elif f.kind in kinds:
            traces.append(TraceFile(f.path, f.kind))
    return RunFiles(traces, [f for f in files if f.kind == "manifest"],
                    [f for f in files if f.kind == "execution-trace"])


def read_trace_file(f: TraceFile, on_progress: ProgressFn | None = None, first_rank: int = 0,
                    chunk_size: int = CHUNK) -> Trace:
    """One trace file on its own, its GPU ops not yet classified. An nsys file's ranks are numbered
    from `first_rank`; `chunk_size` is the decompressed Kineto text handled per step."""
    if f.kind == "kineto":
        return read_kineto(iter_chunks(f.path, on_progress, chunk_size), str(f.path), f.default_rank)
    sqlite_path = f.path if f.kind == "nsys" else _export_nsys_rep(f.path)
    return _read_nsys(sqlite_path, str(f.path), first_rank=first_rank)


def run_facts(run: RunFiles, ranks: list[RankInfo]) -> Trace:
    """The run without its events: ranks (checked to be unique), manifest and Execution Traces."""
    _check_unique_ranks(ranks)
    ranks = sorted(ranks, key=lambda r: r.rank)
    return dataclasses.replace(Trace.empty(ranks), manifest=_read_manifest(run.manifests),
                               execution_traces=_match_execution_traces(run.execution_traces, [r.rank for r in ranks]))


def _expand(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, bool]]:
    """(file, given explicitly) for every path; directories contribute their regular files."""
    out: list[tuple[Path, bool]] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend((child, False) for child in sorted(p.iterdir()) if child.is_file())
        elif p.is_file():
            out.append((p, True))
        elif p.exists():
            raise BadInput(p, "not a regular file or directory")
        else:
            raise BadInput(p, "no such file or directory")
    return out


def _recognise(files: list[tuple[Path, bool]]) -> list[_File]:
    out = []
    for path, explicit in files:
        kind = sniff(path)
        if kind is None:
            if explicit:
                raise BadInput(path, "not a trace: expected Kineto JSON (.json/.json.gz), an Nsight Systems "
                                     "SQLite export (.sqlite) or report (.nsys-rep)")
            continue  # a README or a picture beside the traces
        out.append(_File(path, kind))
    return out


def sniff(path: Path) -> str | None:
    """What a file is, from its first bytes (and, for JSON, its first keys)."""
    head = _head(path, _HEAD)
    if head.startswith(_SQLITE_MAGIC):
        return "nsys"
    if path.suffix in (".nsys-rep", ".qdrep"):
        return "nsys-rep"
    if not head.lstrip().startswith((b"{", b"[")):
        return None
    for limit in (_HEAD, _LONG_HEAD):  # a huge distributedInfo can push traceEvents far down
        if limit != _HEAD:
            head = _head(path, limit)
        if looks_like_kineto(head):
            return "kineto"
        if b'"nodes"' in head and b'"schema"' in head:
            return "execution-trace"
        if MANIFEST_MARK.encode() in head:
            return "manifest"
        if len(head) < limit:
            break  # the whole file was in view
    raise BadInput(path, "JSON that is not a trace: no traceEvents (Kineto), nodes (Execution Trace) "
                         "or overlapscope run manifest")


def _head(path: Path, limit: int) -> bytes:
    """Up to `limit` bytes of the file's content, gunzipped when it is gzip."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit)
            if not raw:
                raise BadInput(path, "empty file")
            if not raw.startswith(_GZIP_MAGIC):
                return raw
            fh.seek(0)
            d = zlib.decompressobj(wbits=31)
            out = b""
            while len(out) < limit and (chunk := fh.read(_HEAD)):
                out += d.decompress(chunk, limit - len(out))
    except OSError as e:
        raise BadInput(path, f"cannot read: {e.strerror}") from None
    except zlib.error as e:
        raise BadInput(path, f"corrupt gzip data: {e}") from None
    if not out:
        raise BadInput(path, "gzip file with nothing inside (truncated?)")
    return out


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
        return orjson.loads(read_bytes(files[0].path))
    except orjson.JSONDecodeError as e:
        raise BadInput(files[0].path, f"run manifest is not valid JSON: {e}") from None


def _match_execution_traces(files: list[_File], ranks: list[int]) -> dict[int, str]:
    """An Execution Trace belongs to the rank its file name gives, else to the only rank."""
    out: dict[int, str] = {}
    for f in files:
        rank = rank_from_name(f.path)
        if rank is None and len(ranks) == 1:
            rank = ranks[0]
        if rank is None or rank not in ranks:
            raise BadInput(f.path, "Execution Trace whose rank is unknown: name it like the rank's trace (rank-3)")
        if rank in out:
            raise BadInput(f.path, f"a second Execution Trace for rank {rank} (the first is {out[rank]})")
        out[rank] = str(f.path)
    return out


def __getattr__(name: str):
    # TODO(lead): remove once tests import `load` from overlapscope.pipeline
    if name == "load":
        from ..pipeline import load

        return load
    raise AttributeError(name)
