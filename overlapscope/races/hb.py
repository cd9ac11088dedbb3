"""Happens-before over one rank's trace, with vector clocks (CSAN's model, read from a trace).

A clock has one component per GPU stream and one per host thread that makes CUDA calls.
Positions are 1-based program-order indices: op k of a stream is at position k, call k of a
thread (sorted by start) at position k. "x happens before y" iff clock(y)[component(x)] >= pos(x).

Edges (docs/races.md, "Happens-before"):
- program order of each stream and of each host thread;
- a launch happens before its GPU op (a launch at time t carries its thread's position up to
  every call that started by t);
- an event recorded on stream S covers the ops on S enqueued before the record call (CUPTI
  correlation ids grow monotonically in a process, so "enqueued before" = smaller correlation);
  a stream_wait_event by T makes the covered ops (and the record call) happen before every op
  on T enqueued after the wait; an event_sync makes them happen before the host's next calls;
- stream_sync / context_sync: the synced stream's (every stream's) enqueued ops happen before
  the host's next calls;
- a record or a sync of stream S also covers what S learnt from its own earlier waits, with or
  without an op of S in between (NCCL's internal stream runs none);
- extension: a host synchronize orders the synced work before every later call of the process on
  *any* thread, not only the syncing one: the work had provably finished when the sync returned,
  and hand-offs between threads through Python queues never show in a trace.

Cost: everything is vectorised over ops except one sweep over the *changes* of a stream's
knowledge (a wait lands on it, or its launching thread learnt something from a sync); that
sweep visits syncs and waits, not ops, so the whole build is O(ops x components).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..trace.links import launch_points
from ..trace.model import NO_ID, Trace

CLOCK = np.int32
ANY_STREAM, HOST_SIDE = -1, -2  # `unresolved.dst` for a wait by an unknown stream, a host synchronize
# CUDA calls that synchronise, for traces that hold no sync records of their own
_DEVICE_SYNC_CALLS = ("cudaDeviceSynchronize", "cuCtxSynchronize")
_WAIT_CALLS = ("cudaStreamWaitEvent", "cuStreamWaitEvent")
_HOST_SYNC_CALLS = ("cudaStreamSynchronize", "cuStreamSynchronize", "cudaEventSynchronize", "cuEventSynchronize")


@dataclass
class HappensBefore:
    """Vector clocks for one rank's GPU ops (rows of its gpu_ops frame) and host instants."""

    components: list[tuple[str, int, int]]  # ("stream", device, stream) | ("thread", pid, tid)
    op_comp: np.ndarray  # component of each op's stream
    op_pos: np.ndarray  # 1-based position of each op on its stream
    op_key: np.ndarray  # launch time (ns), non-decreasing along each stream: an order consistent with HB
    op_clock: np.ndarray  # (ops, components)
    waits: pd.DataFrame  # src, covered, dst, time: each resolved stream_wait_event (for wrong-join)
    # waits and syncs whose effect is unknown (no event record, no stream, not recorded at all):
    # dst = the waiting stream's component, ANY_STREAM, or HOST_SIDE (a host synchronize); time
    unresolved: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"dst": [], "time": []}, dtype=np.int64))
    notes: list[str] = field(default_factory=list)
    epoch_end: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    epoch_clock: np.ndarray = field(default_factory=lambda: np.zeros((1, 0), CLOCK))
    thread_comp: dict[tuple[int, int], int] = field(default_factory=dict)
    thread_starts: dict[int, np.ndarray] = field(default_factory=dict)

    def op_before(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether GPU op a happens before GPU op b (vectorised over pairs of op rows)."""
        a, b = np.asarray(a), np.asarray(b)
        return self.op_clock[b, self.op_comp[a]] >= self.op_pos[a]

    def unresolved_between(self, t_from: np.ndarray, t_to: np.ndarray, stream: np.ndarray) -> np.ndarray:
        """Whether a wait or sync whose effect is unknown happened in [t_from, t_to] that could
        have ordered something before `stream` (a component; -1 for a host-side access): a host
        synchronize anywhere, or an unresolved wait by that stream (or by an unknown stream)."""
        t_from, t_to, stream = (np.asarray(x, dtype=np.int64) for x in (t_from, t_to, stream))
        out = np.zeros(t_from.size, dtype=bool)
        if not len(self.unresolved):
            return out
        dst, time = self.unresolved["dst"].to_numpy(), self.unresolved["time"].to_numpy()

        def any_in(times: np.ndarray, which: np.ndarray) -> np.ndarray:
            times = np.sort(times)
            after_start = np.searchsorted(times, t_from[which], side="left")
            return np.searchsorted(times, t_to[which], side="right") > after_start

        everyone = np.ones(t_from.size, dtype=bool)
        out |= any_in(time[(dst == HOST_SIDE) | (dst == ANY_STREAM)], everyone)
        for c in np.unique(dst[dst >= 0]):
            mine = stream == c
            if mine.any():
                out[mine] |= any_in(time[dst == c], mine)
        return out

    def thread_of(self, pid: int, tid: int) -> int:
        """The component of a host thread, or -1 when it makes no CUDA calls."""
        return self.thread_comp.get((int(pid), int(tid)), -1)

    def instant_clock(self, comp: np.ndarray, t: np.ndarray) -> np.ndarray:
        """What a host thread knows at time t: syncs that returned by t, and its own calls that
        started before t. comp -1 (a thread with no CUDA calls) knows only the syncs."""
        comp, t = np.asarray(comp), np.asarray(t, dtype=np.int64)
        out = self.epoch_clock[np.searchsorted(self.epoch_end, t, side="right")].copy()
        for c in np.unique(comp[comp >= 0]):
            idx = np.flatnonzero(comp == c)
            out[idx, c] = np.maximum(out[idx, c], np.searchsorted(self.thread_starts[c], t[idx], side="left"))
        return out

    def instant_source(self, comp: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The position a host instant occupies as the *earlier* side of an edge: later things
        know it once they know the thread's first call that started at or after t."""
        comp, t = np.asarray(comp), np.asarray(t, dtype=np.int64)
        out = np.zeros(comp.size, dtype=np.int64)
        for c in np.unique(comp[comp >= 0]):
            idx = np.flatnonzero(comp == c)
            out[idx] = np.searchsorted(self.thread_starts[c], t[idx], side="left") + 1
        return out


@dataclass
class _Content:
    """What a wait or a sync makes known: ops 1..covered of stream src, and the record call."""

    src: int  # stream component (-1: none)
    covered: int
    rec_thread: int = -1
    rec_time: int = 0
    query_end: int | None = None  # event query: only counts if the covered op ended by then
    # what the recording (or synced) stream had learnt from its own waits before: passed on too
    via: tuple[_Content, ...] = ()


class _StreamWaits:
    """What each stream had learnt from its own waits, over time. An event recorded on a stream, or
    a synchronize of it, covers the waits enqueued there before it even when no GPU op of that
    stream lies in between (NCCL's internal stream runs no op at all: it waits for the user stream,
    records, and the next collective's stream waits for that record). Kept as one merged snapshot
    per wait (the furthest op of each stream, the latest instant of each thread), so a long chain
    of such hand-offs costs O(streams + threads) per wait, not O(waits)."""

    def __init__(self) -> None:
        self._times: dict[tuple[int, int], list[int]] = defaultdict(list)
        self._known: dict[tuple[int, int], list[tuple[_Content, ...]]] = defaultdict(list)

    def waited(self, stream: tuple[int, int], time: int, content: _Content) -> None:
        """`stream` waited at `time` (waits arrive in time order) for what `content` makes known."""
        merged: dict[tuple[str, int], _Content] = {}
        for c in (*(self._known[stream][-1] if self._known[stream] else ()), *_flatten(content)):
            if c.src >= 0 and c.covered > 0:
                old = merged.get(("stream", c.src))
                if old is None or c.covered > old.covered:
                    merged[("stream", c.src)] = _Content(c.src, c.covered)
            if c.rec_thread >= 0:
                old = merged.get(("thread", c.rec_thread))
                if old is None or c.rec_time > old.rec_time:
                    merged[("thread", c.rec_thread)] = _Content(-1, 0, c.rec_thread, c.rec_time)
        self._times[stream].append(time)
        self._known[stream].append(tuple(merged.values()))

    def known_before(self, stream: tuple[int, int], time: int) -> tuple[_Content, ...]:
        """What `stream` had learnt from the waits it made before `time`."""
        i = bisect.bisect_left(self._times.get(stream, []), time) - 1
        return self._known[stream][i] if i >= 0 else ()

    def streams_of(self, device: int) -> list[tuple[int, int]]:
        return [k for k in self._known if device == NO_ID or k[0] == device]


def _flatten(c: _Content) -> list[_Content]:
    return [c, *(x for v in c.via for x in _flatten(v))]


class _Streams:
    """Each stream's ops in program order, with the lookups waits and syncs need."""

    def __init__(self, comp: np.ndarray, start: np.ndarray, corr: np.ndarray, key: np.ndarray, n_streams: int):
        self.order = np.lexsort((corr, start, comp))  # ops grouped by stream, in stream order
        sorted_comp = comp[self.order]
        bounds = np.searchsorted(sorted_comp, np.arange(n_streams + 1))
        self.rows = [self.order[bounds[s]:bounds[s + 1]] for s in range(n_streams)]
        # NO_ID correlations inherit the previous op's: "enqueued right after it"
        self.corr_max = [np.maximum.accumulate(corr[r]) if r.size else r for r in self.rows]
        self.key = [key[r] for r in self.rows]

    def enqueued_before(self, s: int, corr: int, time: int) -> int:
        """How many leading ops of stream s were enqueued before the call with this
        correlation id (or, without one, launched before `time`)."""
        if s < 0:
            return 0
        if corr != NO_ID:
            return int(np.searchsorted(self.corr_max[s], corr, side="left"))
        return int(np.searchsorted(self.key[s], time, side="left"))

    def first_enqueued_after(self, s: int, corr: int, time: int) -> int:
        """Index (in stream order) of the first op of s enqueued after the call."""
        if corr != NO_ID:
            return int(np.searchsorted(self.corr_max[s], corr, side="right"))
        return int(np.searchsorted(self.key[s], time, side="right"))


def happens_before(trace: Trace) -> HappensBefore:
    """Vector clocks for one rank (pass `trace.for_rank(r)`)."""
    ops, calls, syncs = trace.gpu_ops, trace.host_calls, trace.syncs
    n = len(ops)
    notes: Counter[str] = Counter()

    # components: streams first, then host threads that make CUDA calls
    op_device, op_stream = ops["device"].to_numpy(np.int64).copy(), ops["stream"].to_numpy(np.int64).copy()
    # a copy between devices is reported once per device's context under one correlation id, the
    # second record after the first; both are the work of the stream the call named: order the
    # second half on the first half's stream, so that waits and syncs on that stream cover it
    for first, later in _cross_device_copy_halves(ops):
        op_device[later], op_stream[later] = op_device[first], op_stream[first]
    stream_pairs, op_comp = _pairs(op_device, op_stream)
    thread_pairs, call_comp = _pairs(calls["pid"].to_numpy(np.int64), calls["tid"].to_numpy(np.int64))
    ns = len(stream_pairs)
    call_comp = call_comp + ns
    stream_comp = {p: i for i, p in enumerate(stream_pairs)}
    thread_comp = {p: ns + i for i, p in enumerate(thread_pairs)}
    by_stream_id: dict[int, list[int]] = defaultdict(list)
    for (_, s), c in stream_comp.items():
        by_stream_id[s].append(c)
    components = [("stream", d, s) for d, s in stream_pairs] + [("thread", p, t) for p, t in thread_pairs]
    n_comp = len(components)

    def comp_of_stream(device: int, s: int) -> int:
        if (device, s) in stream_comp:
            return stream_comp[(device, s)]
        found = by_stream_id.get(s, [])
        return found[0] if len(found) == 1 else -1

    # host threads: calls in program order
    call_start = calls["start"].to_numpy(np.int64)
    thread_starts = {c: np.sort(call_start[call_comp == c]) for c in range(ns, n_comp)}

    # launches
    launch = launch_points(trace)
    has_launch = launch.tid != NO_ID
    launch_comp = np.full(n, -1, dtype=np.int64)
    launch_pos = np.zeros(n, dtype=np.int64)
    for (pid, tid), c in thread_comp.items():
        idx = np.flatnonzero(has_launch & (launch.pid == pid) & (launch.tid == tid))
        if idx.size:
            launch_comp[idx] = c
            launch_pos[idx] = np.searchsorted(thread_starts[c], launch.time[idx], side="right")

    # sweep key: the launch time; ops without a launch borrow the start of the call with the
    # closest smaller correlation id (when it was enqueued), else their own GPU start
    op_start = ops["start"].to_numpy(np.int64)
    op_end = ops["end"].to_numpy(np.int64)
    op_corr = ops["correlation"].to_numpy(np.int64)
    key = np.where(has_launch, launch.time, op_start)
    no_launch = np.flatnonzero(~has_launch & (op_corr != NO_ID))
    if no_launch.size and len(calls):
        c_corr = calls["correlation"].to_numpy(np.int64)
        by_corr = np.argsort(c_corr, kind="stable")
        at = np.searchsorted(c_corr[by_corr], op_corr[no_launch], side="right") - 1
        ok = at >= 0
        key[no_launch[ok]] = call_start[by_corr[at[ok]]]
    streams = _Streams(op_comp, op_start, op_corr, key, ns)
    op_pos = np.zeros(n, dtype=np.int64)
    for s, rows in enumerate(streams.rows):
        op_pos[rows] = np.arange(1, rows.size + 1)
        key[rows] = np.maximum.accumulate(key[rows]) if rows.size else key[rows]
        streams.key[s] = key[rows]

    # syncs: what each makes known, and when (waits: to which stream op; syncs: from which time)
    call_by_corr = _CallsByCorrelation(calls, call_comp)
    records = syncs[syncs["kind"] == "event_record"]
    waits_at: dict[int, list[_Content]] = defaultdict(list)  # op row -> what it learns before it runs
    applied: list[tuple[int, list[_Content]]] = []  # (sync end, contents), host side
    wait_rows: list[tuple[int, int, int, int]] = []
    unresolved: list[tuple[int, int]] = []
    sync_rows = syncs[syncs["kind"] != "event_record"]
    if not len(sync_rows) and len(calls):
        sync_rows = _syncs_from_calls(calls, unresolved, notes)
    stream_waits = _StreamWaits()
    # in time order, so that a stream's waits are known before the records and syncs that cover them
    for row in sync_rows.sort_values("start", kind="stable").itertuples(index=False):
        kind = str(row.kind)
        if kind in ("stream_wait_event", "event_sync"):
            content = _resolve_event(row, records, streams, comp_of_stream, call_by_corr, notes, kind,
                                     stream_waits)
            if content is None:
                if kind == "stream_wait_event":
                    t = comp_of_stream(int(row.device), int(row.stream))
                    unresolved.append((t if t >= 0 else ANY_STREAM, int(row.start)))
                else:
                    unresolved.append((HOST_SIDE, int(row.end)))
                continue
            if kind == "stream_wait_event":
                if int(row.stream) == NO_ID:
                    notes[f"{kind} without a stream: ignored"] += 1
                    continue
                stream_waits.waited((int(row.device), int(row.stream)), int(row.start), content)
                t = comp_of_stream(int(row.device), int(row.stream))
                if t < 0:
                    continue  # a stream that runs no op here: what it learnt passes on through its records
                first = streams.first_enqueued_after(t, int(row.correlation), int(row.start))
                if first < streams.rows[t].size:
                    waits_at[int(streams.rows[t][first])].append(content)
                wait_rows.append((content.src, content.covered, t, int(row.start)))
            else:
                # cudaEventQuery: a sync only if the event had completed by then
                if "Query" in call_by_corr.name(int(row.correlation)):
                    content.query_end = int(row.end)
                applied.append((int(row.end), [content]))
        elif kind == "stream_sync":
            s = comp_of_stream(int(row.device), int(row.stream))
            if int(row.stream) == NO_ID:
                notes["stream_sync without a stream: what it orders is unknown"] += 1
                unresolved.append((HOST_SIDE, int(row.end)))
                continue
            covered = streams.enqueued_before(s, int(row.correlation), int(row.start)) if s >= 0 else 0
            via = stream_waits.known_before((int(row.device), int(row.stream)), int(row.start))
            applied.append((int(row.end), [_Content(s, covered, via=via)]))
        elif kind == "context_sync":
            device = int(row.device)
            contents = [_Content(s, streams.enqueued_before(s, int(row.correlation), int(row.start)))
                        for (d, _), s in stream_comp.items() if device == NO_ID or d == device]
            contents += [_Content(-1, 0, via=stream_waits.known_before(k, int(row.start)))
                         for k in stream_waits.streams_of(device)]
            applied.append((int(row.end), contents))
    applied.sort(key=lambda a: a[0])
    epoch_end = np.array([a[0] for a in applied], dtype=np.int64)

    # each op's epoch: how many syncs had returned when it was launched
    op_epoch = np.where(has_launch, np.searchsorted(epoch_end, launch.time, side="right"), 0)

    # launch positions, accumulated along each stream: thread columns of the op clocks
    n_threads = n_comp - ns
    launched = np.zeros((n, n_threads), dtype=CLOCK)
    for s, rows in enumerate(streams.rows):
        if not rows.size:
            continue
        for h in range(n_threads):
            col = np.where(launch_comp[rows] == ns + h, launch_pos[rows], 0)
            launched[rows, h] = np.maximum.accumulate(col)

    # the sweep over knowledge changes: ops whose epoch grew along their stream, ops a wait
    # lands on, and syncs (applied before ops launched at the same instant)
    events: list[tuple[int, int, int, int]] = []  # (time, 0 sync | 1 op, tiebreak, index)
    for s, rows in enumerate(streams.rows):
        if not rows.size:
            continue
        ep = op_epoch[rows]
        grew = ep > np.concatenate([[0], np.maximum.accumulate(ep)[:-1]])
        for i in np.flatnonzero(grew).tolist():
            events.append((int(key[rows[i]]), 1, int(op_pos[rows[i]]), int(rows[i])))
    grew_rows = {e[3] for e in events}
    for j in waits_at:
        if j not in grew_rows:
            events.append((int(key[j]), 1, int(op_pos[j]), j))
    for i, (t, _) in enumerate(applied):
        events.append((t, 0, i, i))
    events.sort()

    base_pos: list[list[int]] = [[] for _ in range(ns)]
    base_vec: list[list[np.ndarray]] = [[] for _ in range(ns)]
    epochs: list[np.ndarray] = [np.zeros(n_comp, dtype=CLOCK)]
    late = 0

    def op_clock_at(s: int, p: int) -> np.ndarray:
        j = int(streams.rows[s][p - 1])
        v = np.zeros(n_comp, dtype=CLOCK)
        k = bisect.bisect_right(base_pos[s], p) - 1
        if k >= 0:
            v[:] = base_vec[s][k]
        v[ns:] = np.maximum(v[ns:], launched[j])
        v[s] = max(v[s], p)
        return v

    def host_clock_at(h: int, t: int) -> np.ndarray:
        e = min(int(np.searchsorted(epoch_end, t, side="right")), len(epochs) - 1)
        v = epochs[e].copy()
        v[h] = max(v[h], int(np.searchsorted(thread_starts[h], t, side="right")))
        return v

    def learn(v: np.ndarray, c: _Content, now: int) -> None:
        nonlocal late
        if c.src >= 0 and c.covered > 0:
            j = int(streams.rows[c.src][c.covered - 1])
            if c.query_end is not None and op_end[j] > c.query_end:
                return  # the query returned before the work finished: it was "not ready"
            if key[j] > now:
                late += 1  # timestamps disagree with the order of calls; use what is known so far
            np.maximum(v, op_clock_at(c.src, c.covered), out=v)
        if c.rec_thread >= 0:
            np.maximum(v, host_clock_at(c.rec_thread, c.rec_time), out=v)
        for passed_on in c.via:
            learn(v, passed_on, now)

    for t, kind, _, idx in events:
        if kind == 0:
            v = epochs[-1].copy()
            for c in applied[idx][1]:
                learn(v, c, t)
            epochs.append(v)
            continue
        j = idx
        s = int(op_comp[j])
        v = base_vec[s][-1].copy() if base_vec[s] else np.zeros(n_comp, dtype=CLOCK)
        e = int(op_epoch[j])
        if e >= len(epochs):
            late += 1
            e = len(epochs) - 1
        np.maximum(v, epochs[e], out=v)
        for c in waits_at.get(j, ()):
            learn(v, c, t)
        base_pos[s].append(int(op_pos[j]))
        base_vec[s].append(v)

    # every op's clock: the latest knowledge change at or before it on its stream, the
    # launch positions accumulated along the stream, and its own position
    op_clock = np.zeros((n, n_comp), dtype=CLOCK)
    for s, rows in enumerate(streams.rows):
        if not rows.size or not base_pos[s]:
            continue
        k = np.searchsorted(np.asarray(base_pos[s]), op_pos[rows], side="right") - 1
        has = k >= 0
        op_clock[rows[has]] = np.stack(base_vec[s])[k[has]]
    if n_threads:
        op_clock[:, ns:] = np.maximum(op_clock[:, ns:], launched)
    if n:
        op_clock[np.arange(n), op_comp] = np.maximum(op_clock[np.arange(n), op_comp], op_pos)

    if late:
        notes["sync or wait edges pointed at GPU work launched after them (timestamps disagree with "
              "correlation order); those edges only carry what was known at the time"] += late
    waits = pd.DataFrame(wait_rows, columns=["src", "covered", "dst", "time"]).astype(np.int64)
    return HappensBefore(
        components=components, op_comp=op_comp, op_pos=op_pos, op_key=key, op_clock=op_clock, waits=waits,
        unresolved=pd.DataFrame(unresolved, columns=["dst", "time"]).astype(np.int64),
        notes=[f"{what} ({count}x)" if count > 1 else what for what, count in notes.items()],
        epoch_end=epoch_end, epoch_clock=np.stack(epochs), thread_comp=thread_comp, thread_starts=thread_starts,
    )


def _cross_device_copy_halves(ops: pd.DataFrame) -> list[tuple[int, int]]:
    """(first record, later record) rows of memcpys that share a correlation id across devices
    (one cudaMemcpyAsync into a peer GPU, as nsys shows it: one record per context). Kernels that
    share one (graph launches) run in parallel branches and are left alone."""
    is_copy = (ops["kind"].to_numpy() == "memcpy") & (ops["correlation"].to_numpy() != NO_ID)
    if is_copy.sum() < 2:
        return []
    copies = pd.DataFrame({"row": np.flatnonzero(is_copy), "corr": ops["correlation"].to_numpy()[is_copy],
                           "device": ops["device"].to_numpy()[is_copy], "start": ops["start"].to_numpy()[is_copy]})
    split = copies.groupby("corr")["device"].transform("nunique").to_numpy() > 1
    copies = copies[split].sort_values(["corr", "start"], kind="stable")
    first = copies.groupby("corr")["row"].transform("first").to_numpy()
    rows = copies["row"].to_numpy()
    return [(int(f), int(r)) for f, r in zip(first, rows) if f != r]


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The distinct (a, b) pairs, sorted, and each row's index among them."""
    if not a.size:
        return [], np.empty(0, np.int64)
    distinct, inverse = np.unique(np.stack([a, b], axis=1), axis=0, return_inverse=True)
    return [(int(x), int(y)) for x, y in distinct], inverse.reshape(-1).astype(np.int64)


class _CallsByCorrelation:
    """Host calls looked up by correlation id."""

    def __init__(self, calls: pd.DataFrame, call_comp: np.ndarray):
        corr = calls["correlation"].to_numpy(np.int64)
        self._order = np.argsort(corr, kind="stable")
        self._corr = corr[self._order]
        self._comp, self._start = call_comp, calls["start"].to_numpy(np.int64)
        self._names = calls["name"]

    def _row(self, corr: int) -> int:
        i = int(np.searchsorted(self._corr, corr))
        if corr == NO_ID or i >= self._corr.size or self._corr[i] != corr:
            return -1
        return int(self._order[i])

    def thread_and_start(self, corr: int) -> tuple[int, int]:
        """(thread component, start) of the call, or (-1, 0) when the trace lacks it."""
        row = self._row(corr)
        return (int(self._comp[row]), int(self._start[row])) if row >= 0 else (-1, 0)

    def name(self, corr: int) -> str:
        row = self._row(corr)
        return str(self._names.iloc[row]) if row >= 0 else ""


def _resolve_event(row, records: pd.DataFrame, streams: _Streams, comp_of_stream, call_by_corr,
                   notes: Counter, kind: str, stream_waits: _StreamWaits) -> _Content | None:
    """The event a wait or event_sync waits for: its stream, the ops it covers, its record call."""
    rec_corr, src_stream = int(row.record_correlation), int(row.wait_on_stream)
    device = int(row.device)
    if rec_corr == NO_ID and int(row.event) != NO_ID:
        # no record correlation: the latest record of the same event before this call
        same = records[(records["event"] == int(row.event)) & ((records["device"] == device) | (device == NO_ID))]
        if int(row.correlation) != NO_ID and (same["correlation"] != NO_ID).all():
            same = same[same["correlation"] < int(row.correlation)]
        else:
            same = same[same["start"] <= int(row.start)]
        if len(same):
            last = same.sort_values(["start", "correlation"]).iloc[-1]
            rec_corr, src_stream = int(last["correlation"]), int(last["stream"])
    if rec_corr == NO_ID:
        notes[f"{kind} whose event record is not in the trace (recorded before the capture began; nsys ran "
              "without --cuda-event-trace=true; or a Kineto trace whose waits carry no record, as PyTorch 2.11 "
              "with CUDA 13 writes them): what it orders is unknown"] += 1
        return None
    if src_stream == NO_ID:
        named = records[records["correlation"] == rec_corr]
        if len(named):
            src_stream = int(named["stream"].iloc[0])
    if src_stream == NO_ID:
        notes[f"{kind} whose event record names no stream: what it orders is unknown"] += 1
        return None
    if int(row.correlation) != NO_ID and rec_corr >= int(row.correlation):
        notes[f"{kind} that names an event record made after it (inconsistent correlation ids): what it orders "
              "is unknown"] += 1
        return None
    src = comp_of_stream(device, src_stream)
    rec_thread, rec_time = call_by_corr.thread_and_start(rec_corr)
    covered = streams.enqueued_before(src, rec_corr, rec_time) if src >= 0 else 0
    via = stream_waits.known_before((device, src_stream), rec_time)
    return _Content(src, covered, rec_thread, rec_time, via=via)


def _syncs_from_calls(calls: pd.DataFrame, unresolved: list[tuple[int, int]], notes: Counter) -> pd.DataFrame:
    """A trace without sync records (Kineto without enable_cuda_sync_events): a device synchronize
    needs no arguments, so it becomes a context_sync; the other synchronising calls do not say
    which stream or event, so their effect is unknown."""
    names = calls["name"].astype(str)
    device_syncs = calls[names.isin(_DEVICE_SYNC_CALLS).to_numpy()]
    waits = calls[names.isin(_WAIT_CALLS).to_numpy()]
    host_syncs = calls[names.isin(_HOST_SYNC_CALLS).to_numpy()]
    unresolved.extend((ANY_STREAM, int(t)) for t in waits["start"])
    unresolved.extend((HOST_SIDE, int(t)) for t in host_syncs["end"])
    if len(waits) or len(host_syncs):
        notes[f"the trace holds no CUDA synchronisation records although it makes {len(waits) + len(host_syncs)} "
              "stream-wait / synchronize calls; record them with torch.profiler._ExperimentalConfig("
              "enable_cuda_sync_events=True) (Kineto) or --cuda-event-trace=true (nsys)"] += 1
    n = len(device_syncs)
    return pd.DataFrame({
        "kind": ["context_sync"] * n, "start": device_syncs["start"].to_numpy(np.int64),
        "end": device_syncs["end"].to_numpy(np.int64), "device": np.full(n, NO_ID, np.int64),
        "stream": np.full(n, NO_ID, np.int64), "event": np.full(n, NO_ID, np.int64),
        "wait_on_stream": np.full(n, NO_ID, np.int64), "record_correlation": np.full(n, NO_ID, np.int64),
        "correlation": device_syncs["correlation"].to_numpy(np.int64)})
