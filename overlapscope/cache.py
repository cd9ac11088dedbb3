"""A columnar cache of read trace files: the first read of a file stores its frames as Parquet, later
reads load them instead of parsing the trace again.

An entry is keyed by the SHA-256 of the file's bytes and the reader settings that shape what was read
(the file's kind and the rank a Kineto trace gets when it names none), and lives under a folder named
after the *format version*: the cache layout, overlapscope's version and a digest of the readers'
source, so entries written by other reader code are never found (`cache show` counts them as stale).

Entries are never trusted: `meta.json` carries a checksum of itself, the row count and SHA-256 of
every Parquet file and the categories of every name column; an entry that fails any check is
deleted and the file is read again. Categorical columns are stored as their integer codes with the
categories listed in order, so a cached frame equals the frame that was read, category order included.
Frames are stored as read (GPU ops not yet classified), so comm patterns never invalidate an entry.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from . import __version__
from .errors import BadInput
from .trace.load import TraceFile
from .trace.model import FRAME_COLUMNS, RankInfo, Trace

LAYOUT = 1  # how entries are laid out on disk; bump on any change here
ENV_DIR = "OVERLAPSCOPE_CACHE"
_META = "meta.json"
_COMPRESSION = "lz4"  # reads as fast as uncompressed Parquet, a third smaller
_HASH_BLOCK = 1 << 24
# the modules that shape what is stored: any change to them makes a new format version
_SHAPERS = ("cache.py", "trace/model.py", "trace/load.py", "trace/kineto.py", "trace/json_split.py",
            "trace/decimal_ns.py", "trace/nsys.py")
_FORMAT_DIR = re.compile(r"^\d+-[\w.+-]+-[0-9a-f]{12}$")
_SHARD = re.compile(r"^[0-9a-f]{2}$")
_TMP = "tmp-"


class _Invalid(Exception):
    """A cache entry that does not hold what its metadata promises."""


def default_dir() -> Path:
    return Path(os.environ.get(ENV_DIR) or Path.home() / ".cache" / "overlapscope")


def cache_available() -> bool:
    """Whether pyarrow (the `scale` extra) is installed; without it every file is read."""
    return importlib.util.find_spec("pyarrow") is not None


@cache
def format_version() -> str:
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for name in _SHAPERS:
        digest.update((package / name).read_bytes())
    return f"{LAYOUT}-{__version__}-{digest.hexdigest()[:12]}"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class TraceCache:
    """Entries in `directory`/<format version>/<first two hex digits>/<key>/."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._root = self.directory / format_version()

    def key(self, f: TraceFile) -> str:
        rank = "" if f.default_rank is None else f"-rank{f.default_rank}"
        rank += "" if f.forced_rank is None else f"-given{f.forced_rank}"  # a file without a rank reads as the given one
        return f"{file_digest(f.path)}-{f.kind}{rank}"

    def get(self, key: str, source: str) -> Trace | None:
        """The trace stored under `key` (its ranks' source set to `source`), or None when there is
        no entry or the entry is damaged (then it is deleted)."""
        entry = self._entry(key)
        if not entry.is_dir():
            return None
        try:
            return _read_entry(entry, key, source)
        # any failure reading an entry means a damaged entry (NotImplementedError is what pyarrow
        # raises for an unreadable Parquet type, not a stub): drop it, and the file is read again
        except (_Invalid, OSError, ValueError, KeyError, TypeError, IndexError, NotImplementedError):
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def put(self, key: str, trace: Trace) -> None:
        """Store a trace; a cache that cannot be written (disk full, no permission) is skipped."""
        tmp = self._root / f"{_TMP}{uuid.uuid4().hex}"
        try:
            tmp.mkdir(parents=True)
            _write_entry(tmp, key, trace)
            entry = self._entry(key)
            entry.parent.mkdir(exist_ok=True)
            os.rename(tmp, entry)
        except (OSError, TypeError):  # TypeError: rank metadata that is not JSON
            pass  # another process stored it first, or the cache is not writable
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _entry(self, key: str) -> Path:
        return self._root / key[:2] / key


def _write_entry(folder: Path, key: str, trace: Trace) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames: dict[str, Any] = {}
    for name, columns in FRAME_COLUMNS.items():
        frame = getattr(trace, name)
        arrays, categories = {}, {}
        for col in columns:
            values = frame[col]
            if isinstance(values.dtype, pd.CategoricalDtype):
                arrays[col] = pa.array(values.cat.codes.to_numpy().astype(np.int32))
                categories[col] = values.cat.categories.tolist()
            else:
                arrays[col] = pa.array(values.to_numpy())
        path = folder / f"{name}.parquet"
        pq.write_table(pa.table(arrays), path, compression=_COMPRESSION)
        frames[name] = {"rows": len(frame), "sha256": file_digest(path), "categories": categories}
    body = {"format": format_version(), "key": key, "ranks": [asdict(r) for r in trace.ranks], "frames": frames}
    (folder / _META).write_bytes(orjson.dumps({"body": body, "sha256": _body_digest(body)}))


def _read_entry(folder: Path, key: str, source: str) -> Trace:
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = orjson.loads((folder / _META).read_bytes())
    body = meta["body"]
    if meta["sha256"] != _body_digest(body) or body["format"] != format_version() or body["key"] != key:
        raise _Invalid("metadata")
    frames = {}
    for name, columns in FRAME_COLUMNS.items():
        spec = body["frames"][name]
        raw = (folder / f"{name}.parquet").read_bytes()
        if hashlib.sha256(raw).hexdigest() != spec["sha256"]:
            raise _Invalid(name)
        # one thread, no dataset scanner: Arrow's thread pools left running can abort the interpreter
        # at exit ("terminate called without an active exception", apache/arrow#34314)
        table = pq.ParquetFile(pa.BufferReader(raw)).read(use_threads=False)
        if table.column_names != list(columns) or table.num_rows != spec["rows"]:
            raise _Invalid(name)
        frames[name] = _frame(table, columns, spec["categories"])
    ranks = [RankInfo(**{**r, "source": source}) for r in body["ranks"]]
    return Trace(ranks=ranks, **frames)


def _frame(table: Any, columns: dict[str, Any], categories: dict[str, list]) -> pd.DataFrame:
    data = {}
    for col, dtype in columns.items():
        values = table.column(col).to_numpy()
        if dtype == "category":
            data[col] = pd.Categorical.from_codes(values, categories=categories[col])
        elif isinstance(dtype, pd.CategoricalDtype):
            if categories[col] != list(dtype.categories):
                raise _Invalid(col)
            data[col] = pd.Categorical.from_codes(values, dtype=dtype)
        else:
            if values.dtype != np.dtype(dtype):
                raise _Invalid(col)
            data[col] = values
    return pd.DataFrame(data, copy=False)


def _body_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    directory: Path
    entries: int  # readable by this version of overlapscope
    stale: int  # written under another format version: never read, only taking space
    incomplete: int  # writes that were interrupted
    bytes: int


def cache_stats(directory: Path) -> CacheStats:
    """What the cache holds; a folder that cannot be listed is bad input (one line), not a traceback."""
    try:
        return _stats(directory)
    except OSError as e:
        raise _cache_problem(directory, e, "cannot read the cache") from None


def clear_cache(directory: Path) -> CacheStats:
    """Delete every entry (only folders laid out by this module: nothing else in `directory`)."""
    before = cache_stats(directory)
    try:
        _clear(directory)
    except OSError as e:  # a read-only or foreign-owned cache: say which folder, stop there
        raise _cache_problem(directory, e, "cannot clear the cache") from None
    return before


def _stats(directory: Path) -> CacheStats:
    entries = stale = incomplete = size = 0
    for folder, is_current in _format_dirs(directory):
        for item in folder.iterdir():
            if item.name.startswith(_TMP):
                incomplete += 1
            elif _SHARD.match(item.name):
                found = sum(1 for e in item.iterdir() if e.is_dir())
                entries += found if is_current else 0
                stale += 0 if is_current else found
        size += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return CacheStats(directory, entries, stale, incomplete, size)


def _clear(directory: Path) -> None:
    for folder, _ in _format_dirs(directory):
        for item in folder.iterdir():
            if item.is_dir() and (item.name.startswith(_TMP) or _SHARD.match(item.name)):
                shutil.rmtree(item)
        if not any(folder.iterdir()):
            folder.rmdir()


def _cache_problem(directory: Path, e: OSError, what: str) -> BadInput:
    """Name the path that failed (the folder itself when the error does not say) and why."""
    reason = e.strerror or " ".join(str(e).split())
    return BadInput(e.filename or directory, f"{what}: {reason}")


def _format_dirs(directory: Path) -> list[tuple[Path, bool]]:
    if not directory.is_dir():
        return []
    current = format_version()
    return [(d, d.name == current) for d in sorted(directory.iterdir()) if d.is_dir() and _FORMAT_DIR.match(d.name)]
