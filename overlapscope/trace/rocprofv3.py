"""Read rocprofv3's JSON output (`<pid>_results.json[.gz]`, top-level `rocprofiler-sdk-tool`).

rocprofv3 (ROCprofiler-SDK) writes one JSON document per process: agents, kernel symbols, the
names of every record kind and operation (`strings.buffer_records`, indexed by the records'
`kind` and `operation` codes), and the buffer records themselves. What becomes what:

- kernel_dispatch -> gpu_ops "kernel"; memory_copy -> gpu_ops "memcpy". Device = the GPU
  agent's ordinal among GPUs (`logical_node_type_id`), stream = the HIP stream id (the queue id
  where an older SDK recorded no stream), correlation = the internal correlation id, which is
  the launching HIP call's.
- hip_api -> host_calls (api "runtime"); the HIP synchronisation calls among them -> syncs.
- marker_api (ROCTx push/pop and start/stop ranges) -> ranges (source "nvtx", domain "");
  `ProfilerStep#N` ranges are profiler steps, as in the other readers.
- rccl_api -> ranges (source "nvtx", domain "rccl"): RCCL calls launch no GPU work themselves
  (the HIP launch inside them does), so they are regions a user can name with --region, as
  NCCL's own NVTX ranges are in an nsys report.

The assembly from raw per-process columns to a Trace (ranks, syncs, frames) is shared with the
rocpd reader (rocpd.py): both formats describe the same records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import BadInput
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

TOP_KEY = b'"rocprofiler-sdk-tool"'
_PROFILER_STEP = re.compile(r"^ProfilerStep\s*#\s*\d+$")
_GPU_AGENT = 2  # rocprofiler_agent_type_t: 1 CPU, 2 GPU

# HIP calls that order GPU work, named as CUDA's (model.SYNC_KINDS)
SYNC_OF_HIP_CALL = {
    "hipEventRecord": "event_record", "hipEventRecordWithFlags": "event_record",
    "hipStreamWaitEvent": "stream_wait_event",
    "hipStreamSynchronize": "stream_sync",
    "hipEventSynchronize": "event_sync", "hipEventQuery": "event_sync",
    "hipDeviceSynchronize": "context_sync", "hipCtxSynchronize": "context_sync",
}
# memory copy operations, named as Kineto names copies
MEMCPY_NAMES = {
    "MEMORY_COPY_HOST_TO_HOST": "Memcpy HtoH (Host -> Host)",
    "MEMORY_COPY_HOST_TO_DEVICE": "Memcpy HtoD (Host -> Device)",
    "MEMORY_COPY_DEVICE_TO_HOST": "Memcpy DtoH (Device -> Host)",
    "MEMORY_COPY_DEVICE_TO_DEVICE": "Memcpy DtoD (Device -> Device)",
    "MEMORY_COPY_PEER_TO_PEER": "Memcpy PtoP (Device -> Device)",
}


def looks_like_rocprofv3(head: bytes) -> bool:
    """True when the first bytes of a (decompressed) JSON file are rocprofv3's document."""
    return head.lstrip()[:1] == b"{" and TOP_KEY in head[:4096]


def read_rocprofv3(data: bytes, source: str, first_rank: int = 0) -> Trace:
    """Read one rocprofv3 JSON document; its ranks are numbered from `first_rank`."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise BadInput(source, f"not valid JSON ({e}): is the file truncated?") from None
    tools = doc.get("rocprofiler-sdk-tool") if isinstance(doc, dict) else None
    if not isinstance(tools, list) or not tools:
        raise BadInput(source, "no 'rocprofiler-sdk-tool' list: not a rocprofv3 JSON file")
    raws = [_raw_of_process(tool, source, index) for index, tool in enumerate(tools)]
    return assemble(Raw.concat(raws), source, first_rank, "rocprofv3")


# --- the shared raw form -------------------------------------------------------------------------

@dataclass
class Raw:
    """One file's records before ranks exist. `process` is a key unique within the file (several
    runs merged in one rocpd database may repeat a pid); `pid` maps it to the OS pid.

    ops: process, device, stream, kind (codes into GPU_OP_KINDS), start, end, name, correlation
    calls: process, tid, start, end, name, correlation, stream_arg, event_arg (HIP handles, NO_ID unknown)
    ranges: process, tid, start, end, name, domain"""

    ops: pd.DataFrame
    calls: pd.DataFrame
    ranges: pd.DataFrame
    pid: dict[int, int] = field(default_factory=dict)
    gpu_name: dict[tuple[int, int], str] = field(default_factory=dict)  # (process, device) -> name
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def concat(cls, parts: list[Raw]) -> Raw:
        def join(frames: list[pd.DataFrame]) -> pd.DataFrame:
            out = pd.concat(frames, ignore_index=True)
            for column in ("name", "domain"):
                if column in out:
                    out[column] = pd.Categorical(out[column].astype(object).fillna(""))
            return out

        return cls(ops=join([p.ops for p in parts]), calls=join([p.calls for p in parts]),
                   ranges=join([p.ranges for p in parts]),
                   pid={k: v for p in parts for k, v in p.pid.items()},
                   gpu_name={k: v for p in parts for k, v in p.gpu_name.items()},
                   versions={k: v for p in parts for k, v in p.versions.items()})


def ops_frame(**columns: Any) -> pd.DataFrame:
    return _frame(("process", "device", "stream", "kind", "start", "end", "correlation"), columns)


def calls_frame(**columns: Any) -> pd.DataFrame:
    return _frame(("process", "tid", "start", "end", "correlation", "stream_arg", "event_arg"), columns)


def ranges_frame(**columns: Any) -> pd.DataFrame:
    return _frame(("process", "tid", "start", "end"), columns)


def _frame(ints: tuple[str, ...], columns: dict[str, Any]) -> pd.DataFrame:
    n = len(next(iter(columns.values()))) if columns else 0
    out = {c: np.asarray(columns[c], dtype=np.int64) if c in columns else np.full(n, NO_ID, np.int64) for c in ints}
    for c in ("name", "domain"):
        if c in columns:
            out[c] = pd.Categorical(np.asarray(columns[c], dtype=object))
    return pd.DataFrame(out)


# --- JSON ----------------------------------------------------------------------------------------

def _raw_of_process(tool: dict, source: str, index: int) -> Raw:
    if not isinstance(tool, dict):
        raise BadInput(source, "rocprofiler-sdk-tool entry is not an object")
    meta = tool.get("metadata") or {}
    pid = _int(meta.get("pid"), 0)
    process = (index << 32) | pid
    kinds = _Names(tool.get("strings", {}).get("buffer_records"), source)
    records = tool.get("buffer_records")
    if not isinstance(records, dict) or "kernel_dispatch" not in records:
        raise BadInput(source, "no buffer_records.kernel_dispatch: was rocprofv3 run with --kernel-trace?")
    gpus = _gpu_agents(tool.get("agents") or [])
    symbols = {_int(s.get("kernel_id"), -1): _kernel_name(s) for s in tool.get("kernel_symbols") or []}
    try:
        ops = pd.concat([_dispatches(records["kernel_dispatch"], gpus, symbols, process),
                         _copies(records.get("memory_copy") or [], gpus, kinds, process)], ignore_index=True)
        calls = _hip_calls(records.get("hip_api") or [], kinds, process)
        markers = dict(_marker_messages(tool.get("strings", {}).get("marker_api")))
        ranges = pd.concat([_markers(records.get("marker_api") or [], kinds, markers, process),
                            _api_ranges(records.get("rccl_api") or [], kinds, process, "rccl")], ignore_index=True)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadInput(source, f"a buffer record lacks a field or holds a wrong type ({type(e).__name__}: {e})") from None
    names = {(process, device): name for device, name in gpus.values()}
    return Raw(ops, calls, ranges, pid={process: pid}, gpu_name=names)


class _Names:
    """strings.buffer_records: kind code -> kind name, (kind, operation) -> operation name."""

    def __init__(self, table: Any, source: str):
        if not isinstance(table, list):
            raise BadInput(source, "no strings.buffer_records: cannot name record kinds")
        self.kinds = [str(entry.get("kind", "")) for entry in table]
        self.operations = [list(entry.get("operations") or []) for entry in table]

    def kind(self, code: int) -> str:
        return self.kinds[code] if 0 <= code < len(self.kinds) else f"kind {code}"

    def operation(self, kind: int, op: int) -> str:
        ops = self.operations[kind] if 0 <= kind < len(self.operations) else []
        return str(ops[op]) if 0 <= op < len(ops) else f"operation {op}"

    def named(self, kinds: np.ndarray, ops: np.ndarray) -> np.ndarray:
        """Operation names of many records, each distinct (kind, operation) looked up once."""
        pairs, inverse = np.unique(np.stack([kinds, ops], axis=1), axis=0, return_inverse=True)
        names = np.array([self.operation(int(k), int(o)) for k, o in pairs] or [""], dtype=object)
        return names[inverse.reshape(-1)] if len(kinds) else np.empty(0, dtype=object)


def _gpu_agents(agents: list[dict]) -> dict[int, tuple[int, str]]:
    """Agent handle -> (GPU ordinal, product name) for GPU agents."""
    found = {}
    for agent in agents:
        if _int(agent.get("type"), 0) != _GPU_AGENT:
            continue
        handle = _int((agent.get("id") or {}).get("handle"), -1)
        ordinal = _int(agent.get("logical_node_type_id", agent.get("gpu_index")), -1)
        found[handle] = (ordinal, str(agent.get("product_name") or agent.get("name") or ""))
    return found


def _kernel_name(symbol: dict) -> str:
    """The demangled name without its argument list's clone suffix (`formatted_kernel_name`, what
    rocprofv3 displays and the rocpd database stores as display_name), else the shorter ones."""
    for key in ("formatted_kernel_name", "truncated_kernel_name", "demangled_kernel_name", "kernel_name"):
        name = symbol.get(key)
        if name:
            return str(name).removesuffix(".kd")
    return ""


def _handle(value: Any) -> int:
    return _int(value.get("handle") if isinstance(value, dict) else value, NO_ID)


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _device_of(agents: np.ndarray, gpus: dict[int, tuple[int, str]]) -> np.ndarray:
    lookup = {h: d for h, (d, _) in gpus.items()}
    distinct, inverse = np.unique(agents, return_inverse=True)
    return np.array([lookup.get(int(h), NO_ID) for h in distinct] or [NO_ID], dtype=np.int64)[inverse.reshape(-1)]


def _dispatches(rows: list[dict], gpus: dict, symbols: dict[int, str], process: int) -> pd.DataFrame:
    info = [r["dispatch_info"] for r in rows]
    agent = np.array([_handle(i["agent_id"]) for i in info], dtype=np.int64)
    stream = np.array([_handle(r["stream_id"]) if "stream_id" in r else _handle(i.get("queue_id"))
                       for r, i in zip(rows, info)], dtype=np.int64)
    kernel = np.array([i["kernel_id"] for i in info], dtype=np.int64)
    distinct, inverse = np.unique(kernel, return_inverse=True)
    names = np.array([symbols.get(int(k), "") for k in distinct] or [""], dtype=object)[inverse.reshape(-1)]
    return ops_frame(
        process=np.full(len(rows), process), device=_device_of(agent, gpus), stream=stream,
        kind=np.full(len(rows), GPU_OP_KINDS.index("kernel")),
        start=[r["start_timestamp"] for r in rows], end=[r["end_timestamp"] for r in rows],
        correlation=[r["correlation_id"]["internal"] for r in rows], name=names)


def _copies(rows: list[dict], gpus: dict, kinds: _Names, process: int) -> pd.DataFrame:
    """A copy runs on the GPU it writes to, else the GPU it reads from (a device-to-host copy)."""
    dst = _device_of(np.array([_handle(r.get("dst_agent_id")) for r in rows], dtype=np.int64), gpus)
    src = _device_of(np.array([_handle(r.get("src_agent_id")) for r in rows], dtype=np.int64), gpus)
    ops = kinds.named(np.array([r["kind"] for r in rows], dtype=np.int64),
                      np.array([r["operation"] for r in rows], dtype=np.int64))
    return ops_frame(
        process=np.full(len(rows), process), device=np.where(dst != NO_ID, dst, src),
        stream=[_handle(r.get("stream_id")) for r in rows], kind=np.full(len(rows), GPU_OP_KINDS.index("memcpy")),
        start=[r["start_timestamp"] for r in rows], end=[r["end_timestamp"] for r in rows],
        correlation=[r["correlation_id"]["internal"] for r in rows],
        name=np.array([MEMCPY_NAMES.get(n, f"Memcpy ({n})") for n in ops], dtype=object))


def _hip_calls(rows: list[dict], kinds: _Names, process: int) -> pd.DataFrame:
    """HIP runtime calls. Buffer records carry no arguments unless the SDK wrote them (`args`, as a
    {name: value} object or a list of {name, value}); without them a sync's stream and event
    stay NO_ID."""
    args = [_args(r.get("args")) for r in rows]
    return calls_frame(
        process=np.full(len(rows), process), tid=[r["thread_id"] for r in rows],
        start=[r["start_timestamp"] for r in rows], end=[r["end_timestamp"] for r in rows],
        correlation=[r["correlation_id"]["internal"] for r in rows],
        stream_arg=[parse_handle(a.get("stream")) for a in args], event_arg=[parse_handle(a.get("event")) for a in args],
        name=kinds.named(np.array([r["kind"] for r in rows], dtype=np.int64),
                         np.array([r["operation"] for r in rows], dtype=np.int64)))


def _args(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {str(a.get("name")): a.get("value") for a in value if isinstance(a, dict)}
    return {}


def parse_handle(value: Any) -> int:
    """A HIP handle as the SDK prints it ("0x55d0c0a1b2c0", "0", a number), NO_ID when unknown."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value) & 0x7FFFFFFFFFFFFFFF
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("nullptr", "null", "(nil)"):
            return 0
        try:
            return int(text, 0) & 0x7FFFFFFFFFFFFFFF
        except ValueError:
            return NO_ID
    return NO_ID


def _marker_messages(table: Any) -> list[tuple[int, str]]:
    """strings.marker_api: the message of each ROCTx range, keyed by its internal correlation id
    (cereal writes a map as a list of {key, value})."""
    if isinstance(table, dict):
        return [(int(k), str(v)) for k, v in table.items()]
    return [(_int(e.get("key"), NO_ID), str(e.get("value", ""))) for e in table or [] if isinstance(e, dict)]


def _markers(rows: list[dict], kinds: _Names, messages: dict[int, str], process: int) -> pd.DataFrame:
    """ROCTx ranges: rocprofv3 pairs push/pop (roctxThreadRangeA) and start/stop
    (roctxProcessRangeA) itself and writes one record per range; instant marks have no extent."""
    frame = _api_ranges(rows, kinds, process, "")
    corr = np.array([r["correlation_id"]["internal"] for r in rows], dtype=np.int64)
    message = np.array([messages.get(int(c)) for c in corr], dtype=object)
    names = np.where(pd.isna(message), frame["name"].astype(object).to_numpy(), message)
    return frame.assign(name=pd.Categorical(names.astype(object)))[frame["end"] > frame["start"]]


def _api_ranges(rows: list[dict], kinds: _Names, process: int, domain: str) -> pd.DataFrame:
    return ranges_frame(
        process=np.full(len(rows), process), tid=[r["thread_id"] for r in rows],
        start=[r["start_timestamp"] for r in rows], end=[r["end_timestamp"] for r in rows],
        name=kinds.named(np.array([r["kind"] for r in rows], dtype=np.int64),
                         np.array([r["operation"] for r in rows], dtype=np.int64)),
        domain=np.full(len(rows), domain, dtype=object))


# --- assembly (shared with rocpd.py) -------------------------------------------------------------

def assemble(raw: Raw, source: str, first_rank: int, fmt: str) -> Trace:
    """Ranks, then frames. Each (process, GPU) where the process ran kernels is a rank, numbered
    from first_rank in (GPU, pid) order; a process's copies on a GPU where it ran no kernel (a
    peer copy) belong to its busiest rank; host calls and ranges belong to every rank of their
    process."""
    ops = raw.ops[raw.ops["device"].to_numpy() != NO_ID].reset_index(drop=True)
    if not (ops["kind"].to_numpy() == GPU_OP_KINDS.index("kernel")).any():
        raise BadInput(source, "no kernel dispatches on a GPU: was it captured with --kernel-trace?")
    if (ops["end"].to_numpy() < ops["start"].to_numpy()).any():
        raise BadInput(source, "a GPU op ends before it starts: corrupt timestamps")
    ranks = _Ranks.of(ops, raw.pid, first_rank)
    infos = [RankInfo(rank=r, source=source, device=d, pid=raw.pid.get(p, p), format=fmt,
                      gpu_name=raw.gpu_name.get((p, d)), versions=dict(raw.versions))
             for r, p, d in zip(ranks.numbers.tolist(), ranks.process.tolist(), ranks.device.tolist())]
    return Trace(
        ranks=infos,
        gpu_ops=frame_from_columns({
            "rank": ranks.of_ops, "device": ops["device"].to_numpy(), "stream": ops["stream"].to_numpy(),
            "kind": pd.Categorical.from_codes(ops["kind"].to_numpy(), dtype=GPU_OP_COLUMNS["kind"]),
            "start": ops["start"].to_numpy(), "end": ops["end"].to_numpy(), "name": ops["name"].array,
            "correlation": ops["correlation"].to_numpy()}, GPU_OP_COLUMNS),
        host_calls=_host_call_frame(raw, ranks),
        syncs=_sync_frame(hip_syncs(raw.calls, ops, ranks), ranks),
        ranges=_range_frame(raw, ranks),
        collectives=frame_from_columns({}, COLLECTIVE_COLUMNS),
    )


@dataclass
class _Ranks:
    process: np.ndarray  # per rank
    device: np.ndarray
    numbers: np.ndarray
    of_ops: np.ndarray  # per op
    pairs: pd.MultiIndex  # every (process, device) with GPU work ...
    pair_rank: np.ndarray  # ... and its rank

    @classmethod
    def of(cls, ops: pd.DataFrame, pid: dict[int, int], first_rank: int) -> _Ranks:
        keys = pd.DataFrame({"process": ops["process"], "device": ops["device"],
                             "kernel": ops["kind"].to_numpy() == GPU_OP_KINDS.index("kernel")})
        pairs = keys.groupby(["process", "device"]).agg(ops=("kernel", "size"), kernels=("kernel", "sum")).reset_index()
        ran_kernels = pairs.groupby("process")["kernels"].transform("sum").to_numpy() > 0
        own = (pairs["kernels"].to_numpy() > 0) | ~ran_kernels
        home = (pairs[own].sort_values(["ops", "device"], ascending=[False, True])
                .drop_duplicates("process").set_index("process")["device"])
        home_of_pair = np.where(own, pairs["device"].to_numpy(), home.reindex(pairs["process"]).to_numpy())
        ranked = pairs[own].assign(pid=lambda d: d["process"].map(lambda p: pid.get(p, p)))
        ranked = ranked.sort_values(["device", "pid", "process"], kind="stable")
        index = pd.MultiIndex.from_frame(ranked[["process", "device"]])
        pair_rank = first_rank + index.get_indexer(pd.MultiIndex.from_arrays([pairs["process"].to_numpy(), home_of_pair]))
        pair_index = pd.MultiIndex.from_frame(pairs[["process", "device"]])
        of_ops = pair_rank[pair_index.get_indexer(pd.MultiIndex.from_frame(keys[["process", "device"]]))]
        return cls(ranked["process"].to_numpy(), ranked["device"].to_numpy(), first_rank + np.arange(len(ranked)),
                   of_ops, pair_index, pair_rank)

    def of_pairs(self, process: np.ndarray, device: np.ndarray) -> np.ndarray:
        found = self.pairs.get_indexer(pd.MultiIndex.from_arrays([process, device]))
        return np.where(found >= 0, self.pair_rank[np.maximum(found, 0)], NO_ID) if found.size else found

    def spread(self, process: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, rank) for each row and each rank of its process; processes without GPU work drop out."""
        order = np.argsort(self.process, kind="stable")
        by_process = self.process[order]
        lo = np.searchsorted(by_process, process, side="left")
        count = np.searchsorted(by_process, process, side="right") - lo
        rows = np.repeat(np.arange(process.size), count)
        nth = np.arange(rows.size) - np.repeat(np.cumsum(count) - count, count)
        return rows, self.numbers[order][np.repeat(lo, count) + nth]

    def sole_device(self, process: np.ndarray) -> np.ndarray:
        """The process's GPU where it has exactly one rank, else NO_ID."""
        counts = pd.Series(self.process).value_counts()
        single = pd.Series(self.device, index=self.process)[counts.reindex(self.process).to_numpy() == 1]
        return single.reindex(process).fillna(NO_ID).to_numpy(np.int64)


def _host_call_frame(raw: Raw, ranks: _Ranks) -> pd.DataFrame:
    calls = raw.calls
    rows, rank = ranks.spread(calls["process"].to_numpy())
    return frame_from_columns({
        "rank": rank, "pid": _pids(raw, calls["process"].to_numpy()[rows]), "tid": calls["tid"].to_numpy()[rows],
        "start": calls["start"].to_numpy()[rows], "end": calls["end"].to_numpy()[rows],
        "name": calls["name"].array[rows], "correlation": calls["correlation"].to_numpy()[rows],
        "api": pd.Categorical.from_codes(np.full(rows.size, HOST_APIS.index("runtime")),
                                         dtype=HOST_CALL_COLUMNS["api"])}, HOST_CALL_COLUMNS)


def _range_frame(raw: Raw, ranks: _Ranks) -> pd.DataFrame:
    ranges = raw.ranges
    rows, rank = ranks.spread(ranges["process"].to_numpy())
    names = ranges["name"].array[rows]
    is_step = np.fromiter((bool(_PROFILER_STEP.match(c)) for c in names.categories), bool, len(names.categories))
    step = is_step[names.codes] if is_step.size else np.zeros(rows.size, bool)
    source = np.where(step, RANGE_SOURCES.index("profiler_step"), RANGE_SOURCES.index("nvtx"))
    return frame_from_columns({
        "rank": rank, "pid": _pids(raw, ranges["process"].to_numpy()[rows]), "tid": ranges["tid"].to_numpy()[rows],
        "start": ranges["start"].to_numpy()[rows], "end": ranges["end"].to_numpy()[rows], "name": names,
        "source": pd.Categorical.from_codes(source, dtype=RANGE_COLUMNS["source"]),
        "domain": ranges["domain"].array[rows]}, RANGE_COLUMNS)


def _pids(raw: Raw, process: np.ndarray) -> np.ndarray:
    return pd.Series(process).map(lambda p: raw.pid.get(p, p)).to_numpy(np.int64) if process.size else process


# --- happens-before from HIP calls ---------------------------------------------------------------

def hip_syncs(calls: pd.DataFrame, ops: pd.DataFrame, ranks: _Ranks) -> pd.DataFrame:
    """Sync rows (process, device, kind code, start, end, stream, event, correlation, wait_on_stream,
    record_correlation) from the HIP calls that order GPU work.

    A call names its stream by the hipStream_t handle; GPU ops carry the SDK's stream id. The
    handle -> (device, stream id) map is learnt from the calls that launched GPU ops (same
    process and correlation id). A handle no launch used, or a call without arguments, leaves
    the stream NO_ID; the race checker then says it could not order it. Events are their
    hipEvent_t handles; a wait is linked to the latest record of the same event before it."""
    names = calls["name"].astype(str)
    kind_name = names.map(SYNC_OF_HIP_CALL)
    rows = calls[kind_name.notna().to_numpy()].assign(kind=kind_name.dropna().map(SYNC_KINDS.index).astype(np.int8))
    device, stream = _streams_of_handles(calls, ops, rows)
    rows = rows.assign(device=np.where(device != NO_ID, device, ranks.sole_device(rows["process"].to_numpy())),
                       stream=stream, event=rows["event_arg"].to_numpy(), wait_on_stream=NO_ID,
                       record_correlation=NO_ID).reset_index(drop=True)
    return _link_waits(rows)


def _streams_of_handles(calls: pd.DataFrame, ops: pd.DataFrame, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    launches = calls.loc[calls["stream_arg"].to_numpy() != NO_ID, ["process", "correlation", "stream_arg"]]
    learnt = launches.merge(ops[["process", "correlation", "device", "stream"]], on=["process", "correlation"])
    learnt = learnt.drop_duplicates(["process", "stream_arg"])
    found = pd.MultiIndex.from_frame(learnt[["process", "stream_arg"]]).get_indexer(
        pd.MultiIndex.from_frame(rows[["process", "stream_arg"]])) if len(rows) else np.empty(0, np.int64)
    known = found >= 0
    device = np.where(known, learnt["device"].to_numpy()[np.maximum(found, 0)] if len(learnt) else NO_ID, NO_ID)
    stream = np.where(known, learnt["stream"].to_numpy()[np.maximum(found, 0)] if len(learnt) else NO_ID, NO_ID)
    return device.astype(np.int64), stream.astype(np.int64)


def _link_waits(rows: pd.DataFrame) -> pd.DataFrame:
    """wait_on_stream / record_correlation of each stream_wait_event and event_sync: the latest
    record of the same event in the same process made before it."""
    records = rows[rows["kind"].to_numpy() == SYNC_KINDS.index("event_record")]
    is_wait = (np.isin(rows["kind"].to_numpy(), [SYNC_KINDS.index("stream_wait_event"), SYNC_KINDS.index("event_sync")])
               & (rows["event"].to_numpy() != NO_ID))
    if not is_wait.any() or not len(records):
        return rows
    asking = rows.loc[is_wait, ["process", "event", "start"]].reset_index().sort_values("start", kind="stable")
    recorded = (records[["process", "event", "start", "stream", "correlation"]]
                .rename(columns={"stream": "rec_stream", "correlation": "rec_corr"}).sort_values("start", kind="stable"))
    found = pd.merge_asof(asking, recorded, on="start", by=["process", "event"], allow_exact_matches=False)
    found = found.dropna(subset=["rec_corr"])
    rows.loc[found["index"].to_numpy(), "wait_on_stream"] = found["rec_stream"].astype(np.int64).to_numpy()
    rows.loc[found["index"].to_numpy(), "record_correlation"] = found["rec_corr"].astype(np.int64).to_numpy()
    return rows


def _sync_frame(syncs: pd.DataFrame, ranks: _Ranks) -> pd.DataFrame:
    """A sync row belongs to the rank of its (process, device); a row whose device is unknown in a
    process with several GPUs cannot be placed and is dropped."""
    rank = ranks.of_pairs(syncs["process"].to_numpy(), syncs["device"].to_numpy())
    kept = syncs[rank != NO_ID]
    return frame_from_columns({
        "rank": rank[rank != NO_ID],
        "kind": pd.Categorical.from_codes(kept["kind"].to_numpy(), dtype=SYNC_COLUMNS["kind"]),
        **{c: kept[c].to_numpy() for c in ("start", "end", "device", "stream", "event", "wait_on_stream",
                                           "record_correlation", "correlation")}}, SYNC_COLUMNS)
