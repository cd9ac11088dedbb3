"""Read a rocpd SQLite database (`<pid>_results.db`, rocprofv3's default output in ROCm 7).

The schema is ROCprofiler-SDK's (`source/share/rocprofiler-sdk-rocpd/*.sql`): every table name
ends in `_<uuid>`, one uuid per profiled process, so a database that merges several runs holds
several table sets; each is read on its own and is a process of its own. Views (`kernels`,
`regions`, ...) cover one uuid only, so the base tables are read.

Two layouts are published and both are read, every query built from PRAGMA table_info:
- schema 3 (3.0.x): rocpd_kernel_dispatch, rocpd_memory_copy and rocpd_region carry their own
  pid / tid / agent_id / queue_id / stream_id columns; rocpd_event.category_id names a
  rocpd_string row.
- schema 4 (4.x): those tables carry a track_id instead, and rocpd_track holds pid, tid,
  agent_id, queue_id, stream_id; rocpd_event.category_id names a rocpd_info_category row.
Early databases with start_id / end_id into rocpd_timestamp are read too.

What becomes what (the same as rocprofv3.py's JSON reader, which assembles the Trace):
kernel dispatches and memory copies -> gpu_ops, correlated by rocpd_event.stack_id (the internal
correlation id, which a region's HIP launch shares); regions of category HIP_RUNTIME_API[_EXT]
-> host_calls, with their `stream` / `event` arguments from rocpd_arg for happens-before;
MARKER_CORE[_RANGE]_API regions (ROCTx) -> ranges named by their message; RCCL_API regions ->
ranges of domain "rccl". Tables that are absent contribute nothing.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BadInput
from .model import GPU_OP_KINDS, NO_ID, Trace
from .rocprofv3 import MEMCPY_NAMES, Raw, assemble, calls_frame, ops_frame, parse_handle, ranges_frame

_HIP = ("HIP_RUNTIME_API", "HIP_RUNTIME_API_EXT")
_MARKERS = ("MARKER_CORE_API", "MARKER_CORE_RANGE_API")
_RCCL = ("RCCL_API",)


def read_rocpd(path: Path, source: str, first_rank: int = 0) -> Trace:
    """Read one database; its ranks are numbered from `first_rank`."""
    try:
        with closing(sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)) as con:
            tables = _schema(con)
            suffixes = _suffixes(tables)
            if not suffixes:
                raise BadInput(source, "no rocpd_kernel_dispatch table: was rocprofv3 run with --kernel-trace?")
            raws = [_Run(con, tables, suffix, index, source).raw() for index, suffix in enumerate(suffixes)]
    except sqlite3.DatabaseError as e:
        raise BadInput(source, f"not a readable SQLite database ({e}): is the file truncated or corrupt?") from None
    return assemble(Raw.concat(raws), source, first_rank, "rocpd")


def _schema(con: sqlite3.Connection) -> dict[str, set[str]]:
    names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {n: {row[1] for row in con.execute(f'PRAGMA table_info("{n}")')} for n in names}


def _suffixes(tables: dict[str, set[str]]) -> list[str]:
    """The uuid suffix of each table set that has kernel dispatches, in name order."""
    base = "rocpd_kernel_dispatch"
    return sorted(name[len(base):] for name in tables if name.startswith(base) and not name.startswith(base + "s"))


class _Run:
    """One uuid's tables: one profiled process."""

    def __init__(self, con: sqlite3.Connection, tables: dict[str, set[str]], suffix: str, index: int, source: str):
        self.con, self.tables, self.suffix, self.index, self.source = con, tables, suffix, index, source

    def t(self, base: str) -> str | None:
        """The quoted name of this run's table, None when it is absent."""
        name = base + self.suffix
        return f'"{name}"' if name in self.tables else None

    def cols(self, base: str) -> set[str]:
        return self.tables.get(base + self.suffix, set())

    def frame(self, sql: str, what: str, required: tuple[str, ...] = ()) -> pd.DataFrame:
        frame = pd.read_sql_query(sql, self.con)
        for column in required:
            if frame[column].isna().any():
                raise BadInput(self.source, f"{what}: NULL {column} (a row without a value the trace needs)")
            if len(frame) and not pd.api.types.is_integer_dtype(frame[column]):
                raise BadInput(self.source, f"{what}: {column} holds values that are not integers")
        return frame

    # --- lookups ---------------------------------------------------------------------------------

    def lookup(self, base: str, key: str, value: str, where: str = "") -> dict:
        table = self.t(base)
        if table is None or not {key, value} <= self.cols(base):
            return {}
        return dict(self.con.execute(f'SELECT "{key}", "{value}" FROM {table} {where}').fetchall())

    def raw(self) -> Raw:
        pids = self.lookup("rocpd_info_process", "id", "pid")
        self.tids = self.lookup("rocpd_info_thread", "id", "tid")
        where = "WHERE type = 'GPU'" if "type" in self.cols("rocpd_info_agent") else ""
        self.gpu = self.lookup("rocpd_info_agent", "id", "type_index", where)
        products = self.lookup("rocpd_info_agent", "id", "product_name", where)
        self.strings = self.lookup("rocpd_string", "id", "string")
        ops = pd.concat([self.kernels(), self.copies()], ignore_index=True)
        calls, ranges = self.regions()
        # process key: the run's index above the OS pid, so equal pids of two runs stay apart
        pid_of = {row: pids.get(row, row) for row in {*ops["process"].tolist(), *calls["process"].tolist(),
                                                      *ranges["process"].tolist()}}
        key = {row: (self.index << 32) | int(pid) for row, pid in pid_of.items()}
        for frame in (ops, calls, ranges):
            frame["process"] = frame["process"].map(key).astype(np.int64) if len(frame) else frame["process"]
        gpu_name = {(k, int(self.gpu[a])): str(p or "") for k in key.values() for a, p in products.items()
                    if a in self.gpu}
        version = self.lookup("rocpd_metadata", "tag", "value").get("schema_version")
        return Raw(ops, calls, ranges, pid={key[r]: int(pid_of[r]) for r in key}, gpu_name=gpu_name,
                   versions={"rocpd_schema": str(version)} if version is not None else {})

    # --- SQL pieces -------------------------------------------------------------------------------

    def owner(self, base: str, alias: str) -> tuple[str, dict[str, str]]:
        """(join, column -> expression) for pid/tid/agent_id/queue_id/stream_id: the row's own
        columns (schema 3) or its track's (schema 4)."""
        columns = self.cols(base)
        join, source, have = "", alias, columns
        if "track_id" in columns and "pid" not in columns and self.t("rocpd_track"):
            join = f"LEFT JOIN {self.t('rocpd_track')} AS tr ON tr.id = {alias}.track_id"
            source, have = "tr", self.cols("rocpd_track")
        return join, {c: f"{source}.{c}" if c in have else "NULL" for c in ("pid", "tid", "agent_id", "queue_id",
                                                                          "stream_id")}

    def times(self, base: str, alias: str) -> tuple[str, str, str]:
        """(join, start, end): the row's own start/end, or early databases' rocpd_timestamp ids."""
        columns = self.cols(base)
        if {"start", "end"} <= columns:
            return "", f"{alias}.start", f'{alias}."end"'
        stamps = self.t("rocpd_timestamp")
        if {"start_id", "end_id"} <= columns and stamps:
            return (f"LEFT JOIN {stamps} AS ts0 ON ts0.id = {alias}.start_id "
                    f"LEFT JOIN {stamps} AS ts1 ON ts1.id = {alias}.end_id", "ts0.value", "ts1.value")
        raise BadInput(self.source, f"{base}{self.suffix} has no start/end columns: not a rocpd schema we know")

    def event(self, base: str, alias: str) -> tuple[str, str]:
        """(join, correlation): the internal correlation id is the event's stack_id."""
        events = self.t("rocpd_event")
        if events and "event_id" in self.cols(base) and "stack_id" in self.cols("rocpd_event"):
            return f"LEFT JOIN {events} AS e ON e.id = {alias}.event_id", f"COALESCE(e.stack_id, {NO_ID})"
        return "", str(NO_ID)

    # --- GPU ops ----------------------------------------------------------------------------------

    def kernels(self) -> pd.DataFrame:
        base = "rocpd_kernel_dispatch"
        if "kernel_id" not in self.cols(base):
            raise BadInput(self.source, f"{base}{self.suffix} lacks kernel_id: not a rocpd schema we know")
        own_join, own = self.owner(base, "k")
        time_join, start, end = self.times(base, "k")
        event_join, corr = self.event(base, "k")
        rows = self.frame(
            f"SELECT {start} AS start, {end} AS \"end\", {own['pid']} AS process, {own['agent_id']} AS agent, "
            f"COALESCE({own['stream_id']}, {own['queue_id']}, {NO_ID}) AS stream, {corr} AS correlation, "
            f"k.kernel_id AS kernel FROM {self.t(base)} AS k {own_join} {time_join} {event_join} ORDER BY k.rowid",
            f"{base}{self.suffix}", ("start", "end", "process", "agent", "kernel"))
        symbols = self.kernel_names()
        names = rows["kernel"].map(symbols).astype(object).fillna("").to_numpy(object)
        return ops_frame(process=rows["process"], device=self.devices(rows["agent"]), stream=rows["stream"],
                         kind=np.full(len(rows), GPU_OP_KINDS.index("kernel")), start=rows["start"], end=rows["end"],
                         correlation=rows["correlation"], name=names)

    def kernel_names(self) -> dict[int, str]:
        """display_name (the demangled name rocprofv3 shows), else kernel_name, without `.kd`."""
        base = "rocpd_info_kernel_symbol"
        names = [c for c in ("display_name", "kernel_name") if c in self.cols(base)]
        if not self.t(base) or not names:
            return {}
        text = f"COALESCE({', '.join(f'NULLIF({c}, {chr(39) * 2})' for c in names)}, '')"
        return {i: str(n).removesuffix(".kd") for i, n in self.con.execute(f"SELECT id, {text} FROM {self.t(base)}")}

    def devices(self, agents: pd.Series) -> np.ndarray:
        """GPU ordinal (type_index) of each agent id; NO_ID for a CPU or unknown agent."""
        return agents.map(self.gpu).fillna(NO_ID).to_numpy(np.int64)

    def copies(self) -> pd.DataFrame:
        """A copy runs on the GPU it writes to, else the GPU it reads from."""
        base = "rocpd_memory_copy"
        if not self.t(base):
            return ops_frame(name=[])
        own_join, own = self.owner(base, "m")
        time_join, start, end = self.times(base, "m")
        event_join, corr = self.event(base, "m")
        cols = self.cols(base)
        agent = {c: f"m.{c}" if c in cols else "NULL" for c in ("dst_agent_id", "src_agent_id", "name_id")}
        rows = self.frame(
            f"SELECT {start} AS start, {end} AS \"end\", {own['pid']} AS process, {agent['dst_agent_id']} AS dst, "
            f"{agent['src_agent_id']} AS src, COALESCE({own['stream_id']}, {own['queue_id']}, {NO_ID}) AS stream, "
            f"{corr} AS correlation, {agent['name_id']} AS name FROM {self.t(base)} AS m {own_join} {time_join} "
            f"{event_join} ORDER BY m.rowid", f"{base}{self.suffix}", ("start", "end", "process"))
        dst, src = self.devices(rows["dst"]), self.devices(rows["src"])
        names = rows["name"].map(self.strings).astype(object).fillna("").map(lambda n: MEMCPY_NAMES.get(n, f"Memcpy ({n})"))
        return ops_frame(process=rows["process"], device=np.where(dst != NO_ID, dst, src), stream=rows["stream"],
                         kind=np.full(len(rows), GPU_OP_KINDS.index("memcpy")), start=rows["start"], end=rows["end"],
                         correlation=rows["correlation"], name=names.to_numpy(object))

    # --- host calls and ranges --------------------------------------------------------------------

    def regions(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        base = "rocpd_region"
        empty = calls_frame(name=[]), ranges_frame(name=[], domain=[])
        if not self.t(base) or "name_id" not in self.cols(base):
            return empty
        own_join, own = self.owner(base, "r")
        time_join, start, end = self.times(base, "r")
        event_join, corr = self.event(base, "r")
        category, message, event_id = "NULL", "NULL", "NULL"
        if event_join:
            event_id = "e.id"
            categories = self.t("rocpd_info_category")  # schema 4
            if categories and "category_id" in self.cols("rocpd_event"):
                event_join += f" LEFT JOIN {categories} AS c ON c.id = e.category_id"
                category = "c.name"
            elif "category_id" in self.cols("rocpd_event") and self.t("rocpd_string"):
                event_join += f" LEFT JOIN {self.t('rocpd_string')} AS c ON c.id = e.category_id"
                category = "c.string"
            if "extdata" in self.cols("rocpd_event"):
                message = "CASE WHEN json_valid(e.extdata) THEN json_extract(e.extdata, '$.message') END"
        rows = self.frame(
            f"SELECT {start} AS start, {end} AS \"end\", {own['pid']} AS process, COALESCE({own['tid']}, {NO_ID}) AS tid, "
            f"r.name_id AS name_id, {corr} AS correlation, {category} AS category, {message} AS message, "
            f"{event_id} AS event_id FROM {self.t(base)} AS r {own_join} {time_join} {event_join} ORDER BY r.rowid",
            f"{base}{self.suffix}", ("start", "end", "process", "name_id"))
        rows["tid"] = rows["tid"].map(lambda t: self.tids.get(t, t)).astype(np.int64) if len(rows) else rows["tid"]
        rows["name"] = rows["name_id"].map(self.strings).astype(object).fillna("")
        category = rows["category"].fillna("").astype(str)
        hip = rows[category.isin(_HIP).to_numpy()]
        stream_arg, event_arg = self.handles(hip["event_id"])
        calls = calls_frame(process=hip["process"], tid=hip["tid"], start=hip["start"], end=hip["end"],
                            correlation=hip["correlation"], stream_arg=stream_arg, event_arg=event_arg,
                            name=hip["name"].to_numpy(object))
        markers = rows[category.isin(_MARKERS).to_numpy() & (rows["end"] > rows["start"]).to_numpy()
                       & (rows["name"] != "roctxGetThreadId").to_numpy()]
        rccl = rows[category.isin(_RCCL).to_numpy()]
        named = markers["message"].where(markers["message"].notna(), markers["name"])
        ranges = ranges_frame(
            process=np.concatenate([markers["process"], rccl["process"]]), tid=np.concatenate([markers["tid"], rccl["tid"]]),
            start=np.concatenate([markers["start"], rccl["start"]]), end=np.concatenate([markers["end"], rccl["end"]]),
            name=np.concatenate([named.astype(str).to_numpy(object), rccl["name"].to_numpy(object)]),
            domain=np.array([""] * len(markers) + ["rccl"] * len(rccl), dtype=object))
        return calls, ranges

    def handles(self, event_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """The `stream` and `event` arguments (hipStream_t, hipEvent_t handles) of the given events,
        from rocpd_arg; NO_ID where a call has none or the table is absent."""
        args = self.t("rocpd_arg")
        n = len(event_ids)
        if not args or not {"event_id", "name", "value"} <= self.cols("rocpd_arg") or not n:
            return np.full(n, NO_ID, np.int64), np.full(n, NO_ID, np.int64)
        found = pd.read_sql_query(f"SELECT event_id, name, value FROM {args} WHERE name IN ('stream', 'event')",
                                  self.con)
        found = found.drop_duplicates(["event_id", "name"])
        distinct = {v: parse_handle(v) for v in found["value"].unique().tolist()}
        found["handle"] = found["value"].map(distinct).astype(np.int64)
        table = found.pivot(index="event_id", columns="name", values="handle")
        out = []
        for name in ("stream", "event"):
            column = table[name] if name in table else pd.Series(dtype=np.int64)
            out.append(event_ids.map(column).fillna(NO_ID).to_numpy(np.int64))
        return out[0], out[1]
