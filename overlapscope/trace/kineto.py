"""Read a PyTorch profiler (Kineto) Chrome trace into a `Trace`.

The decompressed text streams through `json_split`, which hands over runs of whole events.
msgspec decodes each run straight into typed structs that keep only the fields we use (unknown
keys are skipped in C), with `ts`/`dur` kept as raw number text so that `decimal_ns` converts
them to nanoseconds exactly. Each run is reduced to columns and dropped before the next, so
memory grows with the kept columns, not with the JSON text.

Rows that cannot be read are never read as zero. The rule: when the rest of the trace stays exact
without them (one event's own defect, like a kernel with no `dur`), they are left out and counted
in `RankInfo.dropped_rows`; when the defect makes the rest unreliable, the file is refused with one
line (BadInput). Per case:
- an event we keep (GPU op, CUDA API call, host range, sync) without `ts` or `dur` (absent or
  null), or with a negative `dur`: dropped and counted ("Kineto GPU ops without ts or dur", ...);
- `ts + dur` past the int64 nanosecond range (or a `ts`/`dur` that alone is): refused, a clock that
  reads beyond year 2262 says the file's times are not to be trusted;
- an integer field (correlation, stream, device, pid, tid, ids, NCCL sizes) outside int64, as a
  number or as a "0x..." string: refused;
- JSON nested deeper than the decoder's recursion limit: refused.

Ranks: each (process, GPU) pair is a rank, as in the nsys reader. A Kineto file is one process,
so each GPU on which it ran kernels is a rank. One such GPU: the file's rank (distributedInfo.rank,
else the rank from the file name, else 0 for a lone file). Several: without distributedInfo.rank
they are numbered from the file's rank in GPU order (a lone file with kernels on GPUs 0 and 1 is
ranks 0 and 1; the loader refuses a run in which two files claim one number). With
distributedInfo.rank the file is refused: that rank names one process of a torch.distributed
world whose other numbers belong to other processes, so no second number is honest. Copies and
memsets on a GPU without kernels (peer copies) belong to the rank with the most GPU ops (ties: the
lowest GPU), as in the nsys reader. A CUDA API call belongs to the rank of the GPU ops it launched
(by correlation id); a call that launched none (a synchronize, an event record) and every host
range (`user_annotation`, `cpu_op`, profiler steps: ranges are thread-bound and name no GPU) are
copied to each rank of the file. `gpu_user_annotation` ranges and sync events carry their GPU and
go to its rank (to the busiest rank when no kernel ran there).
"""

from __future__ import annotations

import gc
import re
from collections import defaultdict
from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any

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

_MISSING = msgspec.Raw(b"")  # ts / dur absent
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# every integer we keep becomes int64: one outside its range is refused while decoding
_Int = Annotated[int, msgspec.Meta(ge=_INT64_MIN, le=_INT64_MAX)]


class _Args(msgspec.Struct, frozen=True, gc=False):
    # ROCm traces write some ids as strings ("stream": "0x0"); _ints() converts them
    correlation: _Int | str = NO_ID
    stream: _Int | str = NO_ID
    device: _Int | str = NO_ID
    external_id: _Int = msgspec.field(default=NO_ID, name="External id")
    record_function_id: _Int = msgspec.field(default=NO_ID, name="Record function id")
    # cuda_sync
    cuda_sync_kind: str = ""
    wait_on_stream: _Int = NO_ID
    wait_on_cuda_event_record_corr_id: _Int = NO_ID
    wait_on_cuda_event_id: _Int = NO_ID
    # NCCL metadata on communication kernels (PyTorch 2.1+)
    collective: str = msgspec.field(default="", name="Collective name")
    process_group: str = msgspec.field(default="", name="Process Group Name")
    group_size: _Int = msgspec.field(default=NO_ID, name="Group size")
    seq: _Int = msgspec.field(default=NO_ID, name="Seq")
    in_nelems: _Int = msgspec.field(default=NO_ID, name="In msg nelems")
    out_nelems: _Int = msgspec.field(default=NO_ID, name="Out msg nelems")
    dtype: str = ""


_NO_ARGS = _Args()


class _Event(msgspec.Struct, gc=False):
    ph: str = ""
    cat: str = ""
    name: str = ""
    pid: _Int | str = NO_ID
    tid: _Int | str = NO_ID
    ts: msgspec.Raw = _MISSING
    dur: msgspec.Raw = _MISSING
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
# what dropped rows of each frame are called in RankInfo.dropped_rows
_ROWS = {"gpu_ops": "Kineto GPU ops", "host_calls": "Kineto CUDA API calls", "ranges": "Kineto host ranges",
         "syncs": "Kineto sync events"}


class _IntOutOfRange(ValueError):
    """An integer id (written as a string) that int64 cannot hold."""


class _TimeOutOfRange(ValueError):
    """ts + dur past the int64 nanosecond range."""


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
        if "<= 9223372036854775807" in str(e) or ">= -9223372036854775808" in str(e):
            raise BadInput(source, f"an integer outside the int64 range: {e}") from None
        raise BadInput(source, f"not a Kineto trace the way we read it: {e}") from None
    except msgspec.DecodeError as e:
        raise BadInput(source, f"not valid JSON ({e}); is the file truncated?") from None
    except RecursionError:
        raise BadInput(source, "JSON nested too deep to read (thousands of levels): not a trace as a "
                               "profiler writes it") from None
    except NotANumber as e:
        raise BadInput(source, f"a timestamp or duration is not a number: {e}") from None
    except (_IntOutOfRange, _TimeOutOfRange) as e:
        raise BadInput(source, str(e)) from None
    finally:
        if gc_was_enabled:
            gc.enable()

    dist = skeleton.distributedInfo
    if dist is not None and dist.rank is not None:
        rank = dist.rank
    if rank is None:
        raise BadInput(source, "no rank: the trace has no distributedInfo.rank and its file name names none "
                               "(rank-3, rank3, _rank3., worker3, -TP-3); give it with --rank FILE=N")
    gpu_ops = columns.frame("gpu_ops", GPU_OP_COLUMNS, rank)
    host_calls = columns.frame("host_calls", HOST_CALL_COLUMNS, rank)
    ranges = _mark_profiler_steps(columns.frame("ranges", RANGE_COLUMNS, rank))
    waits = columns.frame("syncs", SYNC_COLUMNS, rank)
    syncs = pd.concat([_event_records(waits, host_calls, rank), waits], ignore_index=True)
    collectives = columns.frame("collectives", COLLECTIVE_COLUMNS, rank)
    dropped = {f"{_ROWS[frame]} {what}": n for (frame, what), n in sorted(columns.dropped.items())}

    host_pid = _host_pid(host_calls, ranges)

    def info(rank: int, device: int | None) -> RankInfo:
        return RankInfo(
            rank=rank,
            source=source,
            device=device,
            world_size=dist.world_size if dist else None,
            gpu_name=_gpu_name(skeleton.deviceProperties, device),
            format="kineto",
            pid=host_pid,
            versions={"nccl": dist.nccl_version} if dist and dist.nccl_version else {},
            extra={"backend": dist.backend} if dist and dist.backend else {},
            dropped_rows=dict(dropped),
        )

    kernel_devices = np.unique(gpu_ops["device"].to_numpy()[(gpu_ops["kind"] == "kernel").to_numpy()])
    if kernel_devices.size <= 1:
        return Trace(ranks=[info(rank, _main_device(gpu_ops))], gpu_ops=gpu_ops, host_calls=host_calls,
                     syncs=syncs, ranges=ranges, collectives=collectives)
    if dist is not None and dist.rank is not None:
        counts = gpu_ops.loc[(gpu_ops["kind"] == "kernel").to_numpy(), "device"].value_counts().sort_index()
        listed = ", ".join(f"{d} ({n} kernel{'s' if n != 1 else ''})" for d, n in counts.items())
        raise BadInput(source, f"distributedInfo.rank {dist.rank} names one process, but it ran kernels on GPUs "
                               f"{listed}: each GPU would need a rank of its own, and the other numbers belong "
                               "to other processes of the run; profile one GPU per process")
    ranks = _DeviceRanks(kernel_devices, rank, gpu_ops)
    gpu_ops["rank"] = ranks.of(gpu_ops["device"].to_numpy())
    is_gpu_range = (ranges["source"] == "gpu_user_annotation").to_numpy()
    return Trace(
        ranks=[info(int(r), int(d)) for r, d in zip(ranks.numbers, ranks.devices)],
        gpu_ops=gpu_ops,
        host_calls=ranks.host_calls(host_calls, gpu_ops),
        syncs=syncs.assign(rank=ranks.of(syncs["device"].to_numpy()).astype(np.int32)),
        ranges=ranks.spread(ranges, np.where(is_gpu_range, ranks.of(ranges["pid"].to_numpy()), NO_ID)),
        collectives=collectives.assign(rank=ranks.of(columns.array("collectives", "device")).astype(np.int32)),
    )


class _DeviceRanks:
    """The ranks of one Kineto file with kernels on several GPUs: one per such GPU, numbered from
    the file's rank in GPU order."""

    def __init__(self, kernel_devices: np.ndarray, first: int, gpu_ops: pd.DataFrame):
        self.devices = kernel_devices  # sorted
        self.numbers = first + np.arange(kernel_devices.size)
        counts = gpu_ops["device"].value_counts()
        busiest = counts.reindex(kernel_devices).to_numpy()  # ties: the lowest GPU (argmax takes the first)
        self.home = int(self.numbers[int(np.argmax(busiest))])

    def of(self, device: np.ndarray) -> np.ndarray:
        """Each device's rank; the busiest rank for a GPU without kernels (or none named)."""
        at = np.clip(np.searchsorted(self.devices, device), 0, self.devices.size - 1)
        return np.where(self.devices[at] == device, self.numbers[at], self.home).astype(np.int32)

    def host_calls(self, calls: pd.DataFrame, gpu_ops: pd.DataFrame) -> pd.DataFrame:
        """A call goes to the rank(s) of the GPU ops with its correlation id; a call that launched
        none goes to every rank."""
        links = gpu_ops.loc[(gpu_ops["correlation"] != NO_ID).to_numpy(), ["correlation", "rank"]].drop_duplicates()
        linked = pd.DataFrame({"row": np.arange(len(calls)), "correlation": calls["correlation"].to_numpy()}).merge(
            links, on="correlation", how="inner")
        own = np.full(len(calls), NO_ID, dtype=np.int64)
        return self.spread(calls, own, linked["row"].to_numpy(), linked["rank"].to_numpy())

    def spread(self, frame: pd.DataFrame, own: np.ndarray, extra_rows: np.ndarray | None = None,
               extra_ranks: np.ndarray | None = None) -> pd.DataFrame:
        """Rows with a rank in `own` keep it; rows with NO_ID there are copied to every rank (unless
        `extra_rows` give them ranks: one copy per (row, rank) pair). Rows stay in file order."""
        rows = [np.flatnonzero(own != NO_ID)]
        ranks = [own[rows[0]]]
        if extra_rows is not None:
            rows.append(extra_rows)
            ranks.append(extra_ranks)
            placed = np.zeros(len(frame), dtype=bool)
            placed[extra_rows] = True
            placed[rows[0]] = True
        else:
            placed = own != NO_ID
        everywhere = np.flatnonzero(~placed)
        rows.append(np.repeat(everywhere, self.numbers.size))
        ranks.append(np.tile(self.numbers, everywhere.size))
        row, rank = np.concatenate(rows), np.concatenate(ranks)
        order = np.lexsort((rank, row))
        out = frame.iloc[row[order]].reset_index(drop=True)
        out["rank"] = rank[order].astype(np.int32)
        return out


class _Columns:
    """Columns of every frame, grown batch by batch. Strings are factorised per batch into one
    vocabulary per column, so the per-event string objects die with their batch."""

    def __init__(self) -> None:
        self._parts: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
        self._vocab: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        self.dropped: Counter[tuple[str, str]] = Counter()  # (frame, what) -> rows left out

    def add(self, events: list[_Event]) -> None:
        by_cat: dict[str, list[_Event]] = defaultdict(list)
        for ev in events:
            if ev.ph == "X":
                by_cat[ev.cat].append(ev)
        for cat, kind in _GPU_OP_KIND.items():
            if timed := self._timed(by_cat.get(cat), "gpu_ops"):
                self._gpu_ops(*timed, kind)
        for cat, api in _HOST_API.items():
            if timed := self._timed(by_cat.get(cat), "host_calls"):
                self._host_calls(*timed, api)
        for cat, source in _RANGE_SOURCE.items():
            if timed := self._timed(by_cat.get(cat), "ranges"):
                self._ranges(*timed, source)
        waits = [e for e in by_cat.get("cuda_sync", ()) if (e.args.cuda_sync_kind or e.name) in _SYNC_KIND]
        if timed := self._timed(waits, "syncs"):
            self._syncs(*timed)

    def _timed(self, events: list[_Event] | None, frame: str
               ) -> tuple[list[_Event], np.ndarray, np.ndarray] | None:
        """The events with a usable time and their start and end in ns (None when there are none);
        the others are counted."""
        if not events:
            return None
        start, end, missing, negative = _times(events)
        bad = missing | negative
        if not bad.any():
            return events, start, end
        self.dropped[(frame, "without ts or dur")] += int(missing.sum())
        self.dropped[(frame, "with a negative dur")] += int(negative.sum())
        self.dropped += Counter()  # forget zero counts
        keep = ~bad
        if not keep.any():
            return None
        return [e for e, k in zip(events, keep.tolist()) if k], start[keep], end[keep]

    def _put(self, frame: str, **cols: Any) -> None:
        for name, values in cols.items():
            if isinstance(values, list) and values and isinstance(values[0], str):
                codes, uniques = pd.factorize(np.array(values, dtype=object))
                vocab = self._vocab[(frame, name)]
                ids = np.array([vocab.setdefault(u, len(vocab)) for u in uniques], dtype=np.int64)
                values = ids[codes]
            self._parts[frame][name].append(np.asarray(values))

    def array(self, frame: str, name: str) -> np.ndarray:
        pieces = self._parts.get(frame, {}).get(name)
        return np.concatenate(pieces) if pieces else np.empty(0, np.int64)

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

    def _gpu_ops(self, events: list[_Event], start: np.ndarray, end: np.ndarray, kind: str) -> None:
        device = _ints([e.args.device for e in events])
        device = np.where(device == NO_ID, _ints([e.pid for e in events]), device)
        stream = _ints([e.args.stream for e in events])
        correlation = _ints([e.args.correlation for e in events])
        self._put("gpu_ops",
                  device=device,
                  stream=np.where(stream == NO_ID, _ints([e.tid for e in events]), stream),
                  kind=[kind] * len(events), start=start, end=end, name=[e.name for e in events],
                  correlation=correlation)
        has_meta = np.fromiter((bool(e.args.collective) for e in events), dtype=bool, count=len(events))
        with_meta = [e.args for e in events if e.args.collective]
        if with_meta:
            self._put("collectives",
                      device=device[has_meta],
                      correlation=_ints([a.correlation for a in with_meta]),
                      collective=[a.collective for a in with_meta],
                      process_group=[a.process_group for a in with_meta],
                      group_size=np.array([a.group_size for a in with_meta], dtype=np.int64),
                      seq=np.array([a.seq for a in with_meta], dtype=np.int64),
                      in_nelems=np.array([a.in_nelems for a in with_meta], dtype=np.int64),
                      out_nelems=np.array([a.out_nelems for a in with_meta], dtype=np.int64),
                      dtype=[a.dtype for a in with_meta])

    def _host_calls(self, events: list[_Event], start: np.ndarray, end: np.ndarray, api: str) -> None:
        self._put("host_calls", pid=_ints([e.pid for e in events]), tid=_ints([e.tid for e in events]),
                  start=start, end=end, name=[e.name for e in events],
                  correlation=_ints([e.args.correlation for e in events]), api=[api] * len(events),
                  external_id=np.array([e.args.external_id for e in events], dtype=np.int64))

    def _ranges(self, events: list[_Event], start: np.ndarray, end: np.ndarray, source: str) -> None:
        tid = _ints([e.tid for e in events])
        self._put("ranges", pid=_ints([e.pid for e in events]), tid=tid, start=start, end=end,
                  name=[e.name for e in events], source=[source] * len(events),
                  stream=tid if source == "gpu_user_annotation" else np.full(len(events), NO_ID),
                  external_id=np.array([e.args.external_id for e in events], dtype=np.int64),
                  record_function_id=np.array([e.args.record_function_id for e in events], dtype=np.int64))

    def _syncs(self, events: list[_Event], start: np.ndarray, end: np.ndarray) -> None:
        self._put("syncs", kind=[_SYNC_KIND[e.args.cuda_sync_kind or e.name] for e in events],
                  start=start, end=end,
                  device=_ints([e.args.device for e in events]),
                  stream=_ints([e.args.stream for e in events]),
                  event=np.array([e.args.wait_on_cuda_event_id for e in events], dtype=np.int64),
                  wait_on_stream=np.array([e.args.wait_on_stream for e in events], dtype=np.int64),
                  record_correlation=np.array([e.args.wait_on_cuda_event_record_corr_id for e in events],
                                              dtype=np.int64),
                  correlation=_ints([e.args.correlation for e in events]))


def _times(events: list[_Event]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, missing, negative): ns, and which events lack ts or dur (absent or null) or
    have a negative dur (their start and end are meaningless). An end past int64 is refused."""
    ts = np.array([bytes(e.ts) for e in events], dtype=bytes)
    dur = np.array([bytes(e.dur) for e in events], dtype=bytes)
    no_ts = (ts == b"") | (ts == b"null")
    no_dur = (dur == b"") | (dur == b"null")
    missing = no_ts | no_dur
    if missing.any():
        ts, dur = np.where(no_ts, b"0", ts), np.where(no_dur, b"0", dur)
    start = us_text_to_ns(ts)
    length = us_text_to_ns(dur)
    negative = (length < 0) & ~missing
    past = (length > 0) & (start > _INT64_MAX - length) & ~missing
    if past.any():
        i = int(np.flatnonzero(past)[0])
        raise _TimeOutOfRange(f"{int(past.sum())} event(s) end past the int64 nanosecond range (ts + dur > "
                              f"2**63 - 1 ns, beyond the year 2262; first: {events[i].name!r}, ts="
                              f"{bytes(events[i].ts).decode(errors='replace')}, "
                              f"dur={bytes(events[i].dur).decode(errors='replace')} us): not a clock reading")
    return start, start + np.where(negative, 0, length), missing, negative


def _ints(values: list[Any]) -> np.ndarray:
    """Integer ids; strings that hold a number ("0x0", "7") are converted, other strings
    ("Spans") become NO_ID. (Numbers outside int64 were refused while decoding.)"""
    try:
        return np.array(values, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        return np.array([_as_int(v) for v in values], dtype=np.int64)


def _as_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    try:
        number = int(str(value), 0)
    except ValueError:
        return NO_ID
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise _IntOutOfRange(f"an integer id outside the int64 range: {str(value)[:40]!r}")
    return number


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


def _host_pid(host_calls: pd.DataFrame, ranges: pd.DataFrame) -> int | None:
    """The process that launched the GPU work (its Execution Trace carries the same pid)."""
    pids = np.concatenate([host_calls["pid"].to_numpy(), ranges["pid"].to_numpy()])
    pids = pids[pids != NO_ID]
    if not pids.size:
        return None
    values, counts = np.unique(pids, return_counts=True)
    return int(values[np.argmax(counts)])


def _main_device(gpu_ops: pd.DataFrame) -> int | None:
    """The GPU the rank's kernels ran on (copies may touch a peer's GPU); without kernels, its copies'."""
    if len(gpu_ops) == 0:
        return None
    kernels = gpu_ops[(gpu_ops["kind"] == "kernel").to_numpy()]
    return int((kernels if len(kernels) else gpu_ops)["device"].value_counts().index[0])


def _gpu_name(props: list[_DeviceProperties] | None, device: int | None) -> str | None:
    if device is None:
        return None
    for p in props or []:
        if p.id == device and p.name:
            return p.name
    return None
