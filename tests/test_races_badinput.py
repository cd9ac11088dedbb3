"""Fuzzed bad input for the race checker: malformed sync events, dangling correlation ids,
missing or garbage Execution Trace nodes. Each must give a clear BadInput or a report (with the
omitted checks stated in notes), never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlapscope.errors import BadInput
from overlapscope.races import RaceReport, check_races
from overlapscope.trace.et import parse_execution_trace
from overlapscope.pipeline import load
from race_builders import T0, RaceBuilder, check, execution_trace, tensor, write, write_et
from test_races_rules import dp_gather_then_consume, et_two_streams

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.integers(-3, 40),
                        st.text(max_size=6), st.sampled_from(["0x7", "Spans", "", "7"]))
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=8)
SYNC_KINDS = st.sampled_from(["Stream Wait Event", "Event Sync", "Stream Sync", "Context Sync", "Bogus Sync"])
SYNC_KEYS = ["cuda_sync_kind", "wait_on_stream", "wait_on_cuda_event_record_corr_id", "wait_on_cuda_event_id",
             "stream", "correlation", "device"]


def run_checker(builder: RaceBuilder, et: dict | bytes | None = None) -> RaceReport | None:
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        write(builder, run, "rank-0.trace.json")
        if isinstance(et, bytes):
            (run / "rank-0.et.json").write_bytes(et)
        elif et is not None:
            write_et(et, run / "rank-0.et.json")
        try:
            report = check_races(load([run]))
        except BadInput as e:
            assert str(e).strip() and "\n" not in str(e)
            return None
    assert all(isinstance(n, str) and n for n in report.notes)
    for f in report.findings:
        assert f.rule in ("cross-stream", "host-consumer", "wrong-join", "collective-order")
        assert f.kind in ("manifest", "latent") and f.hint
    return report


@st.composite
def sync_event(draw) -> dict:
    """A cuda_sync event with any subset of its args, each plausible, dangling or garbage."""
    kind = draw(SYNC_KINDS)
    plausible = st.one_of(st.sampled_from([7, 13, 20, 99, -1, 2, 3, 5, 10_000]), json_scalar)
    args = {k: draw(plausible) for k in SYNC_KEYS if draw(st.booleans())}
    if draw(st.booleans()):
        args["cuda_sync_kind"] = kind
    start = draw(st.integers(0, 12_000))
    return {"ph": "X", "cat": "cuda_sync", "name": kind, "pid": 0, "tid": draw(st.sampled_from([7, 13, -1])),
            "ts": (T0 + start) / 1000, "dur": draw(st.integers(0, 5000)) / 1000, "args": args}


@SETTINGS
@given(st.lists(sync_event(), min_size=1, max_size=6), st.booleans())
def test_malformed_sync_events(events, join):
    b = dp_gather_then_consume(6000, join=join)
    b.events.extend(events)
    run_checker(b)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["kernel", "cuda_runtime", "gpu_memcpy"]),
                          st.integers(-5, 60), st.sampled_from([7, 13, 99])), min_size=1, max_size=8))
def test_dangling_correlation_ids(extra):
    """Kernels whose launch is not in the trace, launches of nothing, repeated ids."""
    b = dp_gather_then_consume(6000, join=True)
    for cat, corr, stream in extra:
        if cat == "cuda_runtime":
            b.events.append({"ph": "X", "cat": cat, "name": "cudaLaunchKernel", "pid": b.pid, "tid": b.tid,
                             "ts": (T0 + 3000) / 1000, "dur": 1, "args": {"correlation": corr}})
        else:
            b.events.append({"ph": "X", "cat": cat, "name": "stray", "pid": 0, "tid": stream,
                             "ts": (T0 + 3000) / 1000, "dur": 2,
                             "args": {"correlation": corr, "stream": stream, "device": 0}})
    report = run_checker(b)
    assert report is not None


@SETTINGS
@given(st.lists(json_value, max_size=6), st.booleans())
def test_execution_trace_with_garbage_nodes(garbage, keep_good):
    b, et = et_two_streams(join=False)
    et["nodes"] = (et["nodes"] if keep_good else []) + garbage
    report = run_checker(b, et)
    assert report is not None
    if keep_good:  # the good nodes still give their finding
        assert [f.rule for f in report.findings] == ["cross-stream"]
    if any(not isinstance(g, dict) for g in garbage):
        assert any("skipped" in n for n in report.notes)


@SETTINGS
@given(json_value)
def test_execution_trace_that_is_no_trace(doc):
    b, _ = et_two_streams(join=False)
    data = orjson.dumps({"schema": "1.1.1", "nodes": doc} if not isinstance(doc, list) else {"schema": 1, "nodes": 7})
    report = run_checker(b, data)
    assert report is None  # "no nodes list": BadInput naming the file


@SETTINGS
@given(st.binary(max_size=64))
def test_execution_trace_bytes(junk):
    with pytest.raises(BadInput):
        parse_execution_trace(b'{"schema": "1.0.1", "nodes": [' + junk, "et.json")


def test_missing_execution_trace_nodes_are_stated(tmp_path):
    b, et = et_two_streams(join=False)
    et["nodes"] = [n for n in et["nodes"] if n["name"] != "aten::mul"]
    report = check(b, tmp_path=tmp_path, et=et)
    assert report.findings == []  # the reader is gone: nothing left to race with
    assert any("rank 0:" in n and "no matching Kineto op" in n for n in report.notes)


def test_execution_trace_of_another_run_is_stated(tmp_path):
    b, _ = et_two_streams(join=False)
    other = execution_trace([{"id": 5, "rf_id": 5, "name": "aten::conv2d",
                              "outputs": [(tensor(1, 9), "Tensor(float)")]}])
    report = check(b, tmp_path=tmp_path, et=other)
    assert any("from the same run" in n for n in report.notes)


def test_truncated_execution_trace_is_bad_input(tmp_path):
    b, et = et_two_streams(join=False)
    run = tmp_path / "run"
    write(b, run, "rank-0.trace.json")
    (run / "rank-0.et.json").write_bytes(orjson.dumps(et)[:-40])
    with pytest.raises(BadInput, match="rank-0.et.json"):
        check_races(load([run]))


def test_wait_on_a_stream_without_ops_and_impossible_record(tmp_path):
    """Stream 555 runs no op: its wait is kept (a later record there would pass it on) and
    orders nothing by itself; the impossible record is noted and leaves the pair unknown."""
    b = RaceBuilder(rank=0)
    b.mark("dp_allgather", 1000, 2000, writes={"ids": (0x1000, 64)})
    b.launch("ncclDevKernel_AllGather_RING_LL", 7, 1500, 5000, 9000)
    b.wait(13, 7, record_corr=987_654, at=3000)  # a record "made" after the wait: impossible
    b.sync("Stream Wait Event", T0 + 3100, T0 + 3120, stream=555, wait_on_stream=7, record_corr=2)
    b.mark("consume_ids", 4000, 4800, reads={"ids": (0x1000, 64)})
    b.launch("index_select_kernel", 13, 4500, 9500, 10_500)
    report = check(b, tmp_path=tmp_path)
    # the impossible wait is on the consumer's stream between the two accesses: their order is
    # unknown, so the pair is left out, and the notes say so
    assert report.findings == []
    assert any("made after it" in n for n in report.notes)
    assert any("1 unordered access pair(s) not reported" in n for n in report.notes)
    assert report.unchecked_pairs == 1


def test_record_from_before_the_capture_window_covers_nothing(tmp_path):
    """A record call that is not in the trace, with a smaller correlation id than every op:
    the event covers none of the ops the trace shows."""
    b = RaceBuilder(rank=0)
    b.mark("dp_allgather", 1000, 2000, writes={"ids": (0x1000, 64)})
    b.launch("ncclDevKernel_AllGather_RING_LL", 7, 1500, 5000, 9000)
    b.wait(13, 7, record_corr=1, at=3000)
    b.mark("consume_ids", 4000, 4800, reads={"ids": (0x1000, 64)})
    b.launch("index_select_kernel", 13, 4500, 9500, 10_500)
    assert [f.rule for f in check(b, tmp_path=tmp_path).findings] == ["cross-stream"]


mark_text = st.text(alphabet="abc|=@+,:0x123456789fw r", max_size=40)


@SETTINGS
@given(st.lists(st.tuples(mark_text, st.integers(0, 10_000), st.integers(0, 3000), st.sampled_from([1000, 2000])),
                min_size=1, max_size=6))
def test_garbage_access_marks(marks):
    """Ranges whose names look like access marks but are not exactly one: ignored, with a note."""
    b = dp_gather_then_consume(6000, join=False)
    for text, start, dur, tid in marks:
        b.annotation("osacc:" + text, T0 + start, T0 + start + dur, tid=tid)
    report = run_checker(b)
    assert report is not None and any(f.rule == "cross-stream" for f in report.findings)


@SETTINGS
@given(st.lists(st.tuples(st.integers(-2, 8), st.sampled_from(["aten::add_", "aten::mul", "aten::sub"]),
                          st.integers(0, 10_000)), max_size=8))
def test_execution_trace_links_that_do_not_fit(cpu_ops):
    """cpu_ops whose rf ids repeat, are missing from the ET, or carry another op's name."""
    b, et = et_two_streams(join=False)
    for rf_id, name, start in cpu_ops:
        b.cpu_op(name, start, start + 200, rf_id=rf_id)
    run_checker(b, et)
