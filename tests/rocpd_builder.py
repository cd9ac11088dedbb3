"""Build rocpd databases for tests, following ROCprofiler-SDK's published schema
(source/share/rocprofiler-sdk-rocpd/rocpd_tables.sql) by its table and column names. The DDL
here is our own, reduced to the columns a reader may use.

Schema 3: kernel dispatches, copies and regions carry pid / tid / agent_id / queue_id / stream_id.
Schema 4: they carry a track_id into rocpd_track, and event categories live in
rocpd_info_category. `omit` drops tables (by base name) to test a reader's tolerance.

One `Run` is one profiled process: its own uuid-suffixed table set in the database.
Builder calls are made in time order, so internal correlation ids grow as the SDK's do.
"""

from __future__ import annotations

import json
import sqlite3
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

INT, TEXT = "INTEGER", "TEXT"
OWNER = [("pid", INT), ("tid", INT), ("agent_id", INT), ("queue_id", INT), ("stream_id", INT)]


def _tables(version: int) -> dict[str, list[tuple[str, str]]]:
    flat = version < 4
    owner = OWNER if flat else [("track_id", INT)]
    tables = {
        "rocpd_metadata": [("tag", TEXT), ("value", TEXT)],
        "rocpd_string": [("string", TEXT)],
        "rocpd_info_node": [("hash", INT), ("machine_id", TEXT), ("hostname", TEXT)],
        "rocpd_info_process": [("nid", INT), ("ppid", INT), ("pid", INT), ("command", TEXT)],
        "rocpd_info_thread": [("nid", INT), ("pid", INT), ("tid", INT)],
        "rocpd_info_agent": [("nid", INT), ("pid", INT), ("type", TEXT), ("absolute_index", INT),
                             ("logical_index", INT), ("type_index", INT), ("name", TEXT), ("product_name", TEXT)],
        "rocpd_info_queue": [("nid", INT), ("pid", INT), ("name", TEXT)],
        "rocpd_info_stream": [("nid", INT), ("pid", INT), ("name", TEXT)],
        "rocpd_info_kernel_symbol": [("nid", INT), ("pid", INT), ("code_object_id", INT), ("kernel_name", TEXT),
                                     ("display_name", TEXT)],
        "rocpd_event": [("category_id", INT), ("stack_id", INT), ("parent_stack_id", INT), ("correlation_id", INT),
                        ("extdata", TEXT)],
        "rocpd_arg": [("event_id", INT), ("position", INT), ("type", TEXT), ("name", TEXT), ("value", TEXT)],
        "rocpd_region": ([("nid", INT), ("pid", INT), ("tid", INT)] if flat else [("track_id", INT)])
        + [("start", INT), ("end", INT), ("name_id", INT), ("event_id", INT)],
        "rocpd_kernel_dispatch": ([("nid", INT)] if flat else []) + owner
        + [("kernel_id", INT), ("dispatch_id", INT), ("start", INT), ("end", INT), ("event_id", INT)],
        "rocpd_memory_copy": ([("nid", INT)] + [o for o in OWNER if o[0] != "agent_id"] if flat else owner)
        + [("start", INT), ("end", INT), ("name_id", INT), ("dst_agent_id", INT), ("src_agent_id", INT),
           ("size", INT), ("event_id", INT)],
    }
    if not flat:
        tables["rocpd_track"] = [("nid", INT)] + OWNER + [("name_id", INT)]
        tables["rocpd_info_category"] = [("name", TEXT)]
    return tables


@dataclass
class Run:
    """One process. GPU ordinals are agent type_index values; agent ids are ordinal + 2 (two CPU
    agents first, as on a real node)."""

    pid: int
    gpus: tuple[int, ...] = (0,)
    product: str = "AMD Instinct MI300X"
    tid: int = 0
    rows: dict[str, list[dict]] = field(default_factory=dict)
    strings: dict[str, int] = field(default_factory=dict)
    corr: int = 0

    def __post_init__(self) -> None:
        self.tid = self.tid or self.pid

    def add(self, table: str, **values: object) -> int:
        rows = self.rows.setdefault(table, [])
        rows.append({"id": len(rows) + 1, **values})
        return len(rows)

    def string(self, text: str) -> int:
        if text not in self.strings:
            self.strings[text] = len(self.strings) + 1
        return self.strings[text]

    def next_corr(self) -> int:
        self.corr += 1
        return self.corr

    def event(self, category: str, corr: int, extdata: dict | None = None) -> int:
        return self.add("rocpd_event", category=category, stack_id=corr, parent_stack_id=corr, correlation_id=0,
                        extdata=json.dumps(extdata or {}))

    def kernel(self, name: str, start: int, end: int, device: int = 0, stream: int = 1, corr: int | None = None,
               tid: int | None = None, null_start: bool = False) -> int:
        corr = self.next_corr() if corr is None else corr
        symbols = self.rows.setdefault("rocpd_info_kernel_symbol", [])
        kernel_id = next((s["id"] for s in symbols if s["display_name"] == name), None)
        if kernel_id is None:
            kernel_id = self.add("rocpd_info_kernel_symbol", nid=1, pid=self.pid, code_object_id=1,
                                 kernel_name=f"_Z{len(name)}{name}v.kd", display_name=name)
        self.add("rocpd_kernel_dispatch", nid=1, **self.owner(tid, device, stream), kernel_id=kernel_id,
                 dispatch_id=len(self.rows.get("rocpd_kernel_dispatch", [])) + 1,
                 start=None if null_start else start, end=end, event_id=self.event("KERNEL_DISPATCH", corr))
        return corr

    def copy(self, operation: str, start: int, end: int, dst: int | None, src: int | None, stream: int = 1,
             corr: int | None = None) -> int:
        corr = self.next_corr() if corr is None else corr
        self.add("rocpd_memory_copy", nid=1, **self.owner(None, None, stream), start=start, end=end,
                 name_id=self.string(operation), dst_agent_id=None if dst is None else dst + 2,
                 src_agent_id=None if src is None else src + 2, size=4096, event_id=self.event("MEMORY_COPY", corr))
        return corr

    def region(self, category: str, name: str, start: int, end: int, tid: int | None = None,
               corr: int | None = None, args: dict | None = None, extdata: dict | None = None) -> int:
        corr = self.next_corr() if corr is None else corr
        event = self.event(category, corr, extdata)
        for position, (arg, value) in enumerate((args or {}).items()):
            self.add("rocpd_arg", event_id=event, position=position, type="void*", name=arg, value=value)
        self.add("rocpd_region", nid=1, **self.owner(tid, None, None, region=True), start=start, end=end,
                 name_id=self.string(name), event_id=event)
        return corr

    def hip(self, name: str, start: int, end: int, tid: int | None = None, **args: str) -> int:
        return self.region("HIP_RUNTIME_API_EXT", name, start, end, tid, args=args)

    def launch(self, kernel: str, stream: int, at: int, start: int, end: int, device: int = 0,
               tid: int | None = None) -> int:
        """hipLaunchKernel on the stream whose handle is 0x1000 + stream id, and its kernel."""
        corr = self.hip("hipLaunchKernel", at, at + 5, tid, stream=hex(0x1000 + stream))
        return self.kernel(kernel, start, end, device, stream, corr, tid)

    def marker(self, message: str, start: int, end: int, tid: int | None = None) -> int:
        """A ROCTx push/pop range as rocprofv3 writes it: roctxThreadRangeA with the message in extdata."""
        return self.region("MARKER_CORE_RANGE_API", "roctxThreadRangeA", start, end, tid,
                           extdata={"message": message})

    def rccl(self, name: str, start: int, end: int, tid: int | None = None) -> int:
        return self.region("RCCL_API", name, start, end, tid)

    def owner(self, tid: int | None, device: int | None, stream: int | None, region: bool = False) -> dict:
        return {"pid": self.pid, "tid": tid or self.tid, **({} if region else {
            "agent_id": None if device is None else device + 2, "queue_id": 1, "stream_id": stream})}


@dataclass
class RocpdBuilder:
    version: int = 3
    omit: tuple[str, ...] = ()
    runs: list[Run] = field(default_factory=list)

    def run(self, pid: int, gpus: tuple[int, ...] = (0,), **kw: object) -> Run:
        self.runs.append(Run(pid, gpus, **kw))
        return self.runs[-1]

    def write(self, path: Path) -> Path:
        con = sqlite3.connect(path)
        for index, run in enumerate(self.runs):
            suffix = "_" + str(uuidlib.UUID(int=index + 1)).replace("-", "_")
            self._write_run(con, run, suffix)
        con.commit()
        con.close()
        return path

    def _write_run(self, con: sqlite3.Connection, run: Run, suffix: str) -> None:
        tables = {name: cols for name, cols in _tables(self.version).items() if name not in self.omit}
        for name, cols in tables.items():
            body = ", ".join(f'"{c}" {t}' for c, t in cols)
            con.execute(f'CREATE TABLE "{name}{suffix}" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, {body})')
        rows = {k: [dict(r) for r in v] for k, v in run.rows.items()}
        rows["rocpd_metadata"] = [{"id": 1, "tag": "schema_version", "value": str(self.version)},
                                  {"id": 2, "tag": "uuid", "value": suffix}]
        rows["rocpd_info_node"] = [{"id": 1, "hash": 1, "machine_id": "m", "hostname": "node"}]
        rows["rocpd_info_process"] = [{"id": run.pid, "nid": 1, "ppid": 1, "pid": run.pid, "command": "python"}]
        tids = {r["tid"] for t in ("rocpd_region", "rocpd_kernel_dispatch", "rocpd_memory_copy")
                for r in rows.get(t, []) if r.get("tid")}
        rows["rocpd_info_thread"] = [{"id": t, "nid": 1, "pid": run.pid, "tid": t} for t in sorted(tids)]
        rows["rocpd_info_agent"] = [
            {"id": i, "nid": 1, "pid": run.pid, "type": "CPU", "absolute_index": i, "logical_index": i,
             "type_index": i, "name": "cpu", "product_name": "EPYC"} for i in (0, 1)] + [
            {"id": g + 2, "nid": 1, "pid": run.pid, "type": "GPU", "absolute_index": g + 2, "logical_index": g + 2,
             "type_index": g, "name": "gfx942", "product_name": run.product} for g in run.gpus]
        categories = sorted({e["category"] for e in rows.get("rocpd_event", [])})
        if self.version >= 4:
            rows["rocpd_info_category"] = [{"id": i + 1, "name": c} for i, c in enumerate(categories)]
            category_id = {c: i + 1 for i, c in enumerate(categories)}
        else:
            category_id = {c: run.string(c) for c in categories}
        for e in rows.get("rocpd_event", []):
            e["category_id"] = category_id[e.pop("category")]
        rows["rocpd_string"] = [{"id": i, "string": s} for s, i in run.strings.items()]
        if self.version >= 4:
            self._tracks(rows)
        for name, table_rows in rows.items():
            if name not in tables:
                continue
            cols = ["id"] + [c for c, _ in tables[name]]
            marks = ", ".join("?" * len(cols))
            con.executemany(f'INSERT INTO "{name}{suffix}" ({", ".join(chr(34) + c + chr(34) for c in cols)}) '
                            f"VALUES ({marks})", [[r.get(c) for c in cols] for r in table_rows])

    @staticmethod
    def _tracks(rows: dict[str, list[dict]]) -> None:
        """Schema 4: move each row's owner columns into a shared rocpd_track row."""
        tracks: dict[tuple, int] = {}
        for table in ("rocpd_region", "rocpd_kernel_dispatch", "rocpd_memory_copy"):
            for r in rows.get(table, []):
                key = tuple(r.pop(c, None) for c, _ in OWNER)
                r["track_id"] = tracks.setdefault(key, len(tracks) + 1)
        rows["rocpd_track"] = [{"id": i, "nid": 1, **dict(zip([c for c, _ in OWNER], key))}
                               for key, i in tracks.items()]
