"""Read an Nsight Systems SQLite export (`nsys export --type sqlite`) into a `Trace`.

Each (process, GPU) pair that ran GPU work is a rank, numbered in (deviceId, pid) order; a
process's host calls and NVTX ranges belong to each of its ranks. nsys creates tables lazily and
changes their columns between versions (2024.6 to 2026.2 are in the corpus), so every query is
built from what PRAGMA table_info reports. Integer columns leave SQLite as one group_concat text
per column, parsed by numpy (a Python object per value would cost seconds on a million
kernels); names stay StringIds ids until they become categoricals, each distinct id looked up once.

Rows that cannot be read are never read as zero (or as -1, NULL's stand-in on the way out of
SQLite). The rule: when the rest of the trace stays exact without them (one row's own defect), they
are left out and counted in `RankInfo.dropped_rows`; when the defect makes the rest unreliable,
the file is refused with one line naming the table, the column and the number of rows (BadInput).
Per case:
- a kernel, memcpy, memset, CUDA API call or sync row with NULL `start` or `end`, or with `end`
  before `start`: dropped and counted ("kernel rows with NULL start or end", "kernel rows that end
  before they start", ...). Open NVTX ranges (NULL end) are left out as before: a range still open
  when the capture stopped is not a defect;
- a value that is not an integer (text such as '1e3' that SQLite kept as text, a REAL, a BLOB) in
  any integer column read: refused, whatever the column: a text in a time or id column means the
  file was not written by nsys, and SQLite's own casts (`'1e3' >> 24` is 0) would turn it into a
  wrong number silently;
- NULL in a column that says where a row ran (deviceId, streamId, globalPid, globalTid): refused;
  a NULL deviceId read as a device would be a phantom rank that renumbers the real ones;
- a name id (kernel demangledName/shortName, CUDA API nameId, NVTX textId) that StringIds lacks or
  holds as NULL: refused, as unnamed kernels would silently count as compute.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .classify import NCCL_KERNEL
from ..errors import BadInput
from .names import names_matching
from .model import (
    COLLECTIVE_COLUMNS,
    GPU_OP_COLUMNS,
    GPU_OP_KINDS,
    HOST_APIS,
    HOST_CALL_COLUMNS,
    NO_ID,
    RANGE_COLUMNS,
    RANGE_SOURCES,
    SYNC_COLUMNS,
    SYNC_KINDS,
    RankInfo,
    Trace,
    frame_from_columns,
)

KERNELS = "CUPTI_ACTIVITY_KIND_KERNEL"
MEMCPYS = "CUPTI_ACTIVITY_KIND_MEMCPY"
MEMSETS = "CUPTI_ACTIVITY_KIND_MEMSET"
RUNTIME = "CUPTI_ACTIVITY_KIND_RUNTIME"
SYNCHRONIZATION = "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION"
CUDA_EVENTS = "CUPTI_ACTIVITY_KIND_CUDA_EVENT"
NVTX = "NVTX_EVENTS"

# globalTid = (hwId << 56) | (vmId << 48) | (pid << 24) | tid, and globalPid is the same with tid 0.
# The "process key" globalTid >> 24 keeps the hardware and VM ids, so equal pids on two hosts differ.
_ID_BITS = 24
_ID_MASK = (1 << _ID_BITS) - 1
_CUPTI_INVALID = 0xFFFFFFFF  # CUPTI's "not applicable" stream / event / device id

_MAX_PARAMS = 999  # SQLITE_MAX_VARIABLE_NUMBER before SQLite 3.32
_COLUMN_REF = re.compile(r'\bt\.("?)(\w+)\1')  # t.start, t."end": the columns an expression reads
_NULL_TIME = -(2**63)  # a NULL start or end, as it comes out of SQLite (no clock reads that)
_PLACE = ("deviceId", "streamId", "globalPid", "globalTid")  # where a row ran: NULL refuses the file
_NVTX_PUSH_POP, _NVTX_START_END, _NVTX_DOMAIN_CREATE = 59, 60, 75
_PROFILER_STEP = re.compile(r"^ProfilerStep\s*#\s*\d+$")
_API_VERSION_SUFFIX = re.compile(r"_v\d+$")  # cudaLaunchKernel_v7000 -> cudaLaunchKernel, as Kineto names it
_NCCL_KERNEL = NCCL_KERNEL
_NCCL_RANGE = re.compile(r"^nccl")
# NCCL's NVTX ranges for the calls that carry data (not ncclGroupStart/End, ncclCommCount, ...)
_NCCL_CALL = re.compile(r"^nccl(?:AllReduce|AllGather|ReduceScatter|Reduce|Broadcast|Bcast|Send|Recv|AlltoAll"
                        r"|Gather|Scatter)$")

# Used when an export lacks its ENUM_* table (hand-trimmed files do): the ids CUPTI and nsys use,
# as every corpus export's ENUM tables list them.
_MEMCPY_OPER = {
    0: ("CUDA_MEMCPY_KIND_UNKNOWN", "Unknown"), 1: ("CUDA_MEMCPY_KIND_HTOD", "Host-to-Device"),
    2: ("CUDA_MEMCPY_KIND_DTOH", "Device-to-Host"), 3: ("CUDA_MEMCPY_KIND_HTOA", "Host-to-Array"),
    4: ("CUDA_MEMCPY_KIND_ATOH", "Array-to-Host"), 5: ("CUDA_MEMCPY_KIND_ATOA", "Array-to-Array"),
    6: ("CUDA_MEMCPY_KIND_ATOD", "Array-to-Device"), 7: ("CUDA_MEMCPY_KIND_DTOA", "Device-to-Array"),
    8: ("CUDA_MEMCPY_KIND_DTOD", "Device-to-Device"), 9: ("CUDA_MEMCPY_KIND_HTOH", "Host-to-Host"),
    10: ("CUDA_MEMCPY_KIND_PTOP", "Peer-to-Peer"), 11: ("CUDA_MEMCPY_KIND_UVM_HTOD", "Unified Host-to-Device"),
    12: ("CUDA_MEMCPY_KIND_UVM_DTOH", "Unified Device-to-Host"),
    13: ("CUDA_MEMCPY_KIND_UVM_DTOD", "Unified Device-to-Device"),
}
_MEM_KIND = {
    0: ("CUDA_MEMOPR_MEMORY_KIND_PAGEABLE", "Pageable"), 1: ("CUDA_MEMOPR_MEMORY_KIND_PINNED", "Pinned"),
    2: ("CUDA_MEMOPR_MEMORY_KIND_DEVICE", "Device"), 3: ("CUDA_MEMOPR_MEMORY_KIND_ARRAY", "Array"),
    4: ("CUDA_MEMOPR_MEMORY_KIND_MANAGED", "Managed"), 5: ("CUDA_MEMOPR_MEMORY_KIND_DEVICE_STATIC", "Device Static"),
    6: ("CUDA_MEMOPR_MEMORY_KIND_MANAGED_STATIC", "Managed Static"), 7: ("CUDA_MEMOPR_MEMORY_KIND_UNKNOWN", "Unknown"),
}
_SYNC_TYPE = {
    1: ("CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_EVENT_SYNCHRONIZE", "Event sync"),
    2: ("CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_WAIT_EVENT", "Stream wait sync"),
    3: ("CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_SYNCHRONIZE", "Stream sync"),
    4: ("CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_CONTEXT_SYNCHRONIZE", "Context sync"),
}
_EVENT_CLASS = {1: ("TRACE_PROCESS_EVENT_CUDA_DRIVER", "CUDA driver")}
_SYNC_KIND_OF_TYPE = {
    "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_EVENT_SYNCHRONIZE": "event_sync",
    "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_WAIT_EVENT": "stream_wait_event",
    "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_SYNCHRONIZE": "stream_sync",
    "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_CONTEXT_SYNCHRONIZE": "context_sync",
}
# the raw sync table the reader builds before ranks are assigned
_SYNC_ROW_COLUMNS = ("start", "end", "device", "context", "stream", "correlation", "process", "event", "kind",
                     "wait_on_stream", "record_correlation")


def read_nsys(path: Path, source: str, first_rank: int = 0) -> Trace:
    """Read one export; its ranks are numbered from `first_rank`."""
    try:
        with closing(_Export(Path(path), source)) as export:
            return _read(export, first_rank)
    except sqlite3.DatabaseError as e:
        raise BadInput(source, f"not a readable SQLite database ({e}): is the file truncated or corrupt?") from None


class _Export:
    """An open export: its schema, and queries that return numpy columns."""

    def __init__(self, path: Path, source: str, tables: dict[str, set[str]] | None = None):
        self.path = path
        self.source = source
        # read-only; check_same_thread off because a twin is opened here and queried by a worker thread
        self.con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        self.tables = tables if tables is not None else self._schema()

    def _schema(self) -> dict[str, set[str]]:
        names = [name for (name,) in self.con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: {row[1] for row in self.con.execute(f'PRAGMA table_info("{name}")')} for name in names}

    def twin(self) -> _Export:
        """The same export on a connection of its own, for a worker thread."""
        return _Export(self.path, self.source, self.tables)

    def close(self) -> None:
        self.con.close()

    def has(self, table: str, *columns: str) -> bool:
        return table in self.tables and self.tables[table].issuperset(columns)

    def require(self, table: str, *columns: str) -> None:
        missing = [c for c in columns if c not in self.tables[table]]
        if missing:
            raise BadInput(self.source, f"{table} lacks column(s) {', '.join(missing)}: not an nsys export we can read")

    def rows(self, sql: str, *params: object) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()

    def select(self, table: str, ints: dict[str, str], texts: dict[str, str] | None = None, join: str = "",
               where: str = "", not_null: Sequence[str] = ()) -> pd.DataFrame:
        """Rows of `table` (aliased t) as int64 columns, one per expression in `ints` (NULL becomes
        NO_ID), and object columns for `texts`; both in rowid order, so they line up.

        The file is refused, naming the column and how many rows, where a column holds values that
        are not integers (its text does not parse: so expressions do no arithmetic in SQL, whose
        casts would turn '1e3' into 1 silently) or where a column named in `not_null` that an
        expression reads as it is holds NULL (checked in numpy: NULL comes out as NO_ID; SQL counts
        them only then, so a clean file pays nothing)."""
        rows = (f"SELECT {', '.join(f'COALESCE({e}, {NO_ID}) AS c{i}' for i, e in enumerate(ints.values()))} "
                f"FROM {table} AS t {join} {where} ORDER BY t.rowid")
        aggregates = ", ".join(f"group_concat(c{i}, ' ')" for i in range(len(ints)))
        count, *joined = self.con.execute(f"SELECT count(*), {aggregates} FROM ({rows})").fetchone()
        out = {}
        for (name, expr), text in zip(ints.items(), joined):
            out[name] = _parse_ints(text or "")
            if out[name] is None or out[name].size != count:
                self._not_integers(table, expr, join, where)
            whole = _COLUMN_REF.fullmatch(expr)
            if whole and whole.group(2) in not_null and (out[name] == NO_ID).any():
                self._nulls(table, whole.group(2), join, where)
        for name, expr in (texts or {}).items():
            query = f"SELECT {expr} FROM {table} AS t {join} {where} ORDER BY t.rowid"
            out[name] = np.array([v for (v,) in self.con.execute(query)], dtype=object)
        return pd.DataFrame(out)

    def _not_integers(self, table: str, expr: str, join: str, where: str) -> None:
        """Refuse the file for the values that are not integers in the columns `expr` reads."""
        for column in dict.fromkeys(m.group(2) for m in _COLUMN_REF.finditer(expr)):
            odd = f"typeof(t.{_quoted(column)}) NOT IN ('integer', 'null')"
            n, example = self.con.execute(f"SELECT count(*), min(t.{_quoted(column)}) FROM {table} AS t {join} "
                                          f"{f'{where} AND {odd}' if where else f'WHERE {odd}'}").fetchone()
            if n:
                raise BadInput(self.source, f"{table}: {column} holds values that are not integers "
                                            f"({_rows(n)}, e.g. {str(example)[:40]!r})")
        raise BadInput(self.source, f"{table}: {expr.removeprefix('t.')} holds values that are not integers")

    def _nulls(self, table: str, column: str, join: str, where: str) -> None:
        """Refuse the file for a column that says where rows ran and is NULL (or -1) in some."""
        is_null = f"t.{_quoted(column)} IS NULL"
        n, = self.con.execute(f"SELECT count(*) FROM {table} AS t {join} "
                              f"{f'{where} AND {is_null}' if where else f'WHERE {is_null}'}").fetchone()
        if n:
            raise BadInput(self.source, f"{table}: {column} is NULL in {_rows(n)}: cannot tell where they ran")
        n, = self.con.execute(f"SELECT count(*) FROM {table} AS t {join} "
                              f"{f'{where} AND' if where else 'WHERE'} t.{_quoted(column)} = {NO_ID}").fetchone()
        if n:
            raise BadInput(self.source, f"{table}: {column} is {NO_ID} in {_rows(n)}: cannot tell where they ran")

    def strings(self, ids: np.ndarray) -> dict[int, str | None]:
        """StringIds values of the given (distinct) ids, in chunks that fit SQLite's oldest limit
        on query parameters."""
        if "StringIds" not in self.tables:
            return {}
        found: dict[int, str | None] = {}
        for first in range(0, ids.size, _MAX_PARAMS):
            chunk = ids[first:first + _MAX_PARAMS].tolist()
            marks = ", ".join("?" * len(chunk))
            found.update(self.rows(f"SELECT id, value FROM StringIds WHERE id IN ({marks})", *chunk))
        return found

    def names(self, table: str, column: str, codes: np.ndarray, ids: np.ndarray) -> list[str]:
        """The StringIds text of each distinct id (`codes` index `ids` per row); an id StringIds
        lacks, or holds as NULL, refuses the file."""
        text = self.strings(ids)
        lacking = np.fromiter((text.get(i) is None for i in ids.tolist()), dtype=bool, count=ids.size)
        if lacking.any():
            rows = int(lacking[codes].sum())
            null = [i for i in ids[lacking].tolist() if i in text]
            if null:
                raise BadInput(self.source, f"StringIds: value is NULL for id {null[0]}, which names {_rows(rows)} "
                                            f"of {table} ({column})")
            first = ids[lacking][0]
            raise BadInput(self.source, f"{table}: {column} names string ids that StringIds lacks in {_rows(rows)} "
                                        f"(e.g. id {first}): names would be missing")
        return [text[i] for i in ids.tolist()]

    def enum(self, table: str, fallback: dict[int, tuple[str, str]]) -> dict[int, tuple[str, str]]:
        """An ENUM_* table as id -> (name, label), or CUPTI's numbering when the export has none."""
        if not self.has(table, "id", "name", "label"):
            return fallback
        return {i: (name or "", label or "") for i, name, label in self.rows(f"SELECT id, name, label FROM {table}")}

    def process_of(self, table: str, column: str) -> str:
        """SQL for the globalPid (or globalTid) of a row of `table`; its process key is that >> 24,
        taken in numpy (in SQL, `'1e3' >> 24` would be a silent 0)."""
        if column in self.tables[table]:
            return f"t.{column}"
        return str(self.sole_process() << _ID_BITS)

    def sole_process(self) -> int:
        """Hand-trimmed exports may drop globalPid from GPU rows: then they can only belong to the
        one process that made CUDA calls."""
        if not self.has(RUNTIME, "globalTid"):
            return 0
        found = self.rows(f"SELECT DISTINCT globalTid >> {_ID_BITS} FROM {RUNTIME}")
        if len(found) > 1:
            raise BadInput(self.source, f"GPU activity has no globalPid and {len(found)} processes made CUDA calls: "
                                        "cannot tell which process ran which kernel")
        return int(found[0][0]) if found else 0


def _read(export: _Export, first_rank: int) -> Trace:
    if KERNELS not in export.tables:
        raise BadInput(export.source, "no CUDA kernel table: was the report captured with -t cuda?")
    dropped: dict[str, int] = {}
    ops, calls, ranges = _read_side_by_side(export, dropped)
    syncs = _syncs(export, ops, calls, dropped)
    ranks = _Ranks.of(ops, first_rank)
    return Trace(
        ranks=_rank_infos(export, ranks, dropped),
        gpu_ops=_gpu_op_frame(ops, ranks),
        host_calls=_host_call_frame(calls, ranks),
        syncs=_sync_frame(syncs, ranks),
        ranges=_range_frame(ranges, ranks),
        collectives=_nccl_collectives(ops, calls, ranges, ranks),
    )


def _read_side_by_side(export: _Export, dropped: dict[str, int]
                       ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """GPU ops on a second connection while host calls and ranges are read: SQLite releases the
    GIL while it scans, so the two big tables are read at once on two cores."""
    with closing(export.twin()) as twin, ThreadPoolExecutor(1) as pool:
        gpu_dropped: dict[str, int] = {}
        ops = pool.submit(_gpu_ops, twin, gpu_dropped)
        calls = _host_calls(export, dropped)
        ranges = _nvtx_ranges(export)
        ops = ops.result()
        dropped.update(gpu_dropped)
        return ops, calls, ranges


def _complete(rows: pd.DataFrame, what: str, dropped: dict[str, int]) -> pd.DataFrame:
    """`rows` without those whose start or end is NULL (_NULL_TIME, as _timed_rows reads them) or
    whose end comes before their start; each kind counted in `dropped` as "<what> rows ..."."""
    incomplete = (rows["start"].to_numpy() == _NULL_TIME) | (rows["end"].to_numpy() == _NULL_TIME)
    backwards = (rows["end"].to_numpy() < rows["start"].to_numpy()) & ~incomplete
    for bad, why in ((incomplete, "with NULL start or end"), (backwards, "that end before they start")):
        if bad.any():
            dropped[f"{what} rows {why}"] = dropped.get(f"{what} rows {why}", 0) + int(bad.sum())
    bad = incomplete | backwards
    return rows[~bad].reset_index(drop=True) if bad.any() else rows


# --- GPU ops -------------------------------------------------------------------------------------

def _gpu_ops(export: _Export, dropped: dict[str, int]) -> pd.DataFrame:
    """Kernels, memcpys and memsets: start, end, device, context, stream, correlation, process,
    kind (codes into GPU_OP_KINDS) and name (categorical). Rows without a usable start and end
    are left out and counted in `dropped`."""
    parts: list[pd.DataFrame] = []
    labels: list[str] = []
    for kind, table, read in (("kernel", KERNELS, _kernel_rows), ("memcpy", MEMCPYS, _memcpy_rows),
                              ("memset", MEMSETS, _memset_rows)):
        if table not in export.tables:
            continue
        export.require(table, "start", "end", "deviceId", "streamId")
        rows, names = read(export, kind, dropped)
        rows["name"] += len(labels)
        rows["kind"] = np.int8(GPU_OP_KINDS.index(kind))
        parts.append(rows)
        labels.extend(names)
    ops = pd.concat(parts, ignore_index=True)
    ops["name"] = _categorical(ops["name"].to_numpy(), labels)
    return ops


def _op_exprs(export: _Export, table: str) -> dict[str, str]:
    """Columns every GPU activity table has (the sync tables too); old exports may lack some."""
    columns = export.tables[table]
    return {
        "start": "t.start",
        "end": 't."end"',
        "device": "t.deviceId",
        "context": "t.contextId" if "contextId" in columns else str(NO_ID),
        "stream": "t.streamId",
        "correlation": "t.correlationId" if "correlationId" in columns else str(NO_ID),
        "process": export.process_of(table, "globalPid"),
    }


def _timed_rows(export: _Export, table: str, ints: dict[str, str], what: str, dropped: dict[str, int]
                ) -> pd.DataFrame:
    """select() of a table with start and end (and, from _op_exprs, a globalPid in `process`,
    turned into its process key), without its rows that have no usable time."""
    null_time = f"({_NULL_TIME + 1} - 1)"  # SQLite reads the literal -2**63 as a REAL
    timed = {**ints, "start": f"COALESCE({ints['start']}, {null_time})", "end": f"COALESCE({ints['end']}, {null_time})"}
    rows = export.select(table, timed, not_null=_PLACE)
    if "process" in rows and table != RUNTIME:
        rows["process"] = rows["process"].to_numpy() >> _ID_BITS
    return _complete(rows, what, dropped)


def _kernel_rows(export: _Export, kind: str, dropped: dict[str, int]) -> tuple[pd.DataFrame, list[str]]:
    """Kernels named by demangledName, else shortName (both StringIds ids)."""
    name_columns = [f"t.{c}" for c in ("demangledName", "shortName") if c in export.tables[KERNELS]]
    if not name_columns:
        raise BadInput(export.source, f"{KERNELS} has neither demangledName nor shortName: no kernel names")
    rows = _timed_rows(export, KERNELS, {**_op_exprs(export, KERNELS), "name": f"COALESCE({', '.join(name_columns)})"},
                       kind, dropped)
    codes, ids = pd.factorize(rows["name"].to_numpy())
    rows["name"] = codes
    return rows, export.names(KERNELS, "/".join(c.removeprefix("t.") for c in name_columns), codes, ids)


def _memcpy_rows(export: _Export, kind: str, dropped: dict[str, int]) -> tuple[pd.DataFrame, list[str]]:
    """Named as Kineto names them: "Memcpy DtoD (Device -> Device)"."""
    export.require(MEMCPYS, "copyKind")
    rows = _timed_rows(export, MEMCPYS, {**_op_exprs(export, MEMCPYS), "name": "t.copyKind"}, kind, dropped)
    codes, kinds = pd.factorize(rows["name"].to_numpy())
    oper = export.enum("ENUM_CUDA_MEMCPY_OPER", _MEMCPY_OPER)
    rows["name"] = codes
    return rows, [_memcpy_name(*oper.get(k, (f"CUDA_MEMCPY_KIND_{k}", "Unknown"))) for k in kinds.tolist()]


def _memcpy_name(enum_name: str, label: str) -> str:
    short = enum_name.removeprefix("CUDA_MEMCPY_KIND_").replace("TO", "to")  # HTOD -> HtoD
    return f"Memcpy {short} ({label.replace('-to-', ' -> ')})"


def _memset_rows(export: _Export, what: str, dropped: dict[str, int]) -> tuple[pd.DataFrame, list[str]]:
    """Named as Kineto names them: "Memset (Device)"."""
    kind = "t.memKind" if "memKind" in export.tables[MEMSETS] else str(NO_ID)
    rows = _timed_rows(export, MEMSETS, {**_op_exprs(export, MEMSETS), "name": kind}, what, dropped)
    codes, kinds = pd.factorize(rows["name"].to_numpy())
    mem_kind = export.enum("ENUM_CUDA_MEM_KIND", _MEM_KIND)
    rows["name"] = codes
    return rows, [f"Memset ({mem_kind[k][1]})" if k in mem_kind else "Memset" for k in kinds.tolist()]


def _gpu_op_frame(ops: pd.DataFrame, ranks: _Ranks) -> pd.DataFrame:
    return frame_from_columns(
        {
            "rank": ranks.of_ops,
            "device": ops["device"].to_numpy(),
            "stream": ops["stream"].to_numpy(),
            "kind": pd.Categorical.from_codes(ops["kind"].to_numpy(), dtype=GPU_OP_COLUMNS["kind"]),
            "start": ops["start"].to_numpy(),
            "end": ops["end"].to_numpy(),
            "name": ops["name"].array,
            "correlation": ops["correlation"].to_numpy(),
        },
        GPU_OP_COLUMNS,
    )


# --- ranks ---------------------------------------------------------------------------------------

@dataclass
class _Ranks:
    """The ranks, in order, each a (process, device) pair with GPU work, and the rank of every GPU op.

    A process that ran kernels on a device is a rank there. Copies and memsets a process made on
    a device where it ran no kernel (a peer copy into another rank's GPU, CUDA IPC set-up) belong
    to the rank where it ran the most ops, so they do not invent a rank of their own."""

    process: np.ndarray  # per rank
    device: np.ndarray  # per rank
    numbers: np.ndarray  # per rank
    of_ops: np.ndarray  # per GPU op
    _pair_index: pd.MultiIndex  # every (process, device) with GPU work ...
    _pair_rank: np.ndarray  # ... and its rank

    @classmethod
    def of(cls, ops: pd.DataFrame, first_rank: int) -> _Ranks:
        keys = pd.DataFrame({"process": ops["process"], "device": ops["device"],
                             "kernel": ops["kind"].to_numpy() == GPU_OP_KINDS.index("kernel")})
        pairs = keys.groupby(["process", "device"], sort=True).agg(ops=("kernel", "size"), kernels=("kernel", "sum"))
        pairs = pairs.reset_index()
        ran_kernels = pairs.groupby("process")["kernels"].transform("sum").to_numpy() > 0
        own = (pairs["kernels"].to_numpy() > 0) | ~ran_kernels
        busiest = pairs[own].sort_values(["ops", "device"], ascending=[False, True]).drop_duplicates("process")
        home = busiest.set_index("process")["device"]
        # a folded pair takes the device of its process's busiest own pair
        home_of_pair = np.where(own, pairs["device"].to_numpy(),
                                home.reindex(pairs["process"]).to_numpy())
        rank_pairs = pairs[own].assign(pid=lambda d: d["process"] & _ID_MASK).sort_values(
            ["device", "pid", "process"], kind="stable")
        rank_index = pd.MultiIndex.from_frame(rank_pairs[["process", "device"]])
        pair_rank = first_rank + rank_index.get_indexer(
            pd.MultiIndex.from_arrays([pairs["process"].to_numpy(), home_of_pair]))
        pair_index = pd.MultiIndex.from_frame(pairs[["process", "device"]])
        of_ops = pair_rank[pair_index.get_indexer(pd.MultiIndex.from_frame(keys[["process", "device"]]))]
        return cls(process=rank_pairs["process"].to_numpy(), device=rank_pairs["device"].to_numpy(),
                   numbers=first_rank + np.arange(len(rank_pairs)), of_ops=of_ops,
                   _pair_index=pair_index, _pair_rank=pair_rank)

    def of_pairs(self, process: np.ndarray, device: np.ndarray) -> np.ndarray:
        """The rank of each (process, device), NO_ID where that pair ran no GPU work."""
        found = self._pair_index.get_indexer(pd.MultiIndex.from_arrays([process, device]))
        return _take(self._pair_rank, found, NO_ID)

    def spread(self, process: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, rank) for each row and each rank of the row's process: host rows belong to every
        rank of their process; rows of processes without GPU work drop out."""
        order = np.argsort(self.process, kind="stable")
        by_process = self.process[order]
        lo = np.searchsorted(by_process, process, side="left")
        count = np.searchsorted(by_process, process, side="right") - lo
        rows = np.repeat(np.arange(process.size), count)
        nth = np.arange(rows.size) - np.repeat(np.cumsum(count) - count, count)
        return rows, self.numbers[order][np.repeat(lo, count) + nth]


def _rank_infos(export: _Export, ranks: _Ranks, dropped: dict[str, int]) -> list[RankInfo]:
    versions = _nsys_version(export)
    gpu_name = _gpu_names(export)
    infos = []
    for rank, process, device in zip(ranks.numbers.tolist(), ranks.process.tolist(), ranks.device.tolist()):
        pid = process & _ID_MASK
        infos.append(RankInfo(rank=rank, source=export.source, device=device, pid=pid, gpu_name=gpu_name(pid, device),
                              format="nsys", versions=dict(versions), dropped_rows=dict(sorted(dropped.items()))))
    return infos


def _nsys_version(export: _Export) -> dict[str, str]:
    for table in ("META_DATA_EXPORT", "EXPORT_META_DATA"):  # the latter in 2022-era exports
        if export.has(table, "name", "value"):
            found = export.rows(f"SELECT value FROM {table} WHERE name = 'EXPORT_PRODUCT_VERSION'")
            if found:
                return {"nsys": str(found[0][0])}
    return {}


def _gpu_names(export: _Export) -> Callable[[int, int], str | None]:
    """A (pid, CUDA device) -> GPU name lookup. TARGET_INFO_CUDA_DEVICE maps a process's CUDA device
    to nsys's GPU id (they differ under CUDA_VISIBLE_DEVICES); without it, TARGET_INFO_GPU's
    cuDevice (or, in trimmed files, its id) is taken as the CUDA device."""
    if not export.has("TARGET_INFO_GPU", "id", "name"):
        return lambda pid, device: None
    by_gpu_id = dict(export.rows("SELECT id, name FROM TARGET_INFO_GPU"))
    cuda_column = "cuDevice" if export.has("TARGET_INFO_GPU", "cuDevice") else "id"
    by_cuda_device = dict(export.rows(f"SELECT {cuda_column}, name FROM TARGET_INFO_GPU"))
    gpu_of = {}
    if export.has("TARGET_INFO_CUDA_DEVICE", "gpuId", "cudaId", "pid"):
        rows = export.rows("SELECT gpuId, cudaId, pid FROM TARGET_INFO_CUDA_DEVICE")
        gpu_of = {(pid, cuda): gpu for gpu, cuda, pid in rows}

    def name(pid: int, device: int) -> str | None:
        if (pid, device) in gpu_of:
            return by_gpu_id.get(gpu_of[pid, device])
        return by_cuda_device.get(device)

    return name


# --- host calls ----------------------------------------------------------------------------------

def _host_calls(export: _Export, dropped: dict[str, int]) -> pd.DataFrame:
    """CUDA runtime and driver calls (one table; eventClass tells them apart): start, end,
    process, tid, correlation, api (codes into HOST_APIS), name (categorical)."""
    if RUNTIME not in export.tables:
        return _empty(("start", "end", "process", "tid", "correlation", "api"), ("name",))
    export.require(RUNTIME, "start", "end", "globalTid", "correlationId", "nameId")
    calls = _timed_rows(export, RUNTIME, {
        "start": "t.start",
        "end": 't."end"',
        "process": "t.globalTid",  # split below: one column out of SQLite instead of two
        "correlation": "t.correlationId",
        "name": "t.nameId",
        "event_class": "t.eventClass" if "eventClass" in export.tables[RUNTIME] else str(NO_ID),
    }, "CUDA API call", dropped)
    global_tid = calls["process"].to_numpy()
    calls["process"], calls["tid"] = global_tid >> _ID_BITS, global_tid & _ID_MASK
    classes = export.enum("ENUM_NSYS_EVENT_CLASS", _EVENT_CLASS)
    driver = [i for i, (name, _) in classes.items() if name == "TRACE_PROCESS_EVENT_CUDA_DRIVER"]
    is_driver = np.isin(calls.pop("event_class").to_numpy(), driver)
    calls["api"] = np.where(is_driver, HOST_APIS.index("driver"), HOST_APIS.index("runtime"))
    codes, ids = pd.factorize(calls["name"].to_numpy())
    text = export.names(RUNTIME, "nameId", codes, ids)
    calls["name"] = _categorical(codes, [_API_VERSION_SUFFIX.sub("", t) for t in text])
    return calls


def _host_call_frame(calls: pd.DataFrame, ranks: _Ranks) -> pd.DataFrame:
    rows, rank = ranks.spread(calls["process"].to_numpy())
    return frame_from_columns(
        {
            "rank": rank,
            "pid": calls["process"].to_numpy()[rows] & _ID_MASK,
            "tid": calls["tid"].to_numpy()[rows],
            "start": calls["start"].to_numpy()[rows],
            "end": calls["end"].to_numpy()[rows],
            "name": calls["name"].array[rows],
            "correlation": calls["correlation"].to_numpy()[rows],
            "api": pd.Categorical.from_codes(calls["api"].to_numpy()[rows], dtype=HOST_CALL_COLUMNS["api"]),
        },
        HOST_CALL_COLUMNS,
    )


# --- NVTX ranges ---------------------------------------------------------------------------------

def _nvtx_ranges(export: _Export) -> pd.DataFrame:
    """Push/pop and start/end ranges: start, end, process, tid (of the thread that opened it),
    domain_id, name and domain (categoricals). A range that was never closed (NULL end: still open
    when the capture stopped) has no extent to measure and is dropped."""
    if NVTX not in export.tables:
        return _empty(("start", "end", "process", "tid", "domain_id"), ("name", "domain"))
    export.require(NVTX, "start", "end", "eventType", "globalTid")
    ranges = export.select(
        NVTX,
        {
            "start": "t.start",
            "end": 't."end"',
            "process": "t.globalTid",  # split below: in SQL, `'1e3' >> 24` would be a silent 0
            "domain_id": "COALESCE(t.domainId, 0)" if "domainId" in export.tables[NVTX] else "0",  # NULL: default
        },
        texts={"name": _nvtx_text(export)},
        join=_join_strings(export),
        where=f'WHERE t.eventType IN ({_NVTX_PUSH_POP}, {_NVTX_START_END}) AND t."end" IS NOT NULL',
        not_null=_PLACE,
    )
    global_tid = ranges["process"].to_numpy()
    ranges["process"] = global_tid >> _ID_BITS
    ranges.insert(3, "tid", global_tid & _ID_MASK)
    lacking = int(pd.isna(ranges["name"]).sum())  # a textId whose string StringIds lacks or holds as NULL
    if lacking:
        raise BadInput(export.source, f"{NVTX}: textId names strings that StringIds lacks or holds as NULL "
                                      f"in {_rows(lacking)}: range names would be missing")
    codes, names = pd.factorize(ranges["name"].to_numpy())
    ranges["name"] = _categorical(codes, list(names))
    ranges["domain"] = _domain_names(export, ranges)
    return ranges


def _nvtx_text(export: _Export) -> str:
    """A range's name: its text, else its registered string (textId); NULL when it has a textId
    that StringIds lacks (or holds as NULL), "" when it has neither."""
    sources = ["t.text"] if "text" in export.tables[NVTX] else []
    sources += ["s.value", "CASE WHEN t.textId IS NULL THEN '' END"] if _join_strings(export) else ["''"]
    return f"CAST(COALESCE({', '.join(sources)}) AS TEXT)"


def _join_strings(export: _Export) -> str:
    if export.has(NVTX, "textId") and "StringIds" in export.tables:
        return "LEFT JOIN StringIds AS s ON s.id = t.textId"
    return ""


def _domain_names(export: _Export, ranges: pd.DataFrame) -> pd.Categorical:
    """Domain ids are per process, named by their domain-create row (eventType 75). The default
    domain (0) is ""; a domain whose create row is not in the export (a trimmed capture window,
    as in the corpus's nsys-ai files) is "domain N"."""
    named: dict[tuple[int, int], str] = {}
    if "domainId" in export.tables[NVTX]:
        named = {(process, domain): name for process, domain, name in export.rows(
            f"SELECT t.globalTid >> {_ID_BITS}, t.domainId, {_nvtx_text(export)} FROM {NVTX} AS t "
            f"{_join_strings(export)} WHERE t.eventType = {_NVTX_DOMAIN_CREATE}")}
    codes, distinct = pd.factorize(pd.MultiIndex.from_arrays([ranges["process"], ranges["domain_id"]]))
    labels = ["" if domain == 0 else named.get((process, domain), f"domain {domain}") for process, domain in distinct]
    return _categorical(codes, labels)


def _range_frame(ranges: pd.DataFrame, ranks: _Ranks) -> pd.DataFrame:
    rows, rank = ranks.spread(ranges["process"].to_numpy())
    names = ranges["name"].array[rows]
    is_step = names_matching(names, _PROFILER_STEP)
    source = np.where(is_step, RANGE_SOURCES.index("profiler_step"), RANGE_SOURCES.index("nvtx"))
    return frame_from_columns(
        {
            "rank": rank,
            "pid": ranges["process"].to_numpy()[rows] & _ID_MASK,
            "tid": ranges["tid"].to_numpy()[rows],
            "start": ranges["start"].to_numpy()[rows],
            "end": ranges["end"].to_numpy()[rows],
            "name": names,
            "source": pd.Categorical.from_codes(source, dtype=RANGE_COLUMNS["source"]),
            "domain": ranges["domain"].array[rows],
        },
        RANGE_COLUMNS,
    )


# --- synchronisation -----------------------------------------------------------------------------

def _syncs(export: _Export, ops: pd.DataFrame, calls: pd.DataFrame, dropped: dict[str, int]) -> pd.DataFrame:
    """Sync and event-record rows of every process (start, end, process, device, stream, event,
    kind, correlation, wait_on_stream, record_correlation), linked before ranks are assigned:
    an event may be recorded on one GPU and awaited on another."""
    records = _event_records(export, calls)
    rows = _kind_from_call(_sync_rows(export, dropped), calls)
    syncs = pd.concat([records, _link_to_records(rows, records)], ignore_index=True)
    syncs["device"] = _device_of_context(ops, syncs)
    return syncs


def _sync_rows(export: _Export, dropped: dict[str, int]) -> pd.DataFrame:
    """CUPTI_ACTIVITY_KIND_SYNCHRONIZATION. 2025.1 and later carry deprecatedSyncType beside
    syncType (every corpus file fills syncType and leaves deprecatedSyncType NULL) and eventSyncId;
    2024.6 has syncType alone."""
    if SYNCHRONIZATION not in export.tables:
        return _empty(_SYNC_ROW_COLUMNS)
    export.require(SYNCHRONIZATION, "start", "end", "deviceId", "streamId", "syncType")
    columns = export.tables[SYNCHRONIZATION]
    rows = _timed_rows(export, SYNCHRONIZATION, {
        **_op_exprs(export, SYNCHRONIZATION),
        "event": "t.eventId" if "eventId" in columns else str(NO_ID),
        "type": "COALESCE(t.syncType, t.deprecatedSyncType)" if "deprecatedSyncType" in columns else "t.syncType",
    }, "sync", dropped)
    kind_of_type = {i: SYNC_KINDS.index(_SYNC_KIND_OF_TYPE[name])
                    for i, (name, _) in export.enum("ENUM_CUPTI_SYNC_TYPE", _SYNC_TYPE).items()
                    if name in _SYNC_KIND_OF_TYPE}
    kind = rows.pop("type").map(kind_of_type)
    rows = rows[kind.notna().to_numpy()].assign(kind=kind.dropna().astype(np.int8))  # "unknown" syncs name nothing
    return _with_wait_columns(rows)


# the CUDA call behind a sync row says what it was (names without nsys's _vNNNN suffix)
_SYNC_KIND_OF_CALL = {
    "cudaStreamSynchronize": "stream_sync", "cuStreamSynchronize": "stream_sync",
    "cudaStreamWaitEvent": "stream_wait_event", "cuStreamWaitEvent": "stream_wait_event",
    "cudaEventSynchronize": "event_sync", "cuEventSynchronize": "event_sync",
    "cudaEventQuery": "event_sync", "cuEventQuery": "event_sync",
    "cudaDeviceSynchronize": "context_sync", "cuCtxSynchronize": "context_sync",
}


def _kind_from_call(rows: pd.DataFrame, calls: pd.DataFrame) -> pd.DataFrame:
    """Each sync row's kind as its CUDA call names it. Several exports (nvidia-fuser's 2024.6 and
    2025.1 files, ours from 2025.3 with CUDA 13) type every cudaStreamSynchronize as a stream
    wait event (syncType 2, no event id); taken at its word, a host synchronize would order
    nothing. Rows whose call is not in the export keep their syncType."""
    if not len(rows) or not len(calls):
        return rows
    named = calls[["process", "correlation", "name"]].drop_duplicates(["process", "correlation"])
    found = pd.MultiIndex.from_frame(named[["process", "correlation"]]).get_indexer(
        pd.MultiIndex.from_frame(rows[["process", "correlation"]]))
    call_kind = named["name"].astype(str).map(lambda n: SYNC_KINDS.index(_SYNC_KIND_OF_CALL[n])
                                              if n in _SYNC_KIND_OF_CALL else NO_ID).to_numpy()
    kind = _take(call_kind, found, NO_ID)
    return rows.assign(kind=np.where(kind != NO_ID, kind, rows["kind"].to_numpy()).astype(np.int8))


def _event_records(export: _Export, calls: pd.DataFrame) -> pd.DataFrame:
    """CUPTI_ACTIVITY_KIND_CUDA_EVENT rows, timed by their cudaEventRecord call (same process and
    correlation id) as Kineto times its event records. Their own `timestamp` is a device-side
    completion time, 0 unless collected, so a record whose call is not in the export is dropped."""
    if CUDA_EVENTS not in export.tables:
        return _empty(_SYNC_ROW_COLUMNS)
    export.require(CUDA_EVENTS, "deviceId", "streamId", "correlationId", "eventId")
    exprs = {k: v for k, v in _op_exprs(export, CUDA_EVENTS).items() if k not in ("start", "end")}
    records = export.select(CUDA_EVENTS, {**exprs, "event": "t.eventId"}, not_null=_PLACE)
    records["process"] = records["process"].to_numpy() >> _ID_BITS
    record_calls = calls[np.isin(calls["correlation"].to_numpy(), records["correlation"].to_numpy())]
    records = records.merge(record_calls[["process", "correlation", "start", "end"]], on=["process", "correlation"])
    return _with_wait_columns(records.assign(kind=np.int8(SYNC_KINDS.index("event_record"))))


def _with_wait_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """CUPTI's "not applicable" ids become NO_ID; the wait columns start empty."""
    for column in ("stream", "event", "device"):
        rows[column] = np.where(rows[column].to_numpy() == _CUPTI_INVALID, NO_ID, rows[column].to_numpy())
    return rows.assign(wait_on_stream=NO_ID, record_correlation=NO_ID).reset_index(drop=True)


def _link_to_records(waits: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """For each stream_wait_event / event_sync: the stream and correlation id of the latest record
    of the same event, in the same process, made before it (what Kineto gives as wait_on_stream
    and wait_on_cuda_event_record_corr_id)."""
    is_wait = (waits["kind"].isin([SYNC_KINDS.index(k) for k in ("stream_wait_event", "event_sync")]).to_numpy()
               & (waits["event"].to_numpy() != NO_ID))
    if not is_wait.any() or len(records) == 0:
        return waits
    asking = waits.loc[is_wait, ["process", "event", "start"]].reset_index().sort_values("start", kind="stable")
    recorded = records[["process", "event", "start", "stream", "correlation"]].sort_values("start", kind="stable")
    found = pd.merge_asof(asking, recorded, on="start", by=["process", "event"], allow_exact_matches=False)
    found = found.dropna(subset=["stream"])
    waits = waits.copy()
    waits.loc[found["index"], "wait_on_stream"] = found["stream"].astype(np.int64).to_numpy()
    waits.loc[found["index"], "record_correlation"] = found["correlation"].astype(np.int64).to_numpy()
    return waits


def _device_of_context(ops: pd.DataFrame, syncs: pd.DataFrame) -> np.ndarray:
    """The device of each sync row's context. nsys 2026.2 writes deviceId 0 on the sync rows of a
    process whose context runs on device 1 (mfu_2gpu_*.sqlite, h100_2gpu_1s.sqlite), while that
    context's GPU ops carry the right deviceId: trust the ops, and the row's own deviceId only
    for a context that ran no GPU op."""
    contexts = ops[["process", "context", "device"]].drop_duplicates(["process", "context"])
    contexts = contexts[contexts["context"].to_numpy() != NO_ID]
    found = pd.MultiIndex.from_frame(contexts[["process", "context"]]).get_indexer(
        pd.MultiIndex.from_frame(syncs[["process", "context"]]))
    return _take(contexts["device"].to_numpy(), found, syncs["device"].to_numpy())


def _sync_frame(syncs: pd.DataFrame, ranks: _Ranks) -> pd.DataFrame:
    """A sync row belongs to the rank of its (process, device); rows on a device where the
    process ran no GPU work order nothing and are dropped."""
    rank = ranks.of_pairs(syncs["process"].to_numpy(), syncs["device"].to_numpy())
    kept = syncs[rank != NO_ID]
    return frame_from_columns(
        {
            "rank": rank[rank != NO_ID],
            "kind": pd.Categorical.from_codes(kept["kind"].to_numpy(), dtype=SYNC_COLUMNS["kind"]),
            **{c: kept[c].to_numpy() for c in ("start", "end", "device", "stream", "event", "wait_on_stream",
                                                "record_correlation", "correlation")},
        },
        SYNC_COLUMNS,
    )


# --- NCCL collectives ----------------------------------------------------------------------------

def _nccl_collectives(ops: pd.DataFrame, calls: pd.DataFrame, ranges: pd.DataFrame, ranks: _Ranks) -> pd.DataFrame:
    """One row per NCCL kernel whose NCCL calls are in the export's NVTX ranges (NCCL's own,
    non-default domain): collective = those calls' names ("ncclAllReduce", or "ncclRecv+ncclSend"
    for a group), correlation = the kernel's. A call's kernel is the first NCCL kernel launched on
    its thread at or after the call began, from inside an NCCL range (the call itself, or the
    ncclGroupEnd that flushes a group). NCCL's payloads (communicator, message size) are not in
    the exports (binaryData is NULL), so process_group, sizes and dtype stay empty."""
    nccl = ranges[(ranges["domain_id"].to_numpy() != 0) & names_matching(ranges["name"].array, _NCCL_RANGE)]
    if len(nccl) == 0:
        return frame_from_columns({}, COLLECTIVE_COLUMNS)
    launches = _launched_inside(_nccl_launches(ops, calls, ranks), nccl)
    nccl_calls = nccl[names_matching(nccl["name"].array, _NCCL_CALL)]
    calls_by_time = nccl_calls[["process", "tid", "start", "name"]].sort_values("start", kind="stable")
    launches_by_time = launches[["process", "tid", "start", "rank", "correlation"]].sort_values("start", kind="stable")
    paired = pd.merge_asof(calls_by_time, launches_by_time, on="start", by=["process", "tid"], direction="forward")
    return _collective_rows(paired.dropna(subset=["rank"]))


def _nccl_launches(ops: pd.DataFrame, calls: pd.DataFrame, ranks: _Ranks) -> pd.DataFrame:
    """Host calls (process, tid, start, correlation) that launched an NCCL kernel, with its rank."""
    kernels = (ops["kind"].to_numpy() == GPU_OP_KINDS.index("kernel")) & names_matching(ops["name"].array, _NCCL_KERNEL)
    nccl_ops = pd.DataFrame({"process": ops["process"].to_numpy()[kernels],
                             "correlation": ops["correlation"].to_numpy()[kernels],
                             "rank": ranks.of_ops[kernels]})
    candidates = calls[np.isin(calls["correlation"].to_numpy(), nccl_ops["correlation"].to_numpy())]
    return candidates[["process", "tid", "start", "correlation"]].merge(nccl_ops, on=["process", "correlation"])


def _launched_inside(launches: pd.DataFrame, nccl: pd.DataFrame) -> pd.DataFrame:
    """The launches made from inside an NCCL range on their thread (NCCL's ranges do not nest, so
    the latest range begun before the launch is the only one that can hold it)."""
    spans = nccl[["process", "tid", "start", "end"]].rename(columns={"end": "range_end"})
    enclosing = pd.merge_asof(launches.sort_values("start", kind="stable"), spans.sort_values("start", kind="stable"),
                              on="start", by=["process", "tid"])
    return enclosing[enclosing["range_end"].to_numpy() > enclosing["start"].to_numpy()]


def _collective_rows(paired: pd.DataFrame) -> pd.DataFrame:
    """Join each kernel's call names without a Python loop over kernels: each distinct name is a
    bit, a kernel the sum of its names' bits, and each distinct sum is spelt once."""
    names, codes = np.unique(paired["name"].astype(str).to_numpy(), return_inverse=True)
    paired = paired.assign(bit=np.left_shift(1, codes.astype(np.int64)))
    per_kernel = (paired.drop_duplicates(["rank", "correlation", "bit"])
                  .groupby(["rank", "correlation"], sort=True)["bit"].sum().reset_index())
    masks = per_kernel["bit"].unique().tolist()
    spelt = {mask: "+".join(n for i, n in enumerate(names) if mask >> i & 1) for mask in masks}
    return frame_from_columns(
        {
            "rank": per_kernel["rank"].to_numpy(),
            "correlation": per_kernel["correlation"].to_numpy(),
            "collective": per_kernel["bit"].map(spelt).to_numpy(),
        },
        COLLECTIVE_COLUMNS,
    )


# --- helpers -------------------------------------------------------------------------------------

def _parse_ints(text: str) -> np.ndarray | None:
    """Space-separated integers, or None where one is not (older numpy warns and stops short
    instead, which the caller's row count catches)."""
    try:
        return np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        return None


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _quoted(column: str) -> str:
    return f'"{column}"'


def _take(values: np.ndarray, index: np.ndarray, missing: np.ndarray | int) -> np.ndarray:
    """values[index], and `missing` where index is -1 (get_indexer's "not found")."""
    if values.size == 0:
        return np.broadcast_to(missing, index.shape).copy()
    return np.where(index >= 0, values[index], missing)


def _categorical(codes: np.ndarray, labels: Sequence[str]) -> pd.Categorical:
    """Codes into `labels`, which may repeat (two ids with one text): repeats become one category."""
    distinct, remap = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    return pd.Categorical.from_codes(remap[codes], categories=pd.Index(distinct.tolist()))


def _empty(ints: Sequence[str], names: Sequence[str] = ()) -> pd.DataFrame:
    """A raw table with no rows, for an export that lacks the table."""
    empty = np.empty(0, np.int64)
    return pd.DataFrame({**{c: empty for c in ints}, **{c: _categorical(empty, []) for c in names}})
