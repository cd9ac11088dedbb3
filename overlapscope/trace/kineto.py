"""Read a PyTorch profiler (Kineto) Chrome trace into a `Trace`.

The JSON is decoded by msgspec straight into typed structs that keep only the fields we use
(unknown keys are skipped in C), with `ts`/`dur` kept as raw number text so that
`decimal_ns` converts them to nanoseconds exactly. One Python pass sorts events by category;
columns are then built per category.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from ..errors import BadInput
from .decimal_ns import NotANumber, us_text_to_ns
from .model import (
    COLLECTIVE_COLUMNS,
    GPU_OP_COLUMNS,
    HOST_CALL_COLUMNS,
    NO_ID,
    RANGE_COLUMNS,
    SYNC_COLUMNS,
    RankInfo,
    Trace,
    frame_from_columns,
)

_ZERO = msgspec.Raw(b"0")


class _Args(msgspec.Struct, frozen=True):
    # ROCm traces write some ids as strings ("stream": "0x0"); _ints() converts them
    correlation: int | str = NO_ID
    stream: int | str = NO_ID
    device: int | str = NO_ID
    external_id: int = msgspec.field(default=NO_ID, name="External id")
    record_function_id: int = msgspec.field(default=NO_ID, name="Record function id")
    # cuda_sync
    cuda_sync_kind: str = ""
    wait_on_stream: int = NO_ID
    wait_on_cuda_event_record_corr_id: int = NO_ID
    wait_on_cuda_event_id: int = NO_ID
    # NCCL metadata on communication kernels (PyTorch 2.1+)
    collective: str = msgspec.field(default="", name="Collective name")
    process_group: str = msgspec.field(default="", name="Process Group Name")
    group_size: int = msgspec.field(default=NO_ID, name="Group size")
    seq: int = msgspec.field(default=NO_ID, name="Seq")
    in_nelems: int = msgspec.field(default=NO_ID, name="In msg nelems")
    out_nelems: int = msgspec.field(default=NO_ID, name="Out msg nelems")
    dtype: str = ""


_NO_ARGS = _Args()


class _Event(msgspec.Struct):
    ph: str = ""
    cat: str = ""
    name: str = ""
    pid: int | str = NO_ID
    tid: int | str = NO_ID
    ts: msgspec.Raw = _ZERO
    dur: msgspec.Raw = _ZERO
    args: _Args = _NO_ARGS


class _DistributedInfo(msgspec.Struct):
    rank: int | None = None
    world_size: int | None = None
    nccl_version: str | None = None
    backend: str | None = None


class _DeviceProperties(msgspec.Struct):
    id: int = NO_ID
    name: str = ""


class _Document(msgspec.Struct):
    traceEvents: list[_Event] | None = None
    distributedInfo: _DistributedInfo | None = None
    deviceProperties: list[_DeviceProperties] | None = None


_decoder = msgspec.json.Decoder(_Document)

_GPU_OP_KIND = {"kernel": "kernel", "gpu_memcpy": "memcpy", "gpu_memset": "memset"}
_HOST_API = {"cuda_runtime": "runtime", "cuda_driver": "driver"}
_RANGE_SOURCE = {"user_annotation": "user_annotation", "gpu_user_annotation": "gpu_user_annotation", "cpu_op": "cpu_op"}
_SYNC_KIND = {
    "Stream Wait Event": "stream_wait_event",
    "Event Sync": "event_sync",
    "Stream Sync": "stream_sync",
    "Context Sync": "context_sync",
}
_PROFILER_STEP = re.compile(r"^ProfilerStep\s*#\s*\d+$")


def looks_like_kineto(head: bytes) -> bool:
    return b'"traceEvents"' in head


def read_kineto(data: bytes | bytearray | memoryview, source: str, rank: int | None) -> Trace:
    """Parse one rank's Kineto JSON (already decompressed). `rank` is the file-name or
    default rank, used only when the trace has no distributedInfo.rank."""
    try:
        doc = _decoder.decode(data)
    except msgspec.ValidationError as e:
        raise BadInput(source, f"not a Kineto trace the way we read it: {e}") from None
    except msgspec.DecodeError as e:
        raise BadInput(source, f"not valid JSON ({e}); is the file truncated?") from None
    if doc.traceEvents is None:
        raise BadInput(source, "JSON without a traceEvents list: not a Kineto/Chrome trace")

    by_cat: dict[str, list[_Event]] = defaultdict(list)
    for ev in doc.traceEvents:
        if ev.ph == "X":
            by_cat[ev.cat].append(ev)

    dist = doc.distributedInfo
    if dist is not None and dist.rank is not None:
        rank = dist.rank
    if rank is None:
        raise BadInput(source, "no rank: the trace has no distributedInfo.rank and the file name holds none (rank-3, rank3, _3.)")

    try:
        gpu_ops, collectives = _gpu_ops(by_cat, rank)
        host_calls = _host_calls(by_cat, rank)
        ranges = _ranges(by_cat, rank)
        syncs = _syncs(by_cat, host_calls, rank)
    except NotANumber as e:
        raise BadInput(source, f"a timestamp or duration is not a number: {e}") from None

    device = _main_device(gpu_ops)
    info = RankInfo(
        rank=rank,
        source=source,
        device=device,
        world_size=dist.world_size if dist else None,
        gpu_name=_gpu_name(doc.deviceProperties, device),
        format="kineto",
        versions={"nccl": dist.nccl_version} if dist and dist.nccl_version else {},
        extra={"backend": dist.backend} if dist and dist.backend else {},
    )
    return Trace(ranks=[info], gpu_ops=gpu_ops, host_calls=host_calls, syncs=syncs, ranges=ranges,
                 collectives=collectives)


def _times(events: list[_Event]) -> tuple[np.ndarray, np.ndarray]:
    start = us_text_to_ns(np.array([bytes(e.ts) for e in events], dtype=bytes))
    dur = us_text_to_ns(np.array([bytes(e.dur) for e in events], dtype=bytes))
    return start, start + dur


def _ints(values: list[Any]) -> np.ndarray:
    """Integer ids; strings that hold a number ("0x0", "7") are converted, other strings
    ("Spans") become NO_ID."""
    try:
        return np.array(values, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        return np.array([_as_int(v) for v in values], dtype=np.int64)


def _as_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 0)
    except ValueError:
        return NO_ID


def _gpu_ops(by_cat: dict[str, list[_Event]], rank: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    events: list[_Event] = []
    kinds: list[str] = []
    for cat, kind in _GPU_OP_KIND.items():
        evs = by_cat.get(cat, [])
        events.extend(evs)
        kinds.extend([kind] * len(evs))
    start, end = _times(events)
    pid = _ints([e.pid for e in events])
    tid = _ints([e.tid for e in events])
    device = _ints([e.args.device for e in events])
    stream = _ints([e.args.stream for e in events])
    device = np.where(device == NO_ID, pid, device)
    stream = np.where(stream == NO_ID, tid, stream)
    correlation = _ints([e.args.correlation for e in events])
    gpu_ops = frame_from_columns(
        {
            "rank": np.full(len(events), rank),
            "device": device,
            "stream": stream,
            "kind": kinds,
            "start": start,
            "end": end,
            "name": [e.name for e in events],
            "correlation": correlation,
        },
        GPU_OP_COLUMNS,
    )
    with_meta = [e for e in by_cat.get("kernel", []) if e.args.collective]
    collectives = frame_from_columns(
        {
            "rank": np.full(len(with_meta), rank),
            "correlation": _ints([e.args.correlation for e in with_meta]),
            "collective": [e.args.collective for e in with_meta],
            "process_group": [e.args.process_group for e in with_meta],
            "group_size": [e.args.group_size for e in with_meta],
            "seq": [e.args.seq for e in with_meta],
            "in_nelems": [e.args.in_nelems for e in with_meta],
            "out_nelems": [e.args.out_nelems for e in with_meta],
            "dtype": [e.args.dtype for e in with_meta],
        },
        COLLECTIVE_COLUMNS,
    )
    return gpu_ops, collectives


def _host_calls(by_cat: dict[str, list[_Event]], rank: int) -> pd.DataFrame:
    events: list[_Event] = []
    apis: list[str] = []
    for cat, api in _HOST_API.items():
        evs = by_cat.get(cat, [])
        events.extend(evs)
        apis.extend([api] * len(evs))
    start, end = _times(events)
    return frame_from_columns(
        {
            "rank": np.full(len(events), rank),
            "pid": _ints([e.pid for e in events]),
            "tid": _ints([e.tid for e in events]),
            "start": start,
            "end": end,
            "name": [e.name for e in events],
            "correlation": _ints([e.args.correlation for e in events]),
            "api": apis,
            "external_id": [e.args.external_id for e in events],
        },
        HOST_CALL_COLUMNS,
    )


def _ranges(by_cat: dict[str, list[_Event]], rank: int) -> pd.DataFrame:
    events: list[_Event] = []
    sources: list[str] = []
    for cat, source in _RANGE_SOURCE.items():
        evs = by_cat.get(cat, [])
        events.extend(evs)
        sources.extend([source] * len(evs))
    # ProfilerStep#N is a user_annotation in recent PyTorch and a cpu_op in older ones
    sources = ["profiler_step" if s != "gpu_user_annotation" and _PROFILER_STEP.match(e.name) else s
               for e, s in zip(events, sources)]
    start, end = _times(events)
    is_gpu = np.array([s == "gpu_user_annotation" for s in sources], dtype=bool)
    tid = _ints([e.tid for e in events])
    return frame_from_columns(
        {
            "rank": np.full(len(events), rank),
            "pid": _ints([e.pid for e in events]),
            "tid": tid,
            "start": start,
            "end": end,
            "name": [e.name for e in events],
            "source": sources,
            "domain": [""] * len(events),
            "stream": np.where(is_gpu, tid, NO_ID),
            "external_id": [e.args.external_id for e in events],
            "record_function_id": [e.args.record_function_id for e in events],
        },
        RANGE_COLUMNS,
    )


def _syncs(by_cat: dict[str, list[_Event]], host_calls: pd.DataFrame, rank: int) -> pd.DataFrame:
    events = [e for e in by_cat.get("cuda_sync", []) if (e.args.cuda_sync_kind or e.name) in _SYNC_KIND]
    start, end = _times(events)
    waits = frame_from_columns(
        {
            "rank": np.full(len(events), rank),
            "kind": [_SYNC_KIND[e.args.cuda_sync_kind or e.name] for e in events],
            "start": start,
            "end": end,
            "device": _ints([e.args.device for e in events]),
            "stream": _ints([e.args.stream for e in events]),
            "event": [e.args.wait_on_cuda_event_id for e in events],
            "wait_on_stream": [e.args.wait_on_stream for e in events],
            "record_correlation": [e.args.wait_on_cuda_event_record_corr_id for e in events],
            "correlation": _ints([e.args.correlation for e in events]),
        },
        SYNC_COLUMNS,
    )
    return pd.concat([_event_records(waits, host_calls, rank), waits], ignore_index=True)


def _event_records(waits: pd.DataFrame, host_calls: pd.DataFrame, rank: int) -> pd.DataFrame:
    """Kineto has no event-record activity: a record is the cudaEventRecord call that a wait names
    (wait_on_cuda_event_record_corr_id), on the stream the wait says it was recorded on."""
    named = waits[(waits["record_correlation"] != NO_ID) & (waits["wait_on_stream"] != NO_ID)]
    named = named.drop_duplicates("record_correlation")
    calls = host_calls[["correlation", "start", "end"]].drop_duplicates("correlation")
    rec = named[["record_correlation", "wait_on_stream", "event", "device"]].merge(
        calls, left_on="record_correlation", right_on="correlation", how="inner")
    return frame_from_columns(
        {
            "rank": np.full(len(rec), rank),
            "kind": ["event_record"] * len(rec),
            "start": rec["start"].to_numpy(),
            "end": rec["end"].to_numpy(),
            "device": rec["device"].to_numpy(),
            "stream": rec["wait_on_stream"].to_numpy(),
            "event": rec["event"].to_numpy(),
            "correlation": rec["record_correlation"].to_numpy(),
        },
        SYNC_COLUMNS,
    )


def _main_device(gpu_ops: pd.DataFrame) -> int | None:
    if len(gpu_ops) == 0:
        return None
    counts = gpu_ops["device"].value_counts()
    return int(counts.index[0])


def _gpu_name(props: list[_DeviceProperties] | None, device: int | None) -> str | None:
    if device is None:
        return None
    for p in props or []:
        if p.id == device and p.name:
            return p.name
    return None

