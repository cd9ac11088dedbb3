"""The captured data: one `Trace` per run, columnar frames in int64 nanoseconds.

Every reader (Kineto, Nsight Systems) produces the same frames, so every analysis works on
both. Each frame carries a `rank` column; a run's ranks are concatenated, and analyses group
by rank. Columns are fixed here, in one place, so readers and analyses agree on them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# Kinds of GPU work a reader can emit.
GPU_OP_KINDS = ("kernel", "memcpy", "memset")
# Classes of GPU ops (DESIGN.md, "GPU op classes"); `sync` is host-side and lives in `syncs`.
# fused: communication inside a compute kernel (an all-reduce fused with a norm): neither comm nor compute
OP_CLASSES = ("comm", "compute", "memory", "fused")
# Sync record kinds, named after CUDA's own calls.
SYNC_KINDS = ("event_record", "stream_wait_event", "event_sync", "stream_sync", "context_sync")
# Where a host range came from.
RANGE_SOURCES = ("nvtx", "user_annotation", "gpu_user_annotation", "cpu_op", "profiler_step")
HOST_APIS = ("runtime", "driver")

NO_ID = -1  # missing stream / correlation / event / thread, as int64

# column -> dtype; "category" columns hold names, everything else is int64 unless stated.
GPU_OP_COLUMNS: dict[str, Any] = {
    "rank": "int32",
    "device": "int32",
    "stream": "int64",
    "kind": pd.CategoricalDtype(GPU_OP_KINDS),
    "start": "int64",
    "end": "int64",
    "name": "category",
    "correlation": "int64",
    "op_class": pd.CategoricalDtype(OP_CLASSES),
    "family": "category",  # the communication family (trace/taxonomy.py) of a comm/fused op, else ""
}
HOST_CALL_COLUMNS: dict[str, Any] = {
    "rank": "int32",
    "pid": "int64",
    "tid": "int64",
    "start": "int64",
    "end": "int64",
    "name": "category",
    "correlation": "int64",
    "api": pd.CategoricalDtype(HOST_APIS),
    "external_id": "int64",
}
SYNC_COLUMNS: dict[str, Any] = {
    "rank": "int32",
    "kind": pd.CategoricalDtype(SYNC_KINDS),
    "start": "int64",
    "end": "int64",
    "device": "int32",
    # the stream that waits (stream_wait_event), is synchronised (stream_sync) or records (event_record)
    "stream": "int64",
    "event": "int64",  # CUDA event id where the source has one
    # stream_wait_event / event_sync: the stream the awaited event was recorded on ...
    "wait_on_stream": "int64",
    # ... and the correlation id of that cudaEventRecord call
    "record_correlation": "int64",
    "correlation": "int64",  # the API call that made this record
}
RANGE_COLUMNS: dict[str, Any] = {
    "rank": "int32",
    "pid": "int64",
    "tid": "int64",
    "start": "int64",
    "end": "int64",
    "name": "category",
    "source": pd.CategoricalDtype(RANGE_SOURCES),
    "domain": "category",  # NVTX domain ("" for the default domain and for Kineto ranges)
    "stream": "int64",  # gpu_user_annotation only
    "external_id": "int64",  # Kineto "External id" (links cpu_op -> runtime call)
    "record_function_id": "int64",  # Kineto "Record function id" (links cpu_op -> Execution Trace node)
}
# NCCL metadata per communication kernel, where the trace records it (Kineto kernel args).
COLLECTIVE_COLUMNS: dict[str, Any] = {
    "rank": "int32",
    "correlation": "int64",
    "collective": "category",
    "process_group": "category",
    "group_size": "int64",
    "seq": "int64",
    "in_nelems": "int64",
    "out_nelems": "int64",
    "dtype": "category",
}

FRAME_COLUMNS = {
    "gpu_ops": GPU_OP_COLUMNS,
    "host_calls": HOST_CALL_COLUMNS,
    "syncs": SYNC_COLUMNS,
    "ranges": RANGE_COLUMNS,
    "collectives": COLLECTIVE_COLUMNS,
}


def empty_frame(columns: dict[str, Any]) -> pd.DataFrame:
    return frame_from_columns({c: [] for c in columns}, columns)


def frame_from_columns(data: dict[str, Any], columns: dict[str, Any]) -> pd.DataFrame:
    """Build a frame with exactly `columns`, in order and with their dtypes.

    Columns a source lacks are filled with NO_ID (ints) or "" (names)."""
    n = max((len(v) for v in data.values()), default=0)
    out = {}
    for col, dtype in columns.items():
        values = data.get(col)
        if values is None:
            if isinstance(dtype, pd.CategoricalDtype):
                values = [None] * n  # fixed categories: unknown until someone fills it (op_class)
            elif dtype == "category":
                values = [""] * n
            else:
                values = np.full(n, NO_ID, dtype=np.int64)
        out[col] = pd.Series(values).astype(dtype) if _is_category(dtype) else np.asarray(values).astype(dtype)
    return pd.DataFrame(out)


def _is_category(dtype: Any) -> bool:
    return dtype == "category" or isinstance(dtype, pd.CategoricalDtype)


@dataclass
class RankInfo:
    """What a run knows about one rank: where it came from and what it ran on."""

    rank: int
    source: str  # the file it was read from
    device: int | None = None  # the GPU ordinal the rank's ops ran on (None: no GPU ops)
    world_size: int | None = None
    gpu_name: str | None = None
    pid: int | None = None  # nsys: the process of this (process, GPU) pair
    format: str = ""  # "kineto" | "nsys"
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # rows of the rank's file that the reader could not read and left out: a short description
    # ("kernel rows with NULL start or end") -> how many. Counted per file: every rank the file
    # produced carries the same figures.
    dropped_rows: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Trace:
    """One run: its ranks' frames concatenated, each row tagged with its rank.

    Frozen: loading returns it finished and classified; an analysis that needs a changed trace
    builds a new one (`dataclasses.replace`), never edits a loaded one."""

    ranks: list[RankInfo]
    gpu_ops: pd.DataFrame
    host_calls: pd.DataFrame
    syncs: pd.DataFrame
    ranges: pd.DataFrame
    collectives: pd.DataFrame
    manifest: dict[str, Any] | None = None  # run.json, when the run has one
    execution_traces: dict[int, str] = field(default_factory=dict)  # rank -> PyTorch ET file
    notes: tuple[str, ...] = ()  # what loading left out and why (skipped files, ranks it had to number)

    @classmethod
    def empty(cls, ranks: list[RankInfo] | None = None) -> Trace:
        return cls(ranks=list(ranks or []), **{name: empty_frame(cols) for name, cols in FRAME_COLUMNS.items()})

    @classmethod
    def concat(cls, parts: list[Trace]) -> Trace:
        """Join the traces of one run's files (ranks must not repeat; the loader checks)."""
        if not parts:
            return cls.empty()
        frames = {}
        for name in FRAME_COLUMNS:
            pieces = [getattr(p, name) for p in parts]
            frames[name] = _concat_keep_categories(pieces, FRAME_COLUMNS[name])
        manifest = next((p.manifest for p in parts if p.manifest), None)
        ets: dict[int, str] = {}
        for p in parts:
            ets.update(p.execution_traces)
        ranks = sorted((r for p in parts for r in p.ranks), key=lambda r: r.rank)
        notes = tuple(n for p in parts for n in p.notes)
        return cls(ranks=ranks, manifest=manifest, execution_traces=ets, notes=notes, **frames)

    def renumbered(self, by: int) -> Trace:
        """The same trace with every rank number moved up by `by` (a file's ranks within its run)."""
        if not by:
            return self
        frames = {name: getattr(self, name).assign(rank=getattr(self, name)["rank"] + by) for name in FRAME_COLUMNS}
        ranks = [dataclasses.replace(r, rank=r.rank + by) for r in self.ranks]
        ets = {r + by: p for r, p in self.execution_traces.items()}
        return Trace(ranks=ranks, manifest=self.manifest, execution_traces=ets, notes=self.notes, **frames)

    def with_source(self, old: str, new: str) -> Trace:
        """The same trace with the file `old` named `new` (as the user gave it)."""
        ranks = [dataclasses.replace(r, source=new) if r.source == old else r for r in self.ranks]
        return dataclasses.replace(self, ranks=ranks)

    def rank_info(self, rank: int) -> RankInfo:
        for info in self.ranks:
            if info.rank == rank:
                return info
        raise KeyError(rank)

    def for_rank(self, rank: int) -> Trace:
        """The same run restricted to one rank."""
        frames = {name: _rows_of_rank(getattr(self, name), rank) for name in FRAME_COLUMNS}
        ets = {r: p for r, p in self.execution_traces.items() if r == rank}
        return Trace(ranks=[self.rank_info(rank)], manifest=self.manifest, execution_traces=ets, notes=self.notes,
                     **frames)


def _rows_of_rank(frame: pd.DataFrame, rank: int) -> pd.DataFrame:
    return frame[frame["rank"].to_numpy() == rank].reset_index(drop=True)


def _concat_keep_categories(pieces: list[pd.DataFrame], columns: dict[str, Any]) -> pd.DataFrame:
    """pd.concat turns categoricals with different categories into object; union them first."""
    pieces = [p for p in pieces if len(p)] or pieces[:1]
    if len(pieces) == 1:
        return pieces[0].reset_index(drop=True)
    out = {}
    for col, dtype in columns.items():
        if dtype == "category":
            out[col] = pd.api.types.union_categoricals([p[col] for p in pieces], ignore_order=True)
        else:
            out[col] = np.concatenate([p[col].to_numpy() for p in pieces])
            if isinstance(dtype, pd.CategoricalDtype):
                out[col] = pd.Categorical(out[col], dtype=dtype)
    return pd.DataFrame(out)
