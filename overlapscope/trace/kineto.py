"""Read a PyTorch profiler (Kineto) Chrome trace into a `Trace`.

The decompressed text streams through `json_split`, which hands over runs of whole events.
msgspec decodes each run straight into typed structs that keep only the fields we use (unknown
keys are skipped in C), with `ts`/`dur` kept as raw number text so that `decimal_ns` converts
them to nanoseconds exactly. Each run is reduced to columns and dropped before the next, so
memory grows with the kept columns, not with the JSON text.
"""

from __future__ import annotations

import gc
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from ..errors import BadInput
from .decimal_ns import NotANumber, us_text_to_ns
from .json_split import SplitError, split_events
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


class _Args(msgspec.Struct, frozen=True, gc=False):
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


class _Event(msgspec.Struct, gc=False):
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


class _Skeleton(msgspec.Struct):
    """The document around the traceEvents list."""

    distributedInfo: _DistributedInfo | None = None
    deviceProperties: list[_DeviceProperties] | None = None


_events_decoder = msgspec.json.Decoder(list[_Event])
_skeleton_decoder = msgspec.json.Decoder(_Skeleton)

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


def read_kineto(chunks: Iterable[bytes | bytearray], source: str, rank: int | None) -> Trace:
    """Parse one rank's Kineto JSON from its decompressed chunks. `rank` is the file-name or
    default rank, used only when the trace has no distributedInfo.rank."""
    columns = _Columns()
    batches, splitter = split_events(chunks, _events_decoder.decode, msgspec.DecodeError, (msgspec.ValidationError,))
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived structs: cyclic GC passes would only cost time
    try:
        for events in batches:
            columns.add(events)
        skeleton = _skeleton_decoder.decode(splitter.skeleton)
    except SplitError as e:
        raise BadInput(source, f"not valid JSON ({e})") from None
    except msgspec.ValidationError as e:
        raise BadInput(source, f"not a Kineto trace the way we read it: {e}") from None
    except msgspec.DecodeError as e:
        raise BadInput(source, f"not valid JSON ({e}); is the file truncated?") from None
    except NotANumber as e:
        raise BadInput(source, f"a timestamp or duration is not a number: {e}") from None
    finally:
        if gc_was_enabled:
            gc.enable()

    dist = skeleton.distributedInfo
    if dist is not None and dist.rank is not None:
        rank = dist.rank
    if rank is None:
        raise BadInput(source, "no rank: the trace has no distributedInfo.rank and the file name holds none "
                               "(rank-3, rank3, _3.)")
    gpu_ops = columns.frame("gpu_ops", GPU_OP_COLUMNS, rank)
    host_calls = columns.frame("host_calls", HOST_CALL_COLUMNS, rank)
    ranges = _mark_profiler_steps(columns.frame("ranges", RANGE_COLUMNS, rank))
    waits = columns.frame("syncs", SYNC_COLUMNS, rank)
    syncs = pd.concat([_event_records(waits, host_calls, rank), waits], ignore_index=True)
    device = _main_device(gpu_ops)
    info = RankInfo(
        rank=rank,
        source=source,
        device=device,
        world_size=dist.world_size if dist else None,
        gpu_name=_gpu_name(skeleton.deviceProperties, device),
        format="kineto",
        versions={"nccl": dist.nccl_version} if dist and dist.nccl_version else {},
        extra={"backend": dist.backend} if dist and dist.backend else {},
    )
    return Trace(ranks=[info], gpu_ops=gpu_ops, host_calls=host_calls, syncs=syncs, ranges=ranges,
                 collectives=columns.frame("collectives", COLLECTIVE_COLUMNS, rank))


class _Columns:
    """Columns of every frame, grown batch by batch. Strings are factorised per batch into one
    vocabulary per column, so the per-event string objects die with their batch."""

    def __init__(self) -> None:
        self._parts: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
        self._vocab: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)

    def add(self, events: list[_Event]) -> None:
        by_cat: dict[str, list[_Event]] = defaultdict(list)
        for ev in events:
            if ev.ph == "X":
                by_cat[ev.cat].append(ev)
        for cat, kind in _GPU_OP_KIND.items():
            if by_cat.get(cat):
                self._gpu_ops(by_cat[cat], kind)
        for cat, api in _HOST_API.items():
            if by_cat.get(cat):
                self._host_calls(by_cat[cat], api)
        for cat, source in _RANGE_SOURCE.items():
            if by_cat.get(cat):
                self._ranges(by_cat[cat], source)
        waits = [e for e in by_cat.get("cuda_sync", ()) if (e.args.cuda_sync_kind or e.name) in _SYNC_KIND]
        if waits:
            self._syncs(waits)

    def _put(self, frame: str, **cols: Any) -> None:
        for name, values in cols.items():
            if isinstance(values, list) and values and isinstance(values[0], str):
                codes, uniques = pd.factorize(np.array(values, dtype=object))
                vocab = self._vocab[(frame, name)]
                ids = np.array([vocab.setdefault(u, len(vocab)) for u in uniques], dtype=np.int64)
                values = ids[codes]
            self._parts[frame][name].append(np.asarray(values))

    def frame(self, frame: str, spec: dict[str, Any], rank: int) -> pd.DataFrame:
        parts = self._parts.get(frame, {})
        data: dict[str, Any] = {}
        for name, pieces in parts.items():
            values = np.concatenate(pieces)
            if (frame, name) in self._vocab:
                values = pd.Categorical.from_codes(values, categories=list(self._vocab[(frame, name)]))
            data[name] = values
        n = len(next(iter(data.values()))) if data else 0
        data["rank"] = np.full(n, rank)
        return frame_from_columns(data, spec)

    def _gpu_ops(self, events: list[_Event], kind: str) -> None:
        start, end = _times(events)
        device = _ints([e.args.device for e in events])
        stream = _ints([e.args.stream for e in events])
        correlation = _ints([e.args.correlation for e in events])
        self._put("gpu_ops",
                  device=np.where(device == NO_ID, _ints([e.pid for e in events]), device),
                  stream=np.where(stream == NO_ID, _ints([e.tid for e in events]), stream),
                  kind=[kind] * len(events), start=start, end=end, name=[e.name for e in events],
                  correlation=correlation)
        with_meta = [e.args for e in events if e.args.collective]
        if with_meta:
            self._put("collectives",
                      correlation=_ints([a.correlation for a in with_meta]),
                      collective=[a.collective for a in with_meta],
                      process_group=[a.process_group for a in with_meta],
                      group_size=np.array([a.group_size for a in with_meta], dtype=np.int64),
                      seq=np.array([a.seq for a in with_meta], dtype=np.int64),
                      in_nelems=np.array([a.in_nelems for a in with_meta], dtype=np.int64),
                      out_nelems=np.array([a.out_nelems for a in with_meta], dtype=np.int64),
                      dtype=[a.dtype for a in with_meta])

    def _host_calls(self, events: list[_Event], api: str) -> None:
        start, end = _times(events)
        self._put("host_calls", pid=_ints([e.pid for e in events]), tid=_ints([e.tid for e in events]),
                  start=start, end=end, name=[e.name for e in events],
                  correlation=_ints([e.args.correlation for e in events]), api=[api] * len(events),
                  external_id=np.array([e.args.external_id for e in events], dtype=np.int64))

    def _ranges(self, events: list[_Event], source: str) -> None:
        start, end = _times(events)
        tid = _ints([e.tid for e in events])
        self._put("ranges", pid=_ints([e.pid for e in events]), tid=tid, start=start, end=end,
                  name=[e.name for e in events], source=[source] * len(events),
                  stream=tid if source == "gpu_user_annotation" else np.full(len(events), NO_ID),
                  external_id=np.array([e.args.external_id for e in events], dtype=np.int64),
                  record_function_id=np.array([e.args.record_function_id for e in events], dtype=np.int64))

    def _syncs(self, events: list[_Event]) -> None:
        start, end = _times(events)
        self._put("syncs", kind=[_SYNC_KIND[e.args.cuda_sync_kind or e.name] for e in events],
                  start=start, end=end,
                  device=_ints([e.args.device for e in events]),
                  stream=_ints([e.args.stream for e in events]),
                  event=np.array([e.args.wait_on_cuda_event_id for e in events], dtype=np.int64),
                  wait_on_stream=np.array([e.args.wait_on_stream for e in events], dtype=np.int64),
                  record_correlation=np.array([e.args.wait_on_cuda_event_record_corr_id for e in events],
                                              dtype=np.int64),
                  correlation=_ints([e.args.correlation for e in events]))


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


def _mark_profiler_steps(ranges: pd.DataFrame) -> pd.DataFrame:
    """ProfilerStep#N is a user_annotation in recent PyTorch and a cpu_op in older ones."""
    names = ranges["name"].cat
    is_step_name = np.fromiter((bool(_PROFILER_STEP.match(c)) for c in names.categories), dtype=bool,
                               count=len(names.categories))
    codes = names.codes.to_numpy()
    step = np.zeros(len(ranges), dtype=bool)
    step[codes >= 0] = is_step_name[codes[codes >= 0]]
    step &= (ranges["source"] != "gpu_user_annotation").to_numpy()
    ranges.loc[step, "source"] = "profiler_step"
    return ranges


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
    return int(gpu_ops["device"].value_counts().index[0])


def _gpu_name(props: list[_DeviceProperties] | None, device: int | None) -> str | None:
    if device is None:
        return None
    for p in props or []:
        if p.id == device and p.name:
            return p.name
    return None
