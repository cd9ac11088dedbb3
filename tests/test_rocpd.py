"""The rocpd reader on databases built by tests/rocpd_builder.py, with hand-computed answers."""

from __future__ import annotations

import sqlite3

import pytest

from overlapscope.errors import BadInput
from overlapscope.instrument import encode_access_mark
from overlapscope.overlap import analyze
from overlapscope.races import check_races
from overlapscope.trace.classify import classified
from overlapscope.trace.model import NO_ID
from overlapscope.trace.rocpd import read_rocpd
from overlapscope.trace.sqlite_kind import FOREIGN_FORMATS, sqlite_kind
from rocpd_builder import RocpdBuilder

T0 = 1_000_000_000
IDS = {"ids": (0x7F00_0000_0000, 4096)}


def tbo_block(b: RocpdBuilder, pid: int = 4242, device: int = 0) -> None:
    """Nested ROCTx regions; compute on stream 1 [100, 400); RCCL all-reduce on stream 2
    [300, 600) launched inside `tbo/comm` and the RCCL call; a DtoD copy [700, 750)."""
    r = b.run(pid, gpus=(device,))
    r.marker("ProfilerStep#3", T0, T0 + 1000)
    r.marker("tbo", T0 + 10, T0 + 900)
    r.marker("tbo/compute", T0 + 20, T0 + 40)
    r.launch("gemm_kernel", 1, T0 + 25, T0 + 100, T0 + 400, device=device)
    r.marker("tbo/comm", T0 + 50, T0 + 80)
    r.rccl("ncclAllReduce", T0 + 55, T0 + 75)
    r.launch("ncclDevKernel_Generic_1", 2, T0 + 60, T0 + 300, T0 + 600, device=device)
    r.copy("MEMORY_COPY_DEVICE_TO_DEVICE", T0 + 700, T0 + 750, dst=device, src=device, stream=1)


def write(b: RocpdBuilder, tmp_path, name="1_results.db"):
    return b.write(tmp_path / name)


def overlap(trace, regions=()):
    return analyze(classified(trace), list(regions))


@pytest.mark.parametrize("version", [3, 4])
def test_nested_regions_rccl_on_second_stream(tmp_path, version):
    b = RocpdBuilder(version=version)
    tbo_block(b)
    trace = read_rocpd(write(b, tmp_path), "x.db")
    assert [(r.rank, r.device, r.pid, r.format, r.gpu_name) for r in trace.ranks] == [
        (0, 0, 4242, "rocpd", "AMD Instinct MI300X")]
    assert trace.ranks[0].versions == {"rocpd_schema": str(version)}
    ops = trace.gpu_ops
    assert ops["name"].astype(str).tolist() == ["gemm_kernel", "ncclDevKernel_Generic_1",
                                                "Memcpy DtoD (Device -> Device)"]
    assert ops["stream"].tolist() == [1, 2, 1]
    assert ops["kind"].astype(str).tolist() == ["kernel", "kernel", "memcpy"]
    assert (ops["start"] - T0).tolist() == [100, 300, 700]
    # launch links: each kernel's correlation is its hipLaunchKernel's
    calls = trace.host_calls
    assert calls["name"].astype(str).tolist() == ["hipLaunchKernel", "hipLaunchKernel"]
    assert calls["correlation"].tolist() == ops["correlation"].tolist()[:2]
    ranges = trace.ranges.sort_values("start")
    assert ranges["name"].astype(str).tolist() == ["ProfilerStep#3", "tbo", "tbo/compute", "tbo/comm", "ncclAllReduce"]
    assert ranges["source"].astype(str).tolist() == ["profiler_step"] + ["nvtx"] * 4
    assert ranges["domain"].astype(str).tolist() == ["", "", "", "", "rccl"]
    result = overlap(trace, ["^tbo/comm$", "^tbo$", "^ncclAllReduce$", "^tbo/compute$"])
    whole = result.ranks[0]
    # C = [300, 600), K = [100, 400): overlap 100 of 300
    assert (whole.comm_ns, whole.compute_ns, whole.overlap_ns, whole.exposed_comm_ns) == (300, 300, 100, 200)
    assert whole.overlap_pct == pytest.approx(100 / 3)
    regions = {r.region: r for r in result.regions}
    assert regions["^tbo/comm$"].overlap_pct == pytest.approx(100 / 3)
    assert regions["^tbo$"].comm_ns == 300  # the comm kernel was launched inside the outer range too
    assert regions["^ncclAllReduce$"].comm_ns == 300  # and inside the RCCL call
    assert regions["^tbo/compute$"].overlap_pct is None  # no comm launched there: not applicable
    assert [s.comm_ns for s in result.steps] == [300]


def test_versions_3_and_4_give_the_same_frames(tmp_path):
    traces = []
    for version in (3, 4):
        b = RocpdBuilder(version=version)
        tbo_block(b)
        traces.append(read_rocpd(b.write(tmp_path / f"v{version}.db"), "x.db"))
    for frame in ("gpu_ops", "host_calls", "syncs", "ranges"):
        a, c = (getattr(t, frame).astype(str).reset_index(drop=True) for t in traces)
        assert a.equals(c), frame


def test_two_processes_in_one_database(tmp_path):
    """Two uuids, two processes; ranks in (GPU, pid) order; the same pid in two runs stays apart."""
    b = RocpdBuilder()
    tbo_block(b, pid=900, device=1)
    tbo_block(b, pid=700, device=1)
    tbo_block(b, pid=800, device=0)
    trace = read_rocpd(write(b, tmp_path), "x.db", first_rank=4)
    assert [(r.rank, r.device, r.pid) for r in trace.ranks] == [(4, 0, 800), (5, 1, 700), (6, 1, 900)]
    assert trace.gpu_ops.groupby("rank").size().tolist() == [3, 3, 3]
    assert trace.ranges.groupby("rank").size().tolist() == [5, 5, 5]
    assert [r.overlap_ns for r in overlap(trace).ranks] == [100, 100, 100]
    b2 = RocpdBuilder()
    tbo_block(b2, pid=5)
    tbo_block(b2, pid=5)
    assert len(read_rocpd(b2.write(tmp_path / "same.db"), "x").ranks) == 2


@pytest.mark.parametrize("omit", [("rocpd_region",), ("rocpd_arg",), ("rocpd_memory_copy",), ("rocpd_event",),
                                  ("rocpd_info_kernel_symbol",), ("rocpd_string", "rocpd_info_thread")])
def test_missing_tables(tmp_path, omit):
    b = RocpdBuilder(omit=omit)
    tbo_block(b)
    trace = read_rocpd(write(b, tmp_path), "x.db")
    whole = overlap(trace).ranks[0]
    if "rocpd_info_kernel_symbol" in omit:  # no names: nothing is communication
        assert whole.comm_ns == 0 and whole.overlap_pct is None
        return
    assert (whole.comm_ns, whole.overlap_ns) == (300, 100)
    assert len(trace.gpu_ops) == (2 if "rocpd_memory_copy" in omit else 3)
    if {"rocpd_region", "rocpd_event"} & set(omit):
        assert len(trace.host_calls) == 0 and len(trace.ranges) == 0
    if "rocpd_event" in omit:
        assert (trace.gpu_ops["correlation"] == NO_ID).all()


# --- happens-before from HIP -------------------------------------------------------------------

def gather_then_consume(version: int, join: bool, consume_start: int = 6000) -> RocpdBuilder:
    """`dp_allgather` writes ids on stream 7 (handle 0x1007); `consume_ids` reads them on stream 13
    (handle 0x100d). Joined: hipEventRecord(ev, s7) then hipStreamWaitEvent(s13, ev)."""
    b = RocpdBuilder(version=version)
    r = b.run(31)
    r.marker("ProfilerStep#1", T0, T0 + 50_000)
    r.marker(encode_access_mark("dp_allgather", None, IDS), T0 + 1000, T0 + 2000)
    r.launch("ncclDevKernel_Generic_1", 7, T0 + 1500, T0 + 5000, T0 + 9000)
    if join:
        r.hip("hipEventRecord", T0 + 2500, T0 + 2510, event="0xe0", stream="0x1007")
        r.hip("hipStreamWaitEvent", T0 + 3000, T0 + 3010, stream="0x100d", event="0xe0", flags="0")
    r.marker(encode_access_mark("consume_ids", IDS, None), T0 + 4000, T0 + 4800)
    r.launch("index_select_kernel", 13, T0 + 4500, T0 + consume_start, T0 + consume_start + 1000)
    return b


@pytest.mark.parametrize("version", [3, 4])
def test_race_without_wait_and_fixed_by_hipStreamWaitEvent(tmp_path, version):
    racy = read_rocpd(gather_then_consume(version, join=False).write(tmp_path / "racy.db"), "racy.db")
    findings = check_races(classified(racy)).findings
    assert [(f.rule, f.kind, f.buffer, f.first.stream, f.second.stream) for f in findings] == [
        ("cross-stream", "manifest", "ids", 7, 13)]
    fixed = read_rocpd(gather_then_consume(version, join=True).write(tmp_path / "fixed.db"), "fixed.db")
    syncs = fixed.syncs
    assert syncs["kind"].astype(str).tolist() == ["event_record", "stream_wait_event"]
    assert syncs["stream"].tolist() == [7, 13]
    assert syncs["event"].tolist() == [0xE0, 0xE0]
    assert syncs["wait_on_stream"].tolist() == [NO_ID, 7]
    assert syncs["record_correlation"].tolist() == [NO_ID, syncs["correlation"].iloc[0]]
    assert check_races(classified(fixed)).findings == []


def test_syncs_of_every_hip_call(tmp_path):
    """Each HIP sync call becomes its CUDA kind; a stream handle no launch used stays NO_ID."""
    b = RocpdBuilder()
    r = b.run(8)
    r.launch("gemm_kernel", 3, T0 + 10, T0 + 100, T0 + 200)
    r.hip("hipStreamSynchronize", T0 + 20, T0 + 210, stream="0x1003")
    r.hip("hipEventSynchronize", T0 + 220, T0 + 230, event="0xbeef")
    r.hip("hipDeviceSynchronize", T0 + 240, T0 + 250)
    r.hip("hipStreamSynchronize", T0 + 260, T0 + 270, stream="0x9999")
    syncs = read_rocpd(b.write(tmp_path / "s.db"), "s.db").syncs
    assert syncs["kind"].astype(str).tolist() == ["stream_sync", "event_sync", "context_sync", "stream_sync"]
    assert syncs["stream"].tolist() == [3, NO_ID, NO_ID, NO_ID]
    assert syncs["event"].tolist() == [NO_ID, 0xBEEF, NO_ID, NO_ID]
    assert syncs["device"].tolist() == [0, 0, 0, 0]


# --- bad input ---------------------------------------------------------------------------------

def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\x07" * 500)
    with pytest.raises(BadInput, match="not a readable SQLite database") as e:
        read_rocpd(path, "bad.db")
    assert e.value.source == "bad.db"


def test_no_kernel_table(tmp_path):
    b = RocpdBuilder(omit=("rocpd_kernel_dispatch",))
    tbo_block(b)
    with pytest.raises(BadInput, match="no rocpd_kernel_dispatch table"):
        read_rocpd(write(b, tmp_path), "x.db")


def test_null_start(tmp_path):
    b = RocpdBuilder()
    r = b.run(1)
    r.kernel("gemm_kernel", T0, T0 + 5, null_start=True)
    with pytest.raises(BadInput, match="NULL start"):
        read_rocpd(write(b, tmp_path), "x.db")


def test_text_in_an_integer_column(tmp_path):
    b = RocpdBuilder()
    tbo_block(b)
    path = write(b, tmp_path)
    con = sqlite3.connect(path)
    table = next(n for (n,) in con.execute("SELECT name FROM sqlite_master") if n.startswith("rocpd_kernel_dispatch"))
    con.execute(f'UPDATE "{table}" SET "end" = \'soon\' WHERE id = 1')
    con.commit()
    con.close()
    with pytest.raises(BadInput, match="not integers"):
        read_rocpd(path, "x.db")


# --- telling SQLite files apart ------------------------------------------------------------------

def _db(path, *ddl):
    con = sqlite3.connect(path)
    for statement in ddl:
        con.execute(statement)
    con.commit()
    con.close()
    return path


def test_sqlite_kind(tmp_path):
    b = RocpdBuilder()
    tbo_block(b)
    assert sqlite_kind(write(b, tmp_path)) == "rocpd"
    assert sqlite_kind(_db(tmp_path / "n.sqlite", "CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INT)",
                           "CREATE TABLE StringIds (id INT, value TEXT)")) == "nsys"
    assert sqlite_kind(_db(tmp_path / "t.rpd", "CREATE TABLE rocpd_string (id INT, string TEXT)",
                           "CREATE TABLE rocpd_op (id INT, gpuId INT, queueId INT, start INT, end INT)",
                           "CREATE TABLE rocpd_api (id INT, pid INT, tid INT, start INT, end INT)")) == "rpd"
    assert sqlite_kind(_db(tmp_path / "results.db", "CREATE TABLE A (Index_ INT)",
                           "CREATE TABLE HIP (BeginNs INT)", "CREATE TABLE COPY (BeginNs INT)")) == "rocprof-v1"
    assert sqlite_kind(_db(tmp_path / "other.db", "CREATE TABLE users (id INT)")) is None
    (tmp_path / "text.db").write_text("hello")
    assert sqlite_kind(tmp_path / "text.db") is None
    for kind in ("rocprof-v1", "rocprof-v1-json", "rpd"):
        assert "\n" not in FOREIGN_FORMATS[kind] and "rocprofv3" in FOREIGN_FORMATS[kind]
