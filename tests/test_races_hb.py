"""Happens-before: vector clocks against a brute-force oracle (reachability on the explicit graph)."""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlapscope.races.hb import happens_before
from overlapscope.trace.kineto import read_kineto
from race_builders import T0, RaceBuilder

STREAMS = (7, 13, 20)
THREADS = (1000, 1001)

KINDS = ["launch"] * 5 + ["record"] * 2 + ["wait"] * 2 + ["stream_sync", "device_sync", "event_sync"]


@st.composite
def action(draw) -> tuple:
    """One host action; launches, records and waits are the common ones. Sync durations reach
    1000 ns so that a sync can end exactly when the next action starts (the tie matters)."""
    kind = draw(st.sampled_from(KINDS))
    stream, thread = draw(st.sampled_from(STREAMS)), draw(st.sampled_from(THREADS))
    if kind == "launch":
        return kind, stream, thread, draw(st.integers(100, 3000))
    if kind == "record":
        return kind, stream, thread
    if kind == "wait":
        return kind, stream, draw(st.integers(0, 3))
    if kind == "stream_sync":
        return kind, stream, draw(st.integers(1, 1000))
    if kind == "device_sync":
        return kind, draw(st.integers(1, 1000))
    return kind, draw(st.integers(0, 3)), draw(st.integers(1, 1000))


def build(program: list[tuple]) -> tuple[bytes, dict]:
    """Write the program as a Kineto trace (one action per microsecond, correlation ids in time
    order) and describe it for the oracle."""
    b = RaceBuilder(rank=0)
    stream_end: dict[int, int] = defaultdict(int)
    calls: list[dict] = []  # host calls: tid, start, corr
    ops: list[dict] = []  # GPU ops: stream, corr, launch call index
    records: list[dict] = []  # stream, corr, call index
    waits: list[dict] = []  # stream, record, corr
    syncs: list[dict] = []  # end, kind, stream / record, corr
    for i, act in enumerate(program):
        t = 1000 * (i + 1)
        kind = act[0]
        if kind == "launch":
            _, s, tid, dur = act
            start = max(t + 200, stream_end[s])
            stream_end[s] = start + dur
            corr = b.launch(f"k{i}", s, t, start, start + dur, tid=tid)
            calls.append({"tid": tid, "start": t, "corr": corr})
            ops.append({"stream": s, "corr": corr, "call": len(calls) - 1})
        elif kind == "record":
            _, s, tid = act
            corr = b.record(t, tid=tid)
            calls.append({"tid": tid, "start": t, "corr": corr})
            records.append({"stream": s, "corr": corr, "call": len(calls) - 1})
        elif kind == "wait" and records:
            _, s, r = act
            rec = records[-1 - r % len(records)]  # mostly the latest records
            corr = b.wait(s, rec["stream"], rec["corr"], t)
            calls.append({"tid": b.tid, "start": t, "corr": corr})
            waits.append({"stream": s, "record": rec, "corr": corr})
        elif kind == "stream_sync":
            _, s, dur = act
            corr = b.stream_sync(s, t, t + dur)
            calls.append({"tid": b.tid, "start": t, "corr": corr})
            syncs.append({"end": t + dur, "streams": [s], "corr": corr, "record": None})
        elif kind == "device_sync":
            _, dur = act
            corr = b.device_sync(t, t + dur)
            calls.append({"tid": b.tid, "start": t, "corr": corr})
            syncs.append({"end": t + dur, "streams": list(STREAMS), "corr": corr, "record": None})
        elif kind == "event_sync" and records:
            _, r, dur = act
            rec = records[-1 - r % len(records)]
            corr = b.event_sync(rec["stream"], rec["corr"], t, t + dur)
            calls.append({"tid": b.tid, "start": t, "corr": corr})
            syncs.append({"end": t + dur, "streams": [rec["stream"]], "corr": rec["corr"], "record": rec})
    return b.dumps(), {"calls": calls, "ops": ops, "waits": waits, "syncs": syncs}


def oracle(p: dict) -> set[tuple[int, int]]:
    """All (op corr, op corr) pairs with a path, by BFS over the explicit graph of DESIGN.md's
    happens-before (with the documented cross-thread sync extension)."""
    calls, ops = p["calls"], p["ops"]
    nodes = [("call", i) for i in range(len(calls))] + [("op", i) for i in range(len(ops))]
    edges: dict[tuple, list[tuple]] = defaultdict(list)
    for tid in {c["tid"] for c in calls}:
        mine = sorted((c["start"], i) for i, c in enumerate(calls) if c["tid"] == tid)
        for (_, x), (_, y) in zip(mine, mine[1:]):
            edges[("call", x)].append(("call", y))
    on_stream: dict[int, list[int]] = defaultdict(list)
    for i, o in enumerate(ops):
        on_stream[o["stream"]].append(i)  # launch order = stream order here
        edges[("call", o["call"])].append(("op", i))
    for s, idx in on_stream.items():
        for x, y in zip(idx, idx[1:]):
            edges[("op", x)].append(("op", y))

    def last_before(s: int, corr: int) -> int | None:
        before = [i for i in on_stream.get(s, []) if ops[i]["corr"] < corr]
        return before[-1] if before else None

    def stream_sources(s: int, corr: int) -> list[tuple]:
        """What work on stream s enqueued before `corr` stands for: its last op, and the records
        its earlier waits waited for (a wait is stream work too, even with no op after it)."""
        last = last_before(s, corr)
        return ([("op", last)] if last is not None else []) + [
            ("rec", w["record"]["corr"]) for w in p["waits"] if w["stream"] == s and w["corr"] < corr]

    records = {w["record"]["corr"]: w["record"] for w in p["waits"]}
    records |= {sy["record"]["corr"]: sy["record"] for sy in p["syncs"] if sy["record"] is not None}
    for corr, rec in records.items():
        edges[("call", rec["call"])].append(("rec", corr))
        for src in stream_sources(rec["stream"], corr):
            edges[src].append(("rec", corr))
    for w in p["waits"]:
        after = [i for i in on_stream.get(w["stream"], []) if ops[i]["corr"] > w["corr"]]
        if after:
            edges[("rec", w["record"]["corr"])].append(("op", after[0]))
    for sy in p["syncs"]:
        later = [("call", i) for i, c in enumerate(calls) if c["start"] >= sy["end"]]
        if sy["record"] is not None:
            sources = [("rec", sy["record"]["corr"])]
        else:
            sources = [src for s in sy["streams"] for src in stream_sources(s, sy["corr"])]
        for src in sources:
            edges[src].extend(later)
    reach = set()
    for i in range(len(ops)):
        seen, todo = set(), deque(edges[("op", i)])
        while todo:
            n = todo.popleft()
            if n in seen:
                continue
            seen.add(n)
            todo.extend(edges[n])
        reach |= {(ops[i]["corr"], ops[j]["corr"]) for kind, j in seen if kind == "op"}
    return reach


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(action(), min_size=8, max_size=30))
def test_vector_clocks_match_reachability(program):
    data, p = build(program)
    trace = read_kineto([data], "random.json", 0)
    hb = happens_before(trace)
    corr = trace.gpu_ops["correlation"].to_numpy()
    n = corr.size
    a, b = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a, b = a.ravel(), b.ravel()
    off_diagonal = a != b
    got = hb.op_before(a[off_diagonal], b[off_diagonal])
    got_pairs = {(int(corr[x]), int(corr[y])) for x, y, g in zip(a[off_diagonal], b[off_diagonal], got) if g}
    assert got_pairs == oracle(p)


def test_hb_is_linear_time_sized(tmp_path):
    """Clocks are ops x components, not ops x ops."""
    b = RaceBuilder(rank=0)
    for i in range(2000):
        b.launch(f"k{i}", STREAMS[i % 3], 1000 * i, 1000 * i + 200, 1000 * i + 500)
    hb = happens_before(read_kineto([b.dumps()], "x.json", 0))
    assert hb.op_clock.shape == (2000, 4)


def test_program_order_and_launch_order():
    """Ops on one stream are ordered; ops on two streams launched by one thread are not."""
    b = RaceBuilder(rank=0)
    b.launch("a", 7, 100, 1000, 2000)
    b.launch("b", 7, 200, 2000, 3000)
    b.launch("c", 13, 300, 1000, 5000)
    hb = happens_before(read_kineto([b.dumps()], "x.json", 0))
    name = list(read_kineto([b.dumps()], "x.json", 0).gpu_ops["name"].astype(str))
    i = {n: name.index(n) for n in "abc"}
    assert hb.op_before([i["a"]], [i["b"]])[0] and not hb.op_before([i["b"]], [i["a"]])[0]
    assert not hb.op_before([i["a"]], [i["c"]])[0] and not hb.op_before([i["c"]], [i["a"]])[0]


def _names(b: RaceBuilder) -> tuple:
    trace = read_kineto([b.dumps()], "x.json", 0)
    names = list(trace.gpu_ops["name"].astype(str))
    return happens_before(trace), {n: names.index(n) for n in names}


def test_a_record_passes_on_what_its_stream_waited_for_without_an_op_between():
    """NCCL's pattern: its internal stream 13 runs no kernel; it waits for stream 7, records, and
    stream 20 waits for that record: the producer on 7 happens before the consumer on 20. Without
    the middle wait (control) nothing orders them."""
    for middle_wait, expected in ((True, True), (False, False)):
        b = RaceBuilder(rank=0)
        b.launch("producer", 7, 100, 1000, 2000)
        r7 = b.record(200)
        if middle_wait:
            b.wait(13, 7, r7, 300)
        r13 = b.record(400)
        b.wait(20, 13, r13, 500)
        b.launch("consumer", 20, 600, 3000, 4000)
        hb, i = _names(b)
        assert hb.op_before([i["producer"]], [i["consumer"]])[0] == expected


def test_a_stream_sync_covers_what_the_stream_waited_for():
    """Stream 13 waits for stream 7 and is then synchronised (no op of 13 in between): the host
    knows the producer finished, and so does everything it launches next."""
    b = RaceBuilder(rank=0)
    b.launch("producer", 7, 100, 1000, 2000)
    r7 = b.record(200)
    b.wait(13, 7, r7, 300)
    b.stream_sync(13, 400, 2100)
    b.launch("consumer", 20, 2200, 3000, 4000)
    hb, i = _names(b)
    assert hb.op_before([i["producer"]], [i["consumer"]])[0]


def test_host_instants():
    """A stream sync makes the synced op known to every thread's later instants."""
    b = RaceBuilder(rank=0)
    b.launch("a", 7, 100, 1000, 2000)
    b.stream_sync(7, 300, 2100)
    b.launch("b", 13, 2200, 2300, 2400, tid=1001)
    trace = read_kineto([b.dumps()], "x.json", 0)
    hb = happens_before(trace)
    a = list(trace.gpu_ops["name"].astype(str)).index("a")
    s7 = int(hb.op_comp[a])
    before = hb.instant_clock(np.array([-1, -1]), np.array([T0 + 2000, T0 + 2100]))
    assert before[0, s7] < hb.op_pos[a] <= before[1, s7]


def _large_rank(n: int):
    """n kernels on 4 streams from 2 threads; an event record + stream wait every 50 kernels and
    a stream synchronize every 1000, all as columns (no JSON) so that only the clocks are timed."""
    from overlapscope.trace.model import (COLLECTIVE_COLUMNS, GPU_OP_COLUMNS, HOST_CALL_COLUMNS, NO_ID,
                                          RANGE_COLUMNS, SYNC_COLUMNS, RankInfo, Trace, empty_frame,
                                          frame_from_columns)

    i = np.arange(n)
    stream = np.array([7, 13, 20, 24])[(i * 7919) % 4]
    launch = 10_000 * i
    corr = 4 * i + 10  # room for a record and a wait after every kernel
    ops = frame_from_columns({"rank": np.zeros(n), "device": np.zeros(n), "stream": stream, "kind": ["kernel"] * n,
                              "start": launch + 5000, "end": launch + 9000, "name": ["k"] * n, "correlation": corr,
                              "op_class": ["compute"] * n}, GPU_OP_COLUMNS)
    w = i[i % 50 == 49]
    s = i[i % 1000 == 999]
    call_t = np.concatenate([launch, launch[w] + 2000, launch[w] + 3000, launch[s] + 4000])
    call_c = np.concatenate([corr, corr[w] + 1, corr[w] + 2, corr[s] + 3])
    tids = np.concatenate([1000 + i % 2, np.full(2 * w.size + s.size, 1000)])
    calls = frame_from_columns({"rank": np.zeros(call_t.size), "pid": np.ones(call_t.size), "tid": tids,
                                "start": call_t, "end": call_t + 500, "name": ["cudaLaunchKernel"] * call_t.size,
                                "correlation": call_c, "api": ["runtime"] * call_t.size}, HOST_CALL_COLUMNS)
    k = 2 * w.size + s.size
    syncs = frame_from_columns({
        "rank": np.zeros(k), "device": np.zeros(k),
        "kind": ["event_record"] * w.size + ["stream_wait_event"] * w.size + ["stream_sync"] * s.size,
        "start": np.concatenate([launch[w] + 2000, launch[w] + 3000, launch[s] + 4000]),
        "end": np.concatenate([launch[w] + 2100, launch[w] + 3100, launch[s] + 9500]),
        "stream": np.concatenate([stream[w], np.roll(stream[w], 1), stream[s]]),
        "event": np.concatenate([np.full(2 * w.size, 5), np.full(s.size, NO_ID)]),
        "wait_on_stream": np.concatenate([np.full(w.size, NO_ID), stream[w], np.full(s.size, NO_ID)]),
        "record_correlation": np.concatenate([np.full(w.size, NO_ID), corr[w] + 1, np.full(s.size, NO_ID)]),
        "correlation": np.concatenate([corr[w] + 1, corr[w] + 2, corr[s] + 3])}, SYNC_COLUMNS)
    return Trace(ranks=[RankInfo(0, "generated")], gpu_ops=ops, host_calls=calls, syncs=syncs,
                 ranges=empty_frame(RANGE_COLUMNS), collectives=empty_frame(COLLECTIVE_COLUMNS))


@pytest.mark.slow
def test_200k_ops_take_well_under_a_few_seconds():
    import time

    trace = _large_rank(200_000)
    t0 = time.perf_counter()
    hb = happens_before(trace)
    elapsed = time.perf_counter() - t0
    assert len(hb.waits) == 4000 and hb.epoch_end.size == 200
    assert elapsed < 5.0, f"happens_before on 200k ops took {elapsed:.2f} s"
