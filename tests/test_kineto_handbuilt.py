"""Hand-built Kineto traces whose overlap was worked out by hand (times in ns on an absolute
epoch base, so a float parser would get them wrong)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from builders import KinetoBuilder
from overlapscope.cli import app
from overlapscope.overlap import analyze
from overlapscope.pipeline import load

T0 = 1_712_195_495_505_583_123  # ns since the epoch, not a whole microsecond
runner = CliRunner()


def build_rank0() -> KinetoBuilder:
    """Compute A [1000,5000) s7, B [3000,8000) s13, D [12000,12500) s7; memcpy [8000,11000) s7;
    comm X [4000,10000) s20 (runtime launch at 500), Y [9000,13000) s24 (driver launch at 2500).
    K = [1000,8000) ∪ [12000,12500) = 7500; C = [4000,13000) = 9000;
    C ∩ K = [4000,8000) ∪ [12000,12500) = 4500 → 50 %."""
    b = KinetoBuilder(rank=0)
    b.kernel("ampere_sgemm_128x64_nn", 7, T0 + 1000, T0 + 5000, launch_at=T0 + 100)
    b.kernel("void flash_fwd_kernel<...>", 13, T0 + 3000, T0 + 8000, launch_at=T0 + 200)
    b.kernel("triton_poi_fused_add_0", 7, T0 + 12000, T0 + 12500, launch_at=T0 + 300)
    b.memcpy(7, T0 + 8000, T0 + 11000, launch_at=T0 + 400)
    b.kernel("ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 20, T0 + 4000, T0 + 10000,
             launch_at=T0 + 500)
    b.kernel("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 24, T0 + 9000,
             T0 + 13000, launch_at=T0 + 2500, api="cuda_driver")
    b.annotation("tbo/mb0", T0 + 0, T0 + 2000)
    b.annotation("tbo/mb1_empty", T0 + 2400, T0 + 2450)  # matches, launches nothing
    b.annotation("driver_region", T0 + 2400, T0 + 2600)
    b.annotation("tbo/other_thread", T0 + 0, T0 + 3000, tid=2000)  # same times, other thread
    b.annotation("ProfilerStep#1", T0 + 0, T0 + 1500)
    b.annotation("ProfilerStep#2", T0 + 1500, T0 + 3000)
    return b


@pytest.fixture
def rank0_file(tmp_path: Path) -> Path:
    return build_rank0().write(tmp_path / "trace.json.gz")


def test_whole_trace_overlap_by_hand(rank0_file):
    (row,) = analyze(load([rank0_file])).ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns, row.exposed_comm_ns) == (9000, 7500, 4500, 4500)
    assert row.overlap_pct == 50.0
    assert row.device == 0 and row.rank == 0


def test_regions_follow_the_launching_thread_and_driver_launches(rank0_file):
    result = analyze(load([rank0_file]), ["^tbo/mb0$", "driver_region", "mb1_empty", "other_thread", "nothing"])
    rows = {r.region: r for r in result.regions}
    # X only: [4000,10000) = 6000, overlapping K on [4000,8000) = 4000
    assert (rows["^tbo/mb0$"].comm_ns, rows["^tbo/mb0$"].overlap_ns) == (6000, 4000)
    assert rows["^tbo/mb0$"].overlap_pct == pytest.approx(200 / 3)
    # Y only (launched by cuLaunchKernelEx): [9000,13000) = 4000, overlap [12000,12500) = 500
    assert (rows["driver_region"].comm_ns, rows["driver_region"].overlap_ns) == (4000, 500)
    assert rows["driver_region"].overlap_pct == 12.5
    for empty in ("mb1_empty", "other_thread", "nothing"):
        assert rows[empty].comm_ns == 0 and rows[empty].overlap_pct is None
    assert rows["mb1_empty"].ranges == 1 and rows["nothing"].ranges == 0


def test_profiler_steps(rank0_file):
    steps = {s.region: s for s in analyze(load([rank0_file])).steps}
    assert (steps["ProfilerStep#1"].comm_ns, steps["ProfilerStep#1"].overlap_ns) == (6000, 4000)
    assert (steps["ProfilerStep#2"].comm_ns, steps["ProfilerStep#2"].overlap_ns) == (4000, 500)


def test_memcpy_counts_as_neither_comm_nor_compute(tmp_path):
    b = KinetoBuilder(rank=0)
    b.memcpy(7, 0, 10_000, launch_at=0)
    b.kernel("ncclKernel_AllReduce_RING_LL_Sum_float(ncclWorkElem)", 20, 2000, 6000, launch_at=1)
    (row,) = analyze(load([b.write(tmp_path / "t.json")])).ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns, row.overlap_pct) == (4000, 0, 0, 0.0)


def test_no_comm_is_null_not_zero_and_exits_2(tmp_path):
    b = KinetoBuilder(rank=0)
    b.kernel("gemm", 7, 0, 1000, launch_at=0)
    path = b.write(tmp_path / "t.json")
    (row,) = analyze(load([path])).ranks
    assert row.overlap_pct is None and row.comm_ns == 0
    result = runner.invoke(app, ["analyze", str(path), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["ranks"][0]["overlap_pct"] is None
    assert "not applicable" in result.stderr and str(path) in result.stderr


def test_comm_pattern_from_flag_and_config(tmp_path, monkeypatch):
    b = KinetoBuilder(rank=0)
    b.kernel("my_custom_allreduce_kernel", 20, 0, 1000, launch_at=0)
    b.kernel("gemm", 7, 500, 2000, launch_at=1)
    path = b.write(tmp_path / "t.json")
    assert analyze(load([path])).ranks[0].comm_ns == 0
    assert analyze(load([path], comm_patterns=["custom_allreduce"])).ranks[0].overlap_pct == 50.0
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.overlapscope]\ncomm_patterns = ["custom_allreduce"]\n')
    out = runner.invoke(app, ["analyze", str(path), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["ranks"][0]["overlap_pct"] == 50.0


def test_json_contract(rank0_file):
    out = runner.invoke(app, ["analyze", str(rank0_file), "--json", "--region", "tbo/mb0"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert set(doc["ranks"][0]) >= {"rank", "source", "device", "comm_ns", "compute_ns", "overlap_ns",
                                    "overlap_pct", "exposed_comm_ns"}
    assert set(doc["regions"][0]) >= {"rank", "region", "comm_ns", "overlap_ns", "overlap_pct", "exposed_comm_ns"}
    assert doc["regions"][0]["region"] == "tbo/mb0"


def test_console_table(rank0_file):
    out = runner.invoke(app, ["analyze", str(rank0_file), "--region", "tbo/mb0"])
    assert out.exit_code == 0, out.output
    assert "50.0 %" in out.stdout and "66.7 %" in out.stdout


def test_directory_of_ranks_named_by_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for rank in (0, 1):
        b = KinetoBuilder(rank=None)
        b.kernel("ncclDevKernel_AllReduce", 20, 0, 1000 * (rank + 1), launch_at=0)
        b.kernel("gemm", 7, 0, 500, launch_at=1)
        b.write(run / f"worker_rank-{rank}.json")
    (run / "README.txt").write_text("notes beside the traces are ignored")
    rows = analyze(load([run])).ranks
    assert [r.rank for r in rows] == [0, 1]
    assert [r.overlap_pct for r in rows] == [50.0, 25.0]


def test_sync_records_and_derived_event_records(tmp_path):
    b = KinetoBuilder(rank=0)
    b.kernel("gemm", 7, 0, 1000, launch_at=0)
    b.host_call("cudaEventRecord", 100, 110, corr=500)
    b.sync("Stream Wait Event", 120, 125, stream=20, wait_on_stream=7, record_corr=500, event_id=3)
    b.sync("Context Sync", 200, 300)
    syncs = load([b.write(tmp_path / "t.json")]).syncs
    assert sorted(syncs["kind"].astype(str)) == ["context_sync", "event_record", "stream_wait_event"]
    rec = syncs[syncs["kind"] == "event_record"].iloc[0]
    assert (rec["stream"], rec["correlation"], rec["event"], rec["start"]) == (7, 500, 3, 100)
    wait = syncs[syncs["kind"] == "stream_wait_event"].iloc[0]
    assert (wait["stream"], wait["wait_on_stream"], wait["record_correlation"]) == (20, 7, 500)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 50_000), st.integers(1, 5_000), st.integers(0, 30_000)),
                min_size=1, max_size=30),
       st.lists(st.integers(1, 10_000), min_size=1, max_size=5))
def test_step_rows_equal_each_step_taken_as_a_region(tmp_path_factory, ops, step_lengths):
    """The one-pass step assignment agrees with the per-range region path for every step."""
    b = KinetoBuilder(rank=0)
    t = 0
    for i, length in enumerate(step_lengths):
        b.annotation(f"ProfilerStep#{i}", t, t + length)
        t += length
    for is_comm, start, dur, launch in ops:
        b.kernel("ncclDevKernel_X" if is_comm else "gemm", 20 if is_comm else 7, start, start + dur, launch_at=launch)
    trace = load([b.write(tmp_path_factory.mktemp("steps") / "t.json")])
    result = analyze(trace, [f"^ProfilerStep#{i}$" for i in range(len(step_lengths))])
    by_step = {s.region: s for s in result.steps}
    for region in result.regions:
        step = by_step[region.region.strip("^$")]
        assert (step.comm_ns, step.overlap_ns, step.ranges) == (region.comm_ns, region.overlap_ns, region.ranges)
