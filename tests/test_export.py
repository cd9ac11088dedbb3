"""The Chrome/Perfetto export: a Kineto trace the tool's own reader reads back to the same numbers,
with derived tracks the reader ignores, and names that stay data."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from builders import KinetoBuilder
from corpus import corpus_path
from typer.testing import CliRunner

from overlapscope.cli import app
from overlapscope.export import (
    DERIVED_CAT,
    TID_EXPOSED,
    TID_HIDDEN,
    correlation_offsets,
    dumps,
    export_trace,
    one_file_caveats,
    split_by_rank,
    us_text,
    write_export,
)
from overlapscope.overlap import analyze
from overlapscope.pipeline import load
from overlapscope.races.findings import Access, Finding

REPO = Path(__file__).resolve().parents[1]
V4 = REPO / "sample_traces" / "deepseek_v4_tbo" / "comm-stream"
REGIONS = ["^tbo/block$", "combine"]
NCCL = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"


def _numbers(a) -> list[tuple]:
    return [(r.rank, r.comm_ns, r.compute_ns, r.overlap_ns, r.exposed_comm_ns) for r in a.ranks]


def _scopes(rows, with_count: bool) -> list[tuple]:
    return [(r.rank, r.region, r.comm_ns, r.overlap_ns, r.exposed_comm_ns) + ((r.ranges,) if with_count else ())
            for r in rows]


def _written(data: dict, path: Path) -> dict:
    """The document as a JSON parser sees it, numbers kept as their exact decimal text."""
    write_export(data, path)
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return json.loads(raw, parse_float=Decimal, parse_int=int)


def _check_trace_event_format(doc: dict) -> None:
    assert isinstance(doc["traceEvents"], list) and doc["displayTimeUnit"] == "ns"
    flows: dict[tuple, set] = {}
    for ev in doc["traceEvents"]:
        assert {"ph", "ts", "pid", "tid"} <= ev.keys(), ev
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        assert -(2**31) <= ev["tid"] < 2**31, ev  # viewers keep tids in 32 bits
        assert ev["ph"] in {"X", "M", "C", "s", "f"}, ev
        assert isinstance(ev["ts"], (int, Decimal))
        if ev["ph"] == "X":
            assert isinstance(ev["dur"], (int, Decimal)) and ev["dur"] >= 0, ev
            assert isinstance(ev["name"], str) and isinstance(ev["cat"], str)
        if ev["ph"] == "C":
            assert ev["args"] and all(isinstance(v, (int, Decimal)) for v in ev["args"].values()), ev
        if ev["ph"] in "sf":
            flows.setdefault((ev["cat"], ev["id"]), set()).add(ev["ph"])
            if ev["ph"] == "f":
                assert ev["bp"] == "e"
        if ev["ph"] == "M":
            assert ev["name"] in {"process_name", "process_sort_index", "thread_name", "thread_sort_index"}
    assert all(v == {"s", "f"} for v in flows.values()), flows


def _ns(value: Decimal | int) -> int:
    return round(Decimal(value) * 1000)


# ---------------------------------------------------------------- round trips of real traces

@pytest.fixture(scope="module", params=["torch", "nsys"])
def v4(request):
    trace = load([V4 / request.param])
    return trace, export_trace(trace, regions=REGIONS)


def test_v4_one_file_gives_back_every_rank_region_and_step(v4, tmp_path):
    trace, data = v4
    assert data["overlapscope"]["one_file"] == []  # ranks 0, 1 on GPUs 0, 1: one file is exact
    path = tmp_path / "run.perfetto.json"
    write_export(data, path)
    back = load([path])
    before, after = analyze(trace, REGIONS), analyze(back, REGIONS)
    assert [(r.rank, r.device) for r in back.ranks] == [(r.rank, r.device) for r in trace.ranks]
    assert _numbers(after) == _numbers(before)
    assert all(r.comm_ns > 0 and r.overlap_ns > 0 for r in before.ranks)
    # regions and steps too (ranges shared by the ranks of one file are counted once per rank)
    assert _scopes(after.regions, False) == _scopes(before.regions, False)
    assert _scopes(after.steps, False) == _scopes(before.steps, False)
    assert len(before.steps) == 12 and len(before.regions) == 4
    assert len(back.gpu_ops) == len(trace.gpu_ops)
    assert len(back.collectives) == len(trace.collectives)


def test_v4_file_per_rank_gives_back_everything_the_reader_reads(v4, tmp_path):
    trace, data = v4
    files = write_export(data, tmp_path / "run")
    assert [f.name for f in files] == ["rank-0.trace.json", "rank-1.trace.json"]
    back = load([tmp_path / "run"])
    before, after = analyze(trace, REGIONS), analyze(back, REGIONS)
    assert _numbers(after) == _numbers(before)
    assert _scopes(after.regions, True) == _scopes(before.regions, True)
    assert _scopes(after.steps, True) == _scopes(before.steps, True)
    for frame in ("gpu_ops", "host_calls", "ranges", "collectives"):
        assert len(getattr(back, frame)) == len(getattr(trace, frame)), frame
    cols = ["rank", "device", "stream", "kind", "start", "end", "correlation", "op_class"]
    a = trace.gpu_ops[cols].astype(str).sort_values(cols).reset_index(drop=True)
    b = back.gpu_ops[cols].astype(str).sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)  # correlation ids as the source wrote them (no offset per file)


def test_v4_through_the_command_line(v4, tmp_path):
    trace, data = v4
    path = tmp_path / "run.json"
    write_export(data, path)
    result = CliRunner().invoke(app, ["analyze", str(path), "--json", "--region", "^tbo/block$"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["ranks"]
    want = analyze(trace)
    assert [(r["rank"], r["comm_ns"], r["compute_ns"], r["overlap_ns"], r["exposed_comm_ns"]) for r in rows] \
        == _numbers(want)


def test_v4_export_is_trace_event_format_with_derived_tracks(v4, tmp_path):
    trace, data = v4
    doc = _written(data, tmp_path / "run.json.gz")
    _check_trace_event_format(doc)
    events = doc["traceEvents"]
    threads = {(e["pid"], e["args"]["name"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    procs = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert set(procs) == {0, 1} and all(p.startswith(f"rank {r} (") for r, p in procs.items())
    for rank in (0, 1):
        for name in ("comm hidden", "comm exposed", "profiler steps (GPU time)", "region ^tbo/block$ (GPU time)",
                     "region combine (GPU time)"):
            assert (rank, name) in threads, name
        streams = set(trace.gpu_ops.loc[trace.gpu_ops["rank"] == rank, "stream"].tolist())
        assert {(rank, f"stream {s}") for s in streams} <= threads
    # hidden + exposed are the rank's comm; hidden is its overlap (durations summed from the text, in ns)
    a = {r.rank: r for r in analyze(trace).ranks}
    for rank in (0, 1):
        hidden = sum(_ns(e["dur"]) for e in events if e["pid"] == rank and e["tid"] == TID_HIDDEN and e["ph"] == "X")
        exposed = sum(_ns(e["dur"]) for e in events if e["pid"] == rank and e["tid"] == TID_EXPOSED
                      and e["ph"] == "X")
        assert hidden == a[rank].overlap_ns and exposed == a[rank].exposed_comm_ns
    counters = [e for e in events if e["ph"] == "C" and e["name"] == "step overlap %"]
    assert len(counters) == 12
    steps = {(s.rank, s.region): s for s in analyze(trace).steps}
    spans = [e for e in events if e["ph"] == "X" and e["cat"] == DERIVED_CAT and e["name"].startswith("ProfilerStep")]
    assert len(spans) == 12
    for e in spans:
        assert e["args"]["overlap_ns"] == steps[(e["pid"], e["name"])].overlap_ns
    regions = [e for e in events if e["ph"] == "X" and e["cat"] == DERIVED_CAT and e["args"].get("region") == "^tbo/block$"]
    assert len(regions) == 12  # 6 block ranges per rank
    for e in regions:  # on GPU time: after the host range it came from
        assert _ns(e["ts"]) >= e["args"]["host_start_ns"]


def test_corpus_trace_round_trips(tmp_path):
    path = corpus_path("kineto", "hta", "trace_diff_control.json.gz")
    trace = load([path])
    data = export_trace(trace, regions=["ProfilerStep"])
    out = tmp_path / "export.json"
    doc = _written(data, out)
    _check_trace_event_format(doc)
    assert doc["distributedInfo"]["rank"] == trace.ranks[0].rank
    back = load([out])
    before, after = analyze(trace, ["ProfilerStep"]), analyze(back, ["ProfilerStep"])
    assert _numbers(after) == _numbers(before) and before.ranks[0].compute_ns > 0
    assert _scopes(after.regions, True) == _scopes(before.regions, True)
    assert _scopes(after.steps, True) == _scopes(before.steps, True)
    for frame in ("gpu_ops", "host_calls", "ranges", "syncs"):
        assert len(getattr(back, frame)) == len(getattr(trace, frame)), frame
    assert [r.gpu_name for r in back.ranks] == [r.gpu_name for r in trace.ranks]


# ---------------------------------------------------------------- hand-built traces

def _small(tmp_path: Path, names: dict[str, str] | None = None, t0: int = 1_712_345_678_901_234_567) -> Path:
    """Two streams: a comm kernel partly hidden by a compute kernel, inside a region."""
    names = names or {}
    b = KinetoBuilder(rank=0, world_size=1)
    b.annotation("ProfilerStep#7", t0, t0 + 100_000)
    b.annotation(names.get("region", "block"), t0 + 1_000, t0 + 50_000)
    b.kernel(names.get("compute", "gemm"), 7, t0 + 10_001, t0 + 30_003, launch_at=t0 + 2_000)
    b.kernel(names.get("comm", NCCL), 20, t0 + 20_000, t0 + 40_001, launch_at=t0 + 3_000)
    b.kernel("gemm2", 7, t0 + 60_000, t0 + 60_007, launch_at=t0 + 51_000)
    return b.write(tmp_path / "small.json")


def test_times_are_exact_at_epoch_nanoseconds(tmp_path):
    assert us_text([0, 1, 999, 1000, 1_712_345_678_901_234_567, -250]) == [
        "0.000", "0.001", "0.999", "1.000", "1712345678901234.567", "-0.250"]
    trace = load([_small(tmp_path)])
    out = tmp_path / "out.json"
    write_export(export_trace(trace), out)
    back = load([out])
    for frame in ("gpu_ops", "host_calls", "ranges"):
        a, b = getattr(trace, frame), getattr(back, frame)
        assert sorted(zip(a["start"], a["end"])) == sorted(zip(b["start"], b["end"])), frame
    assert analyze(back).ranks[0].overlap_ns == 10_003  # 20_000 .. 30_003


def test_derived_tracks_do_not_change_what_the_reader_reads(tmp_path):
    trace = load([_small(tmp_path)])
    op = trace.gpu_ops.iloc[0]
    finding = Finding("cross-stream", "manifest", 0, "buf", Access(str(op["name"]), int(op["stream"]), int(op["start"]),
                                                                   int(op["end"]), "block"),
                      Access("nic read", -1, int(op["start"]) + 5, int(op["end"]) + 9, ""), "sync it",
                      step="ProfilerStep#7", timing="overlapped")
    full = export_trace(trace, findings=[finding], regions=["block", "ProfilerStep"])
    derived = [e for e in full["traceEvents"] if e["ph"] in "CsfX" and e.get("cat", "").startswith(DERIVED_CAT)]
    assert {e["ph"] for e in derived} == {"X", "C", "s", "f"}
    bare = {**full, "traceEvents": [e for e in full["traceEvents"] if e not in derived]}
    write_export(full, tmp_path / "full.json")
    write_export(bare, tmp_path / "bare.json")
    a, b = load([tmp_path / "full.json"]), load([tmp_path / "bare.json"])
    for frame in ("gpu_ops", "host_calls", "ranges", "syncs", "collectives"):
        pd.testing.assert_frame_equal(getattr(a, frame), getattr(b, frame), obj=frame)
    assert a.ranks[0].dropped_rows == {}
    # the arrow: both ends share an id, the GPU end binds inside its op on its stream's track
    s = next(e for e in derived if e["ph"] == "s")
    f = next(e for e in derived if e["ph"] == "f")
    assert s["id"] == f["id"] and f["bp"] == "e" and s["tid"] == int(op["stream"])
    assert int(op["start"]) <= _ns(Decimal(dumps(s["ts"]).decode())) < int(op["end"])
    host = [e for e in derived if e["ph"] == "X" and e["name"] == "nic read"]
    assert len(host) == 1 and host[0]["tid"] == f["tid"]


HOSTILE = {
    "compute": 'gemm "quoted" \\back\\slash\n</script><script>alert(1)</script>',
    "comm": NCCL + " \u202eevil\u202c \x00\x01\x1f \u2028",
    "region": "block\t'\"}],{\"ph\":\"X\"} \U0001F600",
}


def test_hostile_names_stay_data(tmp_path):
    trace = load([_small(tmp_path, HOSTILE)])
    data = export_trace(trace, regions=[re.escape(HOSTILE["region"])])
    raw = dumps(data)
    assert b"</script>" in raw and b"\n" not in raw  # inside strings only: newlines are escaped
    doc = _written(data, tmp_path / "out.json")
    _check_trace_event_format(doc)
    names = {e["name"] for e in doc["traceEvents"]}
    assert set(HOSTILE.values()) <= names
    assert f"region {re.escape(HOSTILE['region'])} (GPU time)" in {e["args"].get("name") for e in doc["traceEvents"]}
    assert [e["name"] for e in doc["traceEvents"] if e.get("args", {}).get("region")] == [HOSTILE["region"]]
    back = load([tmp_path / "out.json"])
    assert set(HOSTILE.values()) <= set(back.gpu_ops["name"].astype(str)) | set(back.ranges["name"].astype(str))
    assert _numbers(analyze(back)) == _numbers(analyze(trace))
    assert analyze(back).ranks[0].comm_ns > 0  # the hostile NCCL name still reads as communication


def test_a_name_that_is_not_unicode_text_is_replaced_not_fatal(tmp_path):
    trace = load([_small(tmp_path)])
    ops = trace.gpu_ops.copy()
    cats = [c + "\ud800" if c == "gemm" else c for c in ops["name"].cat.categories]
    ops["name"] = pd.Categorical.from_codes(ops["name"].cat.codes, categories=pd.Index(cats, dtype=object))
    data = export_trace(dataclasses.replace(trace, gpu_ops=ops))
    doc = json.loads(dumps(data))
    assert "gemm\ufffd" in {e["name"] for e in doc["traceEvents"]}


# ---------------------------------------------------------------- one file or one per rank

def _two_ranks(tmp_path: Path, devices: tuple[int, int] = (0, 1)) -> Path:
    """Two processes whose launches share correlation ids (each numbers its own)."""
    run = tmp_path / "two"
    run.mkdir(parents=True)
    for rank, device in enumerate(devices):
        b = KinetoBuilder(rank=rank, world_size=2, device=device, pid=100 + rank)
        t0 = 1_000_000 * (rank + 1)
        b.annotation("block", t0, t0 + 50_000)
        b.kernel("gemm", 7, t0 + 10_000, t0 + 30_000, launch_at=t0 + 2_000)
        b.kernel(NCCL, 20, t0 + 20_000 + rank * 1000, t0 + 40_000, launch_at=t0 + 3_000)
        b.write(run / f"rank-{rank}.json")
    return run


def test_shared_correlation_ids_are_offset_in_one_file_and_restored_per_rank(tmp_path):
    trace = load([_two_ranks(tmp_path)])
    offsets = correlation_offsets(trace)
    assert offsets[0] == 0 and offsets[1] > 0
    data = export_trace(trace, regions=["block"])
    one = tmp_path / "one.json"
    write_export(data, one)
    back = load([one])
    assert _scopes(analyze(back, ["block"]).regions, False) == _scopes(analyze(trace, ["block"]).regions, False)
    per = split_by_rank(data)
    assert [d["distributedInfo"]["rank"] for d in per.values()] == [0, 1]
    write_export(data, tmp_path / "dir")
    again = load([tmp_path / "dir"])
    assert sorted(again.gpu_ops["correlation"]) == sorted(trace.gpu_ops["correlation"])


def test_one_file_says_when_it_cannot_give_the_ranks_back(tmp_path):
    trace = load([_two_ranks(tmp_path, devices=(0, 0))])
    caveats = one_file_caveats(trace)
    assert caveats and "same GPU" in caveats[0]
    assert export_trace(trace)["overlapscope"]["one_file"] == caveats
    shifted = load([_two_ranks(tmp_path / "b")]).renumbered(4)
    assert one_file_caveats(shifted) and "0, 1" in one_file_caveats(shifted)[0]
    # the directory form gives them back all the same
    write_export(export_trace(trace), tmp_path / "dir")
    back = load([tmp_path / "dir"])
    assert _numbers(analyze(back)) == _numbers(analyze(trace))


def test_bad_region_is_bad_input(tmp_path):
    from overlapscope.errors import BadInput

    with pytest.raises(BadInput):
        export_trace(load([_small(tmp_path)]), regions=["("])
