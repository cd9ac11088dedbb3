"""Hand-built Nsight Systems SQLite exports with answers known by construction.

`NsysBuilder` writes the part of the schema that real exports have, with their table and column
names (nsys 2026.2; `.schema` of any file in ../shared/corpus/nsys): kernels, memcpys, memsets,
CUDA runtime and driver calls (one table, told apart by eventClass), NVTX ranges and domains,
synchronisation and CUDA event records, StringIds, the ENUM tables, META_DATA_EXPORT and
TARGET_INFO_GPU. Processes are pids, serialized into globalPid/globalTid as nsys does; correlation
ids count per process, as CUPTI's do, so two processes reuse the same ids.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

DDL = {
    "StringIds": "id INTEGER NOT NULL PRIMARY KEY, value TEXT NOT NULL",
    "META_DATA_EXPORT": "name TEXT NOT NULL, value TEXT",
    "TARGET_INFO_GPU": "vmId INTEGER NOT NULL, id INTEGER NOT NULL, name TEXT, cuDevice INTEGER",
    "CUPTI_ACTIVITY_KIND_KERNEL": "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, "
        "contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, "
        "globalPid INTEGER, demangledName INTEGER NOT NULL, shortName INTEGER NOT NULL, mangledName INTEGER, "
        "gridX INTEGER NOT NULL, blockX INTEGER NOT NULL",
    "CUPTI_ACTIVITY_KIND_MEMCPY": "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, "
        "contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, "
        "globalPid INTEGER, bytes INTEGER NOT NULL, copyKind INTEGER NOT NULL, srcKind INTEGER, dstKind INTEGER",
    "CUPTI_ACTIVITY_KIND_MEMSET": "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, "
        "contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, "
        "globalPid INTEGER, value INTEGER NOT NULL, bytes INTEGER NOT NULL, graphNodeId INTEGER, memKind INTEGER",
    "CUPTI_ACTIVITY_KIND_RUNTIME": "start INTEGER NOT NULL, end INTEGER NOT NULL, eventClass INTEGER NOT NULL, "
        "globalTid INTEGER, correlationId INTEGER, nameId INTEGER NOT NULL, returnValue INTEGER NOT NULL, "
        "callchainId INTEGER",
    "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION": "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, "
        "contextId INTEGER NOT NULL, greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, "
        "globalPid INTEGER, deprecatedSyncType INTEGER, syncType INTEGER NOT NULL, eventId INTEGER NOT NULL, "
        "eventSyncId INTEGER",
    "CUPTI_ACTIVITY_KIND_CUDA_EVENT": "timestamp INTEGER, deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL, "
        "greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER, "
        "eventId INTEGER NOT NULL, eventSyncId INTEGER",
    "NVTX_EVENTS": "start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL, rangeId INTEGER, "
        "category INTEGER, color INTEGER, text TEXT, globalTid INTEGER, endGlobalTid INTEGER, textId INTEGER, "
        "domainId INTEGER, uint64Value INTEGER, int64Value INTEGER, doubleValue REAL, uint32Value INTEGER, "
        "int32Value INTEGER, floatValue REAL, jsonTextId INTEGER, jsonText TEXT, binaryData TEXT",
}
# The ENUM rows the reader uses, as nsys 2026.2 writes them
ENUMS = {
    "ENUM_NSYS_EVENT_CLASS": [(0, "TRACE_PROCESS_EVENT_CUDA_RUNTIME", "CUDA runtime"),
                              (1, "TRACE_PROCESS_EVENT_CUDA_DRIVER", "CUDA driver")],
    "ENUM_CUDA_MEMCPY_OPER": [(1, "CUDA_MEMCPY_KIND_HTOD", "Host-to-Device"),
                              (2, "CUDA_MEMCPY_KIND_DTOH", "Device-to-Host"),
                              (8, "CUDA_MEMCPY_KIND_DTOD", "Device-to-Device"),
                              (10, "CUDA_MEMCPY_KIND_PTOP", "Peer-to-Peer")],
    "ENUM_CUDA_MEM_KIND": [(0, "CUDA_MEMOPR_MEMORY_KIND_PAGEABLE", "Pageable"),
                           (2, "CUDA_MEMOPR_MEMORY_KIND_DEVICE", "Device")],
    "ENUM_CUPTI_SYNC_TYPE": [(0, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_UNKNOWN", "Unknown"),
                             (1, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_EVENT_SYNCHRONIZE", "Event sync"),
                             (2, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_WAIT_EVENT", "Stream wait sync"),
                             (3, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_STREAM_SYNCHRONIZE", "Stream sync"),
                             (4, "CUPTI_ACTIVITY_SYNCHRONIZATION_TYPE_CONTEXT_SYNCHRONIZE", "Context sync")],
}
SYNC_TYPE = {"event_sync": 1, "stream_wait_event": 2, "stream_sync": 3, "context_sync": 4}
NOT_APPLICABLE = 0xFFFFFFFF  # CUPTI's invalid stream / event id
PUSH_POP, START_END, DOMAIN_CREATE = 59, 60, 75
DRIVER, RUNTIME = 1, 0


def global_pid(pid: int) -> int:
    """(hwId << 56) | (vmId << 48) | (pid << 24); the corpus files have vmId 1."""
    return (1 << 48) | (pid << 24)


def global_tid(pid: int, tid: int) -> int:
    return global_pid(pid) | tid


@dataclass
class NsysBuilder:
    version: str = "2026.2.1.210"
    gpu_names: dict[int, str] = field(default_factory=lambda: {0: "NVIDIA H200"})  # CUDA device -> name
    enums: bool = True  # False: no ENUM_* tables, as in hand-trimmed exports
    rows: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    strings: dict[str, int] = field(default_factory=dict)
    _next_corr: dict[int, int] = field(default_factory=lambda: defaultdict(lambda: 1))

    def string_id(self, text: str) -> int:
        return self.strings.setdefault(text, len(self.strings) + 1)

    def correlation(self, pid: int) -> int:
        corr = self._next_corr[pid]
        self._next_corr[pid] += 1
        return corr

    def call(self, name: str, start: int, end: int, pid: int = 1000, tid: int | None = None,
             corr: int | None = None, api: str = "runtime") -> int:
        """A CUDA runtime (or driver) API call; returns its correlation id."""
        corr = self.correlation(pid) if corr is None else corr
        self.rows["CUPTI_ACTIVITY_KIND_RUNTIME"].append(
            (start, end, DRIVER if api == "driver" else RUNTIME, global_tid(pid, tid or pid), corr,
             self.string_id(name), 0, None))
        return corr

    def _launch(self, call: str, launch_at: int | None, pid: int, tid: int | None, api: str) -> int:
        corr = self.correlation(pid)
        if launch_at is not None:
            self.call(call, launch_at, launch_at + 1000, pid, tid, corr, api)
        return corr

    def kernel(self, name: str, stream: int, start: int, end: int, launch_at: int | None = None,
               pid: int = 1000, tid: int | None = None, device: int = 0, api: str = "runtime") -> int:
        """A kernel and (unless launch_at is None) the call that launched it. Returns its correlation."""
        call = "cuLaunchKernelEx" if api == "driver" else "cudaLaunchKernel_v7000"
        corr = self._launch(call, launch_at, pid, tid, api)
        name_id = self.string_id(name)
        self.rows["CUPTI_ACTIVITY_KIND_KERNEL"].append(
            (start, end, device, device + 1, None, stream, corr, global_pid(pid), name_id, name_id, None, 1, 128))
        return corr

    def memcpy(self, stream: int, start: int, end: int, launch_at: int | None = None, pid: int = 1000,
               device: int = 0, copy_kind: int = 8, corr: int | None = None) -> int:
        """A copy and its call; with `corr`, another record of that call's copy (no new call)."""
        if corr is None:
            corr = self._launch("cudaMemcpyAsync_v3020", launch_at, pid, None, "runtime")
        self.rows["CUPTI_ACTIVITY_KIND_MEMCPY"].append(
            (start, end, device, device + 1, None, stream, corr, global_pid(pid), 1 << 20, copy_kind, 2, 2))
        return corr

    def memset(self, stream: int, start: int, end: int, launch_at: int | None = None, pid: int = 1000,
               device: int = 0) -> int:
        corr = self._launch("cudaMemsetAsync_v3020", launch_at, pid, None, "runtime")
        self.rows["CUPTI_ACTIVITY_KIND_MEMSET"].append(
            (start, end, device, device + 1, None, stream, corr, global_pid(pid), 0, 1 << 20, None, 2))
        return corr

    def nvtx(self, name: str, start: int, end: int | None, pid: int = 1000, tid: int | None = None,
             domain: int = 0, registered: bool = False, push_pop: bool = True) -> None:
        """A push/pop (or start/end) range, its name inline or registered (textId); end None: never closed."""
        text, text_id = (None, self.string_id(name)) if registered else (name, None)
        gtid = global_tid(pid, tid or pid)
        self.rows["NVTX_EVENTS"].append(
            (start, end, PUSH_POP if push_pop else START_END, None, None, None, text, gtid,
             None if push_pop else gtid, text_id, domain, *[None] * 9))

    def domain(self, domain: int, name: str, pid: int = 1000, at: int = 0) -> None:
        """nvtxDomainCreate: names `domain` within process `pid`."""
        self.rows["NVTX_EVENTS"].append(
            (at, None, DOMAIN_CREATE, None, None, None, name, global_tid(pid, pid), None, None, domain, *[None] * 9))

    def event_record(self, event: int, stream: int, at: int, pid: int = 1000, device: int = 0) -> int:
        """cudaEventRecord: the call and its CUDA_EVENT row (whose timestamp is 0: not collected)."""
        corr = self.call("cudaEventRecord_v3020", at, at + 10, pid)
        self.rows["CUPTI_ACTIVITY_KIND_CUDA_EVENT"].append(
            (0, device, device + 1, None, stream, corr, global_pid(pid), event, corr))
        return corr

    def sync(self, kind: str, start: int, end: int, stream: int = NOT_APPLICABLE, event: int = NOT_APPLICABLE,
             pid: int = 1000, device: int = 0, typed_as: str | None = None) -> int:
        """A SYNCHRONIZATION row (kind: stream_wait_event, event_sync, stream_sync, context_sync) and its
        call; `typed_as` writes another kind's syncType, as some exports do."""
        call = {"stream_wait_event": "cudaStreamWaitEvent_v3020", "event_sync": "cudaEventSynchronize_v3020",
                "stream_sync": "cudaStreamSynchronize_v3020", "context_sync": "cudaDeviceSynchronize_v3020"}[kind]
        corr = self.call(call, start, end, pid)
        self.rows["CUPTI_ACTIVITY_KIND_SYNCHRONIZATION"].append(
            (start, end, device, device + 1, None, stream, corr, global_pid(pid), None, SYNC_TYPE[typed_as or kind], event,
             NOT_APPLICABLE))
        return corr

    def write(self, path: Path, without: tuple[str, ...] = (), loose: bool = False) -> Path:
        """Write the export (tables are created lazily, as nsys does: only those with rows, plus
        the kernel table), leaving out the tables named in `without`. `loose`: columns without
        declared types or NOT NULL, as a hand-made or damaged file may have them, so that tests can
        store NULLs and text where nsys writes integers."""
        path.unlink(missing_ok=True)
        tables = {"StringIds": [(i, s) for s, i in self.strings.items()],
                  "META_DATA_EXPORT": [("EXPORT_PRODUCT_NAME", "NVIDIA Nsight Systems"),
                                       ("EXPORT_PRODUCT_VERSION", self.version)],
                  "TARGET_INFO_GPU": [(1, gpu, name, gpu) for gpu, name in self.gpu_names.items()],
                  "CUPTI_ACTIVITY_KIND_KERNEL": [],
                  **self.rows}
        with sqlite3.connect(path) as con:
            for table, rows in tables.items():
                if table in without or (not rows and table != "CUPTI_ACTIVITY_KIND_KERNEL"):
                    continue
                ddl = DDL[table]
                if loose:
                    ddl = ddl.replace(" NOT NULL", "").replace(" PRIMARY KEY", "")
                    ddl = ddl.replace(" INTEGER", "").replace(" TEXT", "").replace(" REAL", "")
                con.execute(f"CREATE TABLE {table} ({ddl})")
                if rows:
                    con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
            for table, rows in ENUMS.items() if self.enums else ():
                con.execute(f"CREATE TABLE {table} (id INTEGER NOT NULL PRIMARY KEY, name TEXT, label TEXT)")
                con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", rows)
        con.close()
        return path
