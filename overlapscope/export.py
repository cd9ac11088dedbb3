"""Export a run as a Chrome / Perfetto JSON trace (Trace Event Format) with overlap tracks.

    from overlapscope.pipeline import load
    from overlapscope.export import export_trace, write_export
    trace = load(["run/"])
    write_export(export_trace(trace, findings=None, regions=["^tbo/block$"]), "run.perfetto.json")

The document opens in ui.perfetto.dev and chrome://tracing, and it is a Kineto trace as the
tool's own reader reads it, so `overlapscope analyze` on it gives back the run's numbers
(docs/export.md says exactly which, and when):
- one process per rank (pid = rank, named "rank N (file)"), one track per GPU stream
  (tid = stream, named "stream N"); GPU ops are complete events ("ph": "X") in Kineto's
  categories ("kernel", "gpu_memcpy", "gpu_memset") with the args the reader reads ("device",
  "stream", "correlation", and the NCCL metadata of collectives);
- host calls ("cuda_runtime" / "cuda_driver", with their correlation) and host ranges
  ("user_annotation" for NVTX ranges, user annotations and profiler steps, "cpu_op",
  "gpu_user_annotation") on one track per host thread; sync records as "cuda_sync";
- derived tracks, in categories the reader ignores ("overlapscope", flow and counter events):
  "comm hidden" (union of comm ∩ union of compute) and "comm exposed" (comm \\ compute), region
  spans on GPU time (per --region regex, from the first to the last GPU op launched inside each
  matching range), profiler steps on GPU time with per-step counters (overlap %, exposed comm),
  and race findings as flow arrows between their two ops.

Times are written as decimal microseconds with exactly three fraction digits, made from the int64
nanoseconds as text (never through a float): the reader converts that text back to the same ns.
`ts` and `dur` in the returned dict are `orjson.Fragment`s (raw JSON numbers): write the dict
with `write_export` or `dumps`, which keep them as written.

A run of several ranks can be written as one file (what the viewers open: they show one file) or
as a directory with one Kineto file per rank (`write_export(data, "dir/")`), the form that gives
back every figure the reader reads (regions and steps included) for any run; see docs/export.md.
"""

from __future__ import annotations

import gzip
import heapq
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from . import intervals as iv
from .overlap import analyze, compile_regions
from .trace.links import LaunchPoints, host_ranges, launch_points
from .trace.model import NO_ID, Trace
from .trace.names import names_matching

FORMAT_VERSION = 1
# categories of derived events: none of them is one the Kineto reader reads
DERIVED_CAT = "overlapscope"
RACE_CAT = "overlapscope.race"
COUNTER_CAT = "overlapscope.step"

# tids of the derived tracks of each rank's process: far above CUDA stream ids and Linux thread ids
TID_HIDDEN = 2_000_000_000
TID_EXPOSED = TID_HIDDEN + 1
TID_RACE_HOST = TID_HIDDEN + 2
TID_SYNC = TID_HIDDEN + 3  # cuda_sync records (the reader takes their stream from args, not tid)
TID_STEPS = TID_HIDDEN + 100  # + lane, where step spans overlap on GPU time
TID_REGION = TID_HIDDEN + 100_000  # + 100_000 * region index + lane
_LANE_STRIDE = 100_000
TID_HOST_SYNTHETIC = 1_900_000_000  # host threads whose tid clashes: 1_900_000_000 + index

_GPU_CAT = {"kernel": "kernel", "memcpy": "gpu_memcpy", "memset": "gpu_memset"}
_API_CAT = {"runtime": "cuda_runtime", "driver": "cuda_driver"}
_RANGE_CAT = {"nvtx": "user_annotation", "user_annotation": "user_annotation", "profiler_step": "user_annotation",
              "cpu_op": "cpu_op", "gpu_user_annotation": "gpu_user_annotation"}
_SYNC_NAME = {"stream_wait_event": "Stream Wait Event", "event_sync": "Event Sync", "stream_sync": "Stream Sync",
              "context_sync": "Context Sync"}
_COLLECTIVE_ARGS = {"collective": "Collective name", "process_group": "Process Group Name", "group_size": "Group size",
                    "seq": "Seq", "in_nelems": "In msg nelems", "out_nelems": "Out msg nelems", "dtype": "dtype"}


# ---------------------------------------------------------------- times and names

def us_text(ns: np.ndarray | list[int]) -> list[str]:
    """Exact decimal microseconds of int64 ns, three fraction digits ("1712.000", "-0.250")."""
    ns = np.asarray(ns, dtype=np.int64)
    neg = ns < 0
    mag = np.abs(ns.astype(object)) if neg.any() else ns  # object: |int64 min| does not fit int64
    whole = (mag // 1000).tolist()
    frac = (mag % 1000).tolist()
    return [f"{'-' if n else ''}{w}.{f:03d}" for n, w, f in zip(neg.tolist(), whole, frac)]


def _us(ns: np.ndarray | list[int]) -> list[orjson.Fragment]:
    return [orjson.Fragment(t) for t in us_text(ns)]


_ZERO = orjson.Fragment("0")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(name: Any) -> str:
    """A name as text JSON can hold: lone surrogates (not UTF-8) become U+FFFD."""
    text = "" if name is None or (isinstance(name, float) and np.isnan(name)) else str(name)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


def _names(column: pd.Series) -> list[str]:
    """The names of a categorical column, each distinct name cleaned once."""
    cat = column.astype("category").cat
    cats = np.array([_clean(c) for c in cat.categories] + [""], dtype=object)
    codes = np.asarray(cat.codes)
    return cats[np.where(codes >= 0, codes, len(cats) - 1)].tolist()


def _ints(column: pd.Series | np.ndarray) -> list[int]:
    return np.asarray(column, dtype=np.int64).tolist()


# ---------------------------------------------------------------- the document

def export_trace(trace: Trace, findings: list | None = None, regions: list[str] | tuple[str, ...] = ()) -> dict:
    """The run as a Trace Event Format document (a dict; write it with `write_export`).

    `findings`: race findings (`overlapscope.races.Finding`, e.g. `check_races(trace).findings`)
    drawn as flow arrows; `regions`: region regexes whose matching host ranges are drawn on GPU
    time. A bad regex is BadInput ("region")."""
    patterns = compile_regions(list(regions))
    analysis = analyze(trace, list(regions))
    launch = launch_points(trace)
    events: list[dict[str, Any]] = []
    world = len(trace.ranks)
    by_rank_findings: dict[int, list] = {}
    for f in findings or []:
        by_rank_findings.setdefault(int(f.rank), []).append(f)
    flow_id = [0]
    offsets = correlation_offsets(trace)
    for info in trace.ranks:
        r = info.rank
        off = offsets.get(r, 0)
        ops_mask = trace.gpu_ops["rank"].to_numpy() == r
        ops = trace.gpu_ops[ops_mask]
        calls = trace.host_calls[trace.host_calls["rank"].to_numpy() == r]
        ranges = trace.ranges[trace.ranges["rank"].to_numpy() == r]
        syncs = trace.syncs[trace.syncs["rank"].to_numpy() == r]
        streams = sorted(set(_ints(ops["stream"])) | set(_ints(
            ranges.loc[(ranges["source"] == "gpu_user_annotation").to_numpy(), "stream"])))
        host_tid = _host_threads(calls, ranges, streams)
        source = os.path.basename(str(info.source)) if info.source else ""
        events.append(_meta("process_name", r, 0, name=f"rank {r} ({source})" if source else f"rank {r}"))
        events.append(_meta("process_sort_index", r, 0, sort_index=r))
        for s in streams:
            events.append(_meta("thread_name", r, s, name=f"stream {s}"))
            events.append(_meta("thread_sort_index", r, s, sort_index=s))
        for (pid, tid), new in host_tid.items():
            label = f"host thread {tid}" if new == tid else f"host thread {tid} (pid {pid})"
            events.append(_meta("thread_name", r, new, name=label))
            events.append(_meta("thread_sort_index", r, new, sort_index=1_000_000 + len(events)))
        events += _gpu_op_events(r, ops, trace.collectives[trace.collectives["rank"].to_numpy() == r], off)
        events += _host_call_events(r, calls, host_tid, off)
        events += _range_events(r, ranges, host_tid)
        events += _sync_events(r, syncs, off)
        # derived tracks
        events += _overlap_events(r, ops)
        rank_ranges = host_ranges(ranges)
        for i, (regex, pattern) in enumerate(zip(regions, patterns)):
            matched = rank_ranges[names_matching(rank_ranges["name"], pattern)]
            events += _region_events(r, i, regex, trace.gpu_ops, ops_mask, launch, matched)
        steps = rank_ranges[(rank_ranges["source"] == "profiler_step").to_numpy()]
        rows = {row.region: row for row in analysis.steps if row.rank == r}
        events += _step_events(r, trace.gpu_ops, ops_mask, launch, steps, rows)
        events += _race_events(r, by_rank_findings.get(r, []), flow_id)
    doc: dict[str, Any] = {
        "schemaVersion": 1,
        "displayTimeUnit": "ns",
        "deviceProperties": _device_properties(trace),
        "overlapscope": {
            "format_version": FORMAT_VERSION,
            "ranks": [{"rank": row.rank, "source": _clean(row.source), "device": row.device, "comm_ns": row.comm_ns,
                       "compute_ns": row.compute_ns, "overlap_ns": row.overlap_ns,
                       "overlap_pct": row.overlap_pct, "exposed_comm_ns": row.exposed_comm_ns}
                      for row in analysis.ranks],
            "world_size": {str(i.rank): i.world_size for i in trace.ranks},
            "regions": [_clean(r) for r in regions],
            "one_file": one_file_caveats(trace),
            "correlation_offset": {str(r): o for r, o in offsets.items()},
        },
        "traceEvents": events,
    }
    if world == 1:
        info = trace.ranks[0]
        doc["distributedInfo"] = {"rank": info.rank, "world_size": info.world_size or 1}
    return doc


def one_file_caveats(trace: Trace) -> list[str]:
    """Why the Kineto reader would not give this run's figures back from one file holding every
    rank (empty: it gives them back). One file is one process to the reader: several ranks come
    back one per GPU with kernels, numbered 0, 1, ... in GPU order, and host calls are matched to
    GPU ops by correlation id alone. A directory of per-rank files has none of these limits."""
    if len(trace.ranks) <= 1:
        return []
    out = []
    ranks = sorted(trace.ranks, key=lambda i: i.rank)
    ops = trace.gpu_ops
    kernels = ops[(ops["kind"] == "kernel").to_numpy()]
    devs = kernels.groupby("rank", observed=True)["device"].unique()
    expected = []
    for info in ranks:
        d = devs.get(info.rank)
        if d is None or len(d) == 0:
            out.append(f"rank {info.rank} ran no kernels: one file would not give it back")
            continue
        if len(d) > 1:
            out.append(f"rank {info.rank} ran kernels on several GPUs: one file would split it")
        expected.append((info.rank, int(min(d))))
    devices = [d for _, d in expected]
    if len(set(devices)) != len(devices):
        out.append("two ranks ran kernels on the same GPU number: one file would merge them into one rank")
    elif [r for r, _ in sorted(expected, key=lambda x: x[1])] != list(range(len(expected))):
        out.append("ranks are not 0, 1, ... in the order of their GPUs: one file would number them "
                   f"{', '.join(str(i) for i in range(len(expected)))} by GPU")
    return out


def correlation_offsets(trace: Trace) -> dict[int, int]:
    """rank -> what is added to its correlation ids in the export (0 for all when no two ranks
    share an id). Each process numbers its own launches, and the reader links a host call to GPU
    ops by correlation id alone: in one file, shared ids would link one rank's kernels to another
    rank's launches. With the offset, rank r's ids are id + r * 10**k, 10**k above every id."""
    ids = []
    for frame, cols in ((trace.gpu_ops, ["correlation"]), (trace.host_calls, ["correlation"]),
                        (trace.syncs, ["correlation", "record_correlation"])):
        for c in cols:
            sub = frame.loc[(frame[c] != NO_ID).to_numpy(), ["rank", c]].drop_duplicates()
            ids.append(sub.rename(columns={c: "id"}))
    every = pd.concat(ids).drop_duplicates() if ids else pd.DataFrame({"rank": [], "id": []})
    ranks = [i.rank for i in trace.ranks]
    if len(ranks) <= 1 or not every["id"].duplicated().any():
        return {r: 0 for r in ranks}
    top = int(np.abs(every["id"].to_numpy(np.int64)).max())
    step = 10 ** len(str(top + 1))
    if step * (max(ranks) + 1) + top >= 2**63 - 1 or min(ranks) < 0:
        return {r: 0 for r in ranks}
    return {r: r * step for r in ranks}


def _offset(ids: list[int], by: int) -> list[int]:
    return ids if not by else [i if i == NO_ID else i + by for i in ids]


def _meta(what: str, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    return {"ph": "M", "name": what, "pid": pid, "tid": tid, "ts": _ZERO, "args": args}


def _device_properties(trace: Trace) -> list[dict[str, Any]]:
    seen: dict[int, str] = {}
    for info in trace.ranks:
        if info.device is not None and info.gpu_name:
            seen.setdefault(int(info.device), _clean(info.gpu_name))
    return [{"id": d, "name": n} for d, n in sorted(seen.items())]


def _host_threads(calls: pd.DataFrame, ranges: pd.DataFrame, streams: list[int]) -> dict[tuple[int, int], int]:
    """(host pid, tid) -> the tid its track gets in the rank's process: its own tid, unless two
    pids share it or it clashes with a stream or derived track (then a synthetic one)."""
    host = ranges[(ranges["source"] != "gpu_user_annotation").to_numpy()]
    pairs = pd.concat([calls[["pid", "tid"]], host[["pid", "tid"]]]).drop_duplicates()
    pairs = sorted(zip(_ints(pairs["pid"]), _ints(pairs["tid"])))
    tids = [t for _, t in pairs]
    taken = set(streams)
    clash = len(set(tids)) != len(tids) or any(t in taken or t >= TID_HOST_SYNTHETIC for t in tids)
    if clash:
        return {p: TID_HOST_SYNTHETIC + i for i, p in enumerate(pairs)}
    return {p: p[1] for p in pairs}


def _x(cat: list[str] | str, names: list[str], pid: int, tids: list[int] | int, start: np.ndarray,
       end: np.ndarray, args: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    n = len(names)
    ts, dur = _us(start), _us(np.asarray(end, np.int64) - np.asarray(start, np.int64))
    cats = [cat] * n if isinstance(cat, str) else cat
    tid_list = [tids] * n if isinstance(tids, int) else tids
    arg_list = args if args is not None else [{}] * n
    return [{"ph": "X", "cat": c, "name": nm, "pid": pid, "tid": t, "ts": a, "dur": d, "args": g}
            for c, nm, t, a, d, g in zip(cats, names, tid_list, ts, dur, arg_list)]


def _gpu_op_events(rank: int, ops: pd.DataFrame, collectives: pd.DataFrame, off: int) -> list[dict[str, Any]]:
    if not len(ops):
        return []
    device, stream, corr = _ints(ops["device"]), _ints(ops["stream"]), _ints(ops["correlation"])
    kinds = ops["kind"].astype(str).tolist()
    args = [{"device": d, "stream": s, "correlation": c} for d, s, c in zip(device, stream, _offset(corr, off))]
    if len(collectives):
        meta = collectives.drop_duplicates("correlation").set_index("correlation")
        is_kernel = np.array([k == "kernel" for k in kinds])
        hit = is_kernel & np.isin(np.asarray(corr), meta.index.to_numpy())
        if hit.any():
            rows = meta.loc[np.asarray(corr)[hit]]
            extra = {key: (_names(rows[col]) if rows[col].dtype.name == "category" else _ints(rows[col]))
                     for col, key in _COLLECTIVE_ARGS.items()}
            for j, i in enumerate(np.flatnonzero(hit).tolist()):
                kernel_args = args[i]
                for key, values in extra.items():
                    kernel_args[key] = values[j]
    cats = [_GPU_CAT[k] for k in kinds]
    return _x(cats, _names(ops["name"]), rank, stream, ops["start"].to_numpy(), ops["end"].to_numpy(), args)


def _host_call_events(rank: int, calls: pd.DataFrame, host_tid: dict, off: int) -> list[dict[str, Any]]:
    if not len(calls):
        return []
    tids = [host_tid[p] for p in zip(_ints(calls["pid"]), _ints(calls["tid"]))]
    args = []
    for c, e in zip(_offset(_ints(calls["correlation"]), off), _ints(calls["external_id"])):
        a: dict[str, Any] = {"correlation": c}
        if e != NO_ID:
            a["External id"] = e
        args.append(a)
    cats = [_API_CAT[a] for a in calls["api"].astype(str)]
    return _x(cats, _names(calls["name"]), rank, tids, calls["start"].to_numpy(), calls["end"].to_numpy(), args)


def _range_events(rank: int, ranges: pd.DataFrame, host_tid: dict) -> list[dict[str, Any]]:
    if not len(ranges):
        return []
    sources = ranges["source"].astype(str).tolist()
    on_gpu = [s == "gpu_user_annotation" for s in sources]
    tids = [s if g else host_tid[(p, t)] for g, s, p, t in
            zip(on_gpu, _ints(ranges["stream"]), _ints(ranges["pid"]), _ints(ranges["tid"]))]
    args = []
    for e, f in zip(_ints(ranges["external_id"]), _ints(ranges["record_function_id"])):
        a: dict[str, Any] = {}
        if e != NO_ID:
            a["External id"] = e
        if f != NO_ID:
            a["Record function id"] = f
        args.append(a)
    cats = [_RANGE_CAT[s] for s in sources]
    return _x(cats, _names(ranges["name"]), rank, tids, ranges["start"].to_numpy(), ranges["end"].to_numpy(), args)


def _sync_events(rank: int, syncs: pd.DataFrame, off: int) -> list[dict[str, Any]]:
    """Waits and synchronizes as Kineto's cuda_sync events. Event records are not written: Kineto
    has none, the reader derives them from the waits and the cudaEventRecord calls."""
    syncs = syncs[syncs["kind"].isin(list(_SYNC_NAME)).to_numpy()]
    if not len(syncs):
        return []
    names = [_SYNC_NAME[k] for k in syncs["kind"].astype(str)]
    args = [{"cuda_sync_kind": n, "device": d, "stream": s, "wait_on_stream": w,
             "wait_on_cuda_event_record_corr_id": rc, "wait_on_cuda_event_id": ev, "correlation": c}
            for n, d, s, w, rc, ev, c in zip(names, _ints(syncs["device"]), _ints(syncs["stream"]),
                                             _ints(syncs["wait_on_stream"]),
                                             _offset(_ints(syncs["record_correlation"]), off),
                                             _ints(syncs["event"]), _offset(_ints(syncs["correlation"]), off))]
    out = [_meta("thread_name", rank, TID_SYNC, name="cuda sync"),
           _meta("thread_sort_index", rank, TID_SYNC, sort_index=-10)]
    return out + _x("cuda_sync", names, rank, TID_SYNC, syncs["start"].to_numpy(), syncs["end"].to_numpy(), args)


# ---------------------------------------------------------------- derived tracks

def _overlap_events(rank: int, ops: pd.DataFrame) -> list[dict[str, Any]]:
    cls = ops["op_class"].to_numpy()
    start, end = ops["start"].to_numpy(), ops["end"].to_numpy()
    comm = iv.union(start[cls == "comm"], end[cls == "comm"])
    compute = iv.union(start[cls == "compute"], end[cls == "compute"])
    hidden, exposed = iv.intersection(comm, compute), iv.difference(comm, compute)
    out = [_meta("thread_name", rank, TID_HIDDEN, name="comm hidden"),
           _meta("thread_sort_index", rank, TID_HIDDEN, sort_index=-100),
           _meta("thread_name", rank, TID_EXPOSED, name="comm exposed"),
           _meta("thread_sort_index", rank, TID_EXPOSED, sort_index=-99)]
    out += _x(DERIVED_CAT, ["hidden"] * hidden[0].size, rank, TID_HIDDEN, hidden[0], hidden[1], None)
    out += _x(DERIVED_CAT, ["exposed"] * exposed[0].size, rank, TID_EXPOSED, exposed[0], exposed[1], None)
    return out


def _range_reduce(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, fn: np.ufunc) -> np.ndarray:
    """fn (np.minimum / np.maximum) over values[lo:hi] for every pair (all hi > lo): a sparse
    table, so nested and overlapping slices cost O(n log n) in all."""
    out = np.empty(lo.size, dtype=values.dtype)
    if lo.size == 0:
        return out
    k = np.frexp((hi - lo).astype(np.float64))[1] - 1  # floor(log2(length))
    level = values
    for j in range(int(k.max()) + 1):
        if j:
            step = 1 << (j - 1)
            level = fn(level[:-step], level[step:])
        m = k == j
        if m.any():
            out[m] = fn(level[lo[m]], level[hi[m] - (1 << j)])
    return out


def _gpu_spans(ops: pd.DataFrame, ops_mask: np.ndarray, launch: LaunchPoints, ranges: pd.DataFrame
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each range (row position in `ranges`) that launched GPU ops of the rank (its call
    started inside [start, end) on the range's thread, as `launched_inside` decides): the first
    op's start, the last op's end, and how many ops. Returns (rows, start, end, count)."""
    rows_out, s_out, e_out, n_out = [], [], [], []
    if not len(ranges):
        return (np.empty(0, np.int64),) * 4  # type: ignore[return-value]
    starts, ends = ops["start"].to_numpy(), ops["end"].to_numpy()
    r_pid, r_tid = ranges["pid"].to_numpy(), ranges["tid"].to_numpy()
    r_start, r_end = ranges["start"].to_numpy(), ranges["end"].to_numpy()
    keys = pd.DataFrame({"pid": r_pid, "tid": r_tid})
    for (pid, tid), idx in keys.groupby(["pid", "tid"], sort=False).indices.items():
        mine = np.flatnonzero(ops_mask & (launch.pid == pid) & (launch.tid == tid))
        if mine.size == 0:
            continue
        order = mine[np.argsort(launch.time[mine], kind="stable")]
        times = launch.time[order]
        lo = np.searchsorted(times, r_start[idx], side="left")
        hi = np.searchsorted(times, r_end[idx], side="left")
        ok = hi > lo
        if not ok.any():
            continue
        lo, hi = lo[ok], hi[ok]
        rows_out.append(np.asarray(idx)[ok])
        s_out.append(_range_reduce(starts[order], lo, hi, np.minimum))
        e_out.append(_range_reduce(ends[order], lo, hi, np.maximum))
        n_out.append(hi - lo)
    if not rows_out:
        return (np.empty(0, np.int64),) * 4  # type: ignore[return-value]
    return tuple(np.concatenate(p) for p in (rows_out, s_out, e_out, n_out))  # type: ignore[return-value]


def _lanes(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """A lane per span so that spans on one lane never overlap (viewers need slices on one
    track to nest; spans of different ranges can overlap partly on GPU time)."""
    lane = np.zeros(start.size, dtype=np.int64)
    free: list[tuple[int, int]] = []  # (end, lane) of each lane's last span
    count = 0
    for i in np.argsort(start, kind="stable").tolist():
        if free and free[0][0] <= start[i]:
            _, ln = heapq.heappop(free)
        else:
            ln, count = count, count + 1
        lane[i] = ln
        heapq.heappush(free, (int(end[i]), ln))
    return lane


def _lane_tracks(rank: int, base: int, label: str, sort_base: int, lanes: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for ln in sorted(set(lanes.tolist())):
        name = label if ln == 0 else f"{label} ({ln + 1})"
        out.append(_meta("thread_name", rank, base + ln, name=name))
        out.append(_meta("thread_sort_index", rank, base + ln, sort_index=sort_base + ln))
    return out


def _region_events(rank: int, index: int, regex: str, ops: pd.DataFrame, ops_mask: np.ndarray,
                   launch: LaunchPoints, matched: pd.DataFrame) -> list[dict[str, Any]]:
    rows, start, end, count = _gpu_spans(ops, ops_mask, launch, matched)
    if rows.size == 0:
        return []
    lanes = _lanes(start, end)
    base = TID_REGION + _LANE_STRIDE * index
    names = np.array(_names(matched["name"]), dtype=object)[rows].tolist()
    args = [{"region": regex, "gpu_ops": n, "host_start_ns": hs, "host_end_ns": he}
            for n, hs, he in zip(count.tolist(), _ints(matched["start"].to_numpy()[rows]),
                                 _ints(matched["end"].to_numpy()[rows]))]
    out = _lane_tracks(rank, base, f"region {_clean(regex)} (GPU time)", -90 + 10 * index, lanes)
    return out + _x(DERIVED_CAT, names, rank, (base + lanes).tolist(), start, end, args)


def _step_events(rank: int, ops: pd.DataFrame, ops_mask: np.ndarray, launch: LaunchPoints, steps: pd.DataFrame,
                 rows: dict[str, Any]) -> list[dict[str, Any]]:
    """Each profiler step on GPU time (its ops, first to last), with `analyze`'s figures for it,
    and counters at its start: the step's overlap % and exposed communication."""
    at, start, end, _ = _gpu_spans(ops, ops_mask, launch, steps)
    if at.size == 0:
        return []
    spans = pd.DataFrame({"name": np.array(_names(steps["name"]), dtype=object)[at], "start": start, "end": end})
    spans = spans.groupby("name", sort=False).agg(start=("start", "min"), end=("end", "max")).reset_index()
    spans = spans.sort_values("start", kind="stable")
    s, e = spans["start"].to_numpy(), spans["end"].to_numpy()
    lanes = _lanes(s, e)
    names = spans["name"].tolist()
    args = []
    for n in names:
        row = rows.get(n)
        args.append({} if row is None else {"comm_ns": row.comm_ns, "overlap_ns": row.overlap_ns,
                                            "overlap_pct": row.overlap_pct, "exposed_comm_ns": row.exposed_comm_ns})
    out = _lane_tracks(rank, TID_STEPS, "profiler steps (GPU time)", -98, lanes)
    out += _x(DERIVED_CAT, names, rank, (TID_STEPS + lanes).tolist(), s, e, args)
    for n, ts in zip(names, _us(s)):
        row = rows.get(n)
        if row is None:
            continue
        if row.overlap_pct is not None:
            out.append({"ph": "C", "cat": COUNTER_CAT, "name": "step overlap %", "pid": rank, "tid": 0, "ts": ts,
                        "args": {"overlap %": round(row.overlap_pct, 3)}})
        out.append({"ph": "C", "cat": COUNTER_CAT, "name": "step exposed comm (us)", "pid": rank, "tid": 0,
                    "ts": ts, "args": {"exposed us": row.exposed_comm_ns / 1000}})
    return out


def _race_events(rank: int, findings: list, flow_id: list[int]) -> list[dict[str, Any]]:
    """Each finding as a flow arrow from its first access to its second. A GPU access binds to
    its op on its stream track (at the op's midpoint, so neighbours touching it are not taken);
    a host-side access (stream -1) is drawn as a slice on the "races (host side)" track."""
    if not findings:
        return []
    out: list[dict[str, Any]] = []
    host: list[tuple[int, int, str, dict]] = []
    for f in findings:
        flow_id[0] += 1
        label = _clean(f"race: {f.rule} ({f.kind}) on {f.buffer}")
        info = {"rule": _clean(f.rule), "kind": _clean(f.kind), "timing": _clean(getattr(f, "timing", "")),
                "buffer": _clean(f.buffer), "step": _clean(getattr(f, "step", "")), "hint": _clean(f.hint),
                "first": _clean(f.first.name), "second": _clean(f.second.name)}
        for ph, acc in (("s", f.first), ("f", f.second)):
            if acc.stream == -1:
                tid = TID_RACE_HOST
                host.append((int(acc.start_ns), int(acc.end_ns), _clean(acc.name), info))
            else:
                tid = int(acc.stream)
            mid = int(acc.start_ns) + max(int(acc.end_ns) - int(acc.start_ns), 0) // 2
            ev = {"ph": ph, "cat": RACE_CAT, "name": label, "id": flow_id[0], "pid": rank, "tid": tid,
                  "ts": _us([mid])[0], "args": info}
            if ph == "f":
                ev["bp"] = "e"
            out.append(ev)
    if host:
        out += [_meta("thread_name", rank, TID_RACE_HOST, name="races (host side)"),
                _meta("thread_sort_index", rank, TID_RACE_HOST, sort_index=-20)]
        uniq = sorted(set((s, e, n) for s, e, n, _ in host))
        out += _x(RACE_CAT, [n for _, _, n in uniq], rank, TID_RACE_HOST, np.array([s for s, _, _ in uniq]),
                  np.array([e for _, e, _ in uniq]), None)
    return out


# ---------------------------------------------------------------- writing

def dumps(data: dict) -> bytes:
    """The document's JSON text (ts/dur written as the exact decimal text they hold)."""
    return orjson.dumps(data)


def split_by_rank(data: dict) -> dict[int, dict]:
    """One Kineto document per rank (events of pid = rank), each with distributedInfo.rank: the
    form in which the reader gives back every figure of every rank."""
    meta = data.get("overlapscope", {})
    world = max(len(meta.get("ranks", [])), 1)
    sizes = meta.get("world_size", {})
    per: dict[int, list] = {}
    for ev in data["traceEvents"]:
        per.setdefault(int(ev["pid"]), []).append(ev)
    out = {}
    offsets = meta.get("correlation_offset", {})
    for rank, events in sorted(per.items()):
        off = int(offsets.get(str(rank), 0))
        if off:
            events = [_without_offset(ev, off) for ev in events]
        doc = {k: v for k, v in data.items() if k not in ("traceEvents", "distributedInfo")}
        doc["distributedInfo"] = {"rank": rank, "world_size": sizes.get(str(rank)) or world}
        doc["overlapscope"] = {**meta, "ranks": [r for r in meta.get("ranks", []) if r.get("rank") == rank],
                               "one_file": [], "correlation_offset": {str(rank): 0}}
        doc["traceEvents"] = events
        out[rank] = doc
    return out


_ID_ARGS = ("correlation", "wait_on_cuda_event_record_corr_id")


def _without_offset(ev: dict, off: int) -> dict:
    """The event with its original correlation ids (a file per rank needs no offset)."""
    args = ev.get("args")
    if not args or not any(k in args for k in _ID_ARGS):
        return ev
    args = dict(args)
    for k in _ID_ARGS:
        if k in args and args[k] != NO_ID:
            args[k] -= off
    return {**ev, "args": args}


def _is_file_target(path: Path) -> bool:
    if path.is_dir() or str(path).endswith(("/", os.sep)):
        return False
    return path.name.endswith((".json", ".json.gz", ".gz"))


def write_export(data: dict, path: str | os.PathLike[str]) -> list[Path]:
    """Write an `export_trace` document. A path ending in .json (or .json.gz: gzip) gets the whole
    run in one file; any other path (an existing directory, or one to create) gets one Kineto
    file per rank, `rank-N.trace.json`. Returns the files written."""
    target = Path(path)
    if _is_file_target(target):
        payload = dumps(data)
        if target.name.endswith(".gz"):
            payload = gzip.compress(payload, compresslevel=6)
        target.write_bytes(payload)
        return [target]
    target.mkdir(parents=False, exist_ok=True)
    written = []
    for rank, doc in split_by_rank(data).items():
        f = target / f"rank-{rank}.trace.json"
        f.write_bytes(dumps(doc))
        written.append(f)
    return written
