"""The Nsight Systems SQLite reader: hand-built exports whose answers were worked out by hand,
conformance over every export in ../shared/corpus/nsys, and bad input."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corpus import CORPUS, corpus_path
from nsys_builder import NsysBuilder
from overlapscope.cli import app
from overlapscope.errors import BadInput
from overlapscope.overlap import analyze
from overlapscope.races.hb import happens_before
from overlapscope.pipeline import load
from overlapscope.trace.model import NO_ID
from overlapscope.trace.nsys import read_nsys

T0 = 1_712_195_495_505_583_123  # large absolute ns: a float anywhere would lose the last digits
runner = CliRunner()


# --- hand-built exports ----------------------------------------------------------------------------

def build_one_rank() -> NsysBuilder:
    """Compute A [1000,5000) s7, B [3000,8000) s13, E [1500,2500) s30 (inside A), D [12000,12500) s7;
    memcpy [8000,11000) s7, memset [11000,11500) s7; comm X [4000,10000) s20 (runtime launch at 500),
    Y [9000,13000) s24 (driver launch at 2500).
    K = [1000,8000) ∪ [12000,12500) = 7500; C = [4000,13000) = 9000;
    C ∩ K = [4000,8000) ∪ [12000,12500) = 4500 → 50 %."""
    b = NsysBuilder()
    b.kernel("ampere_sgemm_128x64_nn", 7, T0 + 1000, T0 + 5000, launch_at=T0 + 100)
    b.kernel("void flash_fwd_kernel<Flash_fwd_kernel_traits<128>>(Flash_fwd_params)", 13, T0 + 3000, T0 + 8000,
             launch_at=T0 + 200)
    b.kernel("triton_poi_fused_add_0", 30, T0 + 1500, T0 + 2500, launch_at=T0 + 250)
    b.kernel("triton_poi_fused_mul_1", 7, T0 + 12000, T0 + 12500, launch_at=T0 + 300)
    b.memcpy(7, T0 + 8000, T0 + 11000, launch_at=T0 + 400)
    b.memset(7, T0 + 11000, T0 + 11500, launch_at=T0 + 450)
    b.kernel("ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 20, T0 + 4000, T0 + 10000,
             launch_at=T0 + 500)
    b.kernel("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 24, T0 + 9000,
             T0 + 13000, launch_at=T0 + 2500, api="driver")
    b.nvtx("tbo/mb0", T0 + 0, T0 + 2000)
    b.nvtx("tbo/mb1_empty", T0 + 2400, T0 + 2450, push_pop=False)  # a start/end range that launches nothing
    b.nvtx("driver_region", T0 + 2400, T0 + 2600, registered=True)  # named through StringIds
    b.nvtx("tbo/other_thread", T0 + 0, T0 + 3000, tid=2000)  # same times, another thread
    b.nvtx("ProfilerStep#1", T0 + 0, T0 + 1500)
    b.nvtx("ProfilerStep#2", T0 + 1500, T0 + 3000)
    b.nvtx("never_popped", T0 + 100, None)
    return b


@pytest.fixture
def one_rank(tmp_path: Path) -> Path:
    return build_one_rank().write(tmp_path / "one_rank.sqlite")


def test_whole_trace_overlap_by_hand(one_rank):
    trace = load([one_rank])
    (row,) = analyze(trace).ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns, row.exposed_comm_ns) == (9000, 7500, 4500, 4500)
    assert row.overlap_pct == 50.0
    (info,) = trace.ranks
    assert (info.rank, info.device, info.pid, info.gpu_name, info.format) == (0, 0, 1000, "NVIDIA H200", "nsys")
    assert info.versions == {"nsys": "2026.2.1.210"}


def test_ops_keep_exact_ns_streams_and_correlations(one_rank):
    ops = load([one_rank]).gpu_ops
    assert ops["start"].min() == T0 + 1000 and ops["end"].max() == T0 + 13000
    assert sorted(ops["kind"].astype(str)) == ["kernel"] * 6 + ["memcpy", "memset"]
    assert set(ops["stream"]) == {7, 13, 20, 24, 30}
    assert ops["correlation"].is_unique and (ops["correlation"] != NO_ID).all()
    memory = ops[ops["kind"] != "kernel"]
    assert set(memory["op_class"].astype(str)) == {"memory"}
    assert set(memory["name"].astype(str)) == {"Memcpy DtoD (Device -> Device)", "Memset (Device)"}


def test_host_calls_runtime_and_driver_with_readable_names(one_rank):
    calls = load([one_rank]).host_calls
    apis = dict(zip(calls["name"].astype(str), calls["api"].astype(str)))
    assert apis == {"cudaLaunchKernel": "runtime", "cuLaunchKernelEx": "driver", "cudaMemcpyAsync": "runtime",
                    "cudaMemsetAsync": "runtime"}
    assert set(calls["pid"]) == {1000} and set(calls["tid"]) == {1000}


def test_regions_follow_the_launching_thread_and_driver_launches(one_rank):
    result = analyze(load([one_rank]), ["^tbo/mb0$", "driver_region", "mb1_empty", "other_thread", "nothing"])
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


def test_ranges_sources_and_unclosed_ranges(one_rank):
    ranges = load([one_rank]).ranges
    sources = dict(zip(ranges["name"].astype(str), ranges["source"].astype(str)))
    assert sources["ProfilerStep#1"] == sources["ProfilerStep#2"] == "profiler_step"
    assert sources["tbo/mb0"] == sources["driver_region"] == "nvtx"
    assert "never_popped" not in sources  # no end: still open when the capture stopped
    assert set(ranges["domain"].astype(str)) == {""}


def test_profiler_steps(one_rank):
    steps = {s.region: s for s in analyze(load([one_rank])).steps}
    assert (steps["ProfilerStep#1"].comm_ns, steps["ProfilerStep#1"].overlap_ns) == (6000, 4000)
    assert (steps["ProfilerStep#2"].comm_ns, steps["ProfilerStep#2"].overlap_ns) == (4000, 500)


def test_memcpy_counts_as_neither_comm_nor_compute(tmp_path):
    b = NsysBuilder()
    b.memcpy(7, 0, 10_000, launch_at=0)
    b.kernel("ncclKernel_AllReduce_RING_LL_Sum_float(ncclWorkElem)", 20, 2000, 6000, launch_at=1)
    (row,) = analyze(load([b.write(tmp_path / "t.sqlite")])).ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns, row.overlap_pct) == (4000, 0, 0, 0.0)


def test_comm_on_two_streams_at_once_counts_once(tmp_path):
    """C = [0,4000) ∪ [2000,6000) = [0,6000) = 6000; K = [3000,5000) = 2000 → 33.3 %."""
    b = NsysBuilder()
    b.kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL", 20, 0, 4000, launch_at=0)
    b.kernel("ncclDevKernel_AllGather_RING_LL", 21, 2000, 6000, launch_at=10)
    b.kernel("gemm", 7, 3000, 5000, launch_at=20)
    (row,) = analyze(load([b.write(tmp_path / "t.sqlite")])).ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns) == (6000, 2000, 2000)
    assert row.overlap_pct == pytest.approx(100 / 3)


def test_no_comm_is_null_not_zero(tmp_path):
    b = NsysBuilder()
    b.kernel("gemm", 7, 0, 1000, launch_at=0)
    path = b.write(tmp_path / "t.sqlite")
    (row,) = analyze(load([path])).ranks
    assert row.overlap_pct is None and row.comm_ns == 0
    result = runner.invoke(app, ["analyze", str(path), "--json"])
    assert json.loads(result.stdout)["ranks"][0]["overlap_pct"] is None


def test_export_without_gpu_work_has_no_ranks(tmp_path):
    b = NsysBuilder()
    b.call("cudaGetDeviceCount_v2000", 0, 10)
    b.sync("context_sync", 20, 30)
    b.nvtx("setup", 0, 40)
    trace = load([b.write(tmp_path / "t.sqlite")])
    assert trace.ranks == [] and len(trace.host_calls) == len(trace.syncs) == len(trace.ranges) == 0
    assert analyze(trace).nothing_measured() == "no GPU kernels in the trace: nothing to measure"


def build_two_processes_two_gpus() -> NsysBuilder:
    """Processes 2000 and 1000 (written in that order), each on GPUs 0 and 1; every pair runs
    comm [0,1000) and compute from 0 for 500 (1000/0), 250 (1000/1), 750 (2000/0), none (2000/1).
    Both processes number their correlations from 1, so the ids collide across processes."""
    b = NsysBuilder(gpu_names={0: "NVIDIA H200", 1: "NVIDIA H100 80GB HBM3"})
    compute = {(2000, 0): 750, (2000, 1): 0, (1000, 0): 500, (1000, 1): 250}
    for (pid, device), length in compute.items():
        b.kernel("ncclDevKernel_AllReduce", 20, 0, 1000, launch_at=10 * device, pid=pid, device=device)
        if length:
            b.kernel("gemm", 7, 0, length, launch_at=10 * device + 5, pid=pid, device=device)
    b.nvtx("mine", 0, 100, pid=2000)  # holds the launches of process 2000 only
    return b


def test_two_processes_two_gpus_are_four_ranks_in_device_pid_order(tmp_path):
    path = build_two_processes_two_gpus().write(tmp_path / "t.sqlite")
    trace = read_nsys(path, source=str(path), first_rank=4)
    assert [(r.rank, r.device, r.pid, r.gpu_name) for r in trace.ranks] == [
        (4, 0, 1000, "NVIDIA H200"), (5, 0, 2000, "NVIDIA H200"),
        (6, 1, 1000, "NVIDIA H100 80GB HBM3"), (7, 1, 2000, "NVIDIA H100 80GB HBM3")]
    assert (trace.gpu_ops.groupby("rank")["device"].first() == [0, 0, 1, 1]).all()


def test_each_rank_links_launches_within_its_own_process(tmp_path):
    trace = load([build_two_processes_two_gpus().write(tmp_path / "t.sqlite")])
    result = analyze(trace, ["mine"])
    assert [r.overlap_pct for r in result.ranks] == [50.0, 75.0, 25.0, 0.0]
    regions = {r.rank: r for r in result.regions}
    assert [regions[r].ranges for r in range(4)] == [0, 1, 0, 1]  # process 2000's range, on both its ranks
    assert (regions[1].comm_ns, regions[1].overlap_ns) == (1000, 750)
    assert (regions[3].comm_ns, regions[3].overlap_ns) == (1000, 0)
    assert regions[0].comm_ns == regions[2].comm_ns == 0
    # host calls of a process belong to each of its ranks
    calls = trace.host_calls
    assert sorted(calls.groupby("rank")["pid"].first()) == [1000, 1000, 2000, 2000]
    assert calls.groupby("rank").size().tolist() == [4, 3, 4, 3]


def test_event_record_and_stream_wait_event_are_linked(tmp_path):
    """Event 3 recorded on stream 7 (t=100), awaited by stream 20 (t=120); recorded again on
    stream 9 (t=200), awaited by stream 21 (t=220) and synchronised by the host (t=300): each wait
    names the latest earlier record of the event. Event 4 is awaited but never recorded."""
    b = NsysBuilder()
    b.kernel("gemm", 7, 0, 1000, launch_at=0)
    first = b.event_record(3, stream=7, at=100)
    b.sync("stream_wait_event", 120, 125, stream=20, event=3)
    second = b.event_record(3, stream=9, at=200)
    b.sync("stream_wait_event", 220, 225, stream=21, event=3)
    b.sync("event_sync", 300, 400, event=3)
    b.sync("stream_wait_event", 500, 505, stream=22, event=4)
    b.sync("context_sync", 600, 700)
    syncs = load([b.write(tmp_path / "t.sqlite")]).syncs.sort_values("start")
    got = [(k, s, e, w, r) for k, s, e, w, r in zip(syncs["kind"].astype(str), syncs["stream"], syncs["event"],
                                                     syncs["wait_on_stream"], syncs["record_correlation"])]
    assert got == [
        ("event_record", 7, 3, NO_ID, NO_ID),
        ("stream_wait_event", 20, 3, 7, first),
        ("event_record", 9, 3, NO_ID, NO_ID),
        ("stream_wait_event", 21, 3, 9, second),
        ("event_sync", NO_ID, 3, 9, second),
        ("stream_wait_event", 22, 4, NO_ID, NO_ID),
        ("context_sync", NO_ID, NO_ID, NO_ID, NO_ID),
    ]
    records = syncs[syncs["kind"] == "event_record"]
    assert records["correlation"].tolist() == [first, second]
    assert records["start"].tolist() == [100, 200]  # the cudaEventRecord call's time, not CUPTI's timestamp 0


def test_nccl_calls_in_their_nvtx_domain_name_the_kernels(tmp_path):
    """A grouped send/recv (ncclGroupEnd launches the kernel) and a lone all-reduce."""
    b = NsysBuilder()
    b.domain(1, "NCCL")
    for name, start, end in [("ncclGroupStart", 100, 110), ("ncclSend", 120, 130), ("ncclRecv", 140, 150),
                             ("ncclGroupEnd", 160, 400), ("ncclAllReduce", 500, 800)]:
        b.nvtx(name, start, end, domain=1, registered=True)
    sendrecv = b.kernel("ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)", 20, 1000, 2000, launch_at=200,
                        api="driver")
    allreduce = b.kernel("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 20, 2000, 3000, launch_at=600)
    b.kernel("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 20, 3000, 4000, launch_at=900)  # outside any NCCL range
    trace = load([b.write(tmp_path / "t.sqlite")])
    rows = dict(zip(trace.collectives["correlation"], trace.collectives["collective"].astype(str)))
    assert rows == {sendrecv: "ncclRecv+ncclSend", allreduce: "ncclAllReduce"}
    assert set(trace.ranges["domain"].astype(str)) == {"NCCL"}


def test_exports_without_enum_tables_read_the_same(tmp_path):
    with_enums, without = build_one_rank(), build_one_rank()
    without.enums = False
    a = load([with_enums.write(tmp_path / "a.sqlite")])
    b = load([without.write(tmp_path / "b.sqlite")])
    for frame in ("gpu_ops", "host_calls", "ranges", "syncs"):
        left, right = getattr(a, frame), getattr(b, frame)
        assert left.astype(str).equals(right.astype(str)), frame


# --- bad input -------------------------------------------------------------------------------------

def test_not_sqlite_named_sqlite(tmp_path):
    path = tmp_path / "report.sqlite"
    path.write_bytes(b"this is not a database, just text named like one\n" * 100)
    with pytest.raises(BadInput, match=re.escape(str(path))):
        load([path])
    with pytest.raises(BadInput, match="not a readable SQLite database") as e:
        read_nsys(path, source=str(path))
    assert str(path) in str(e.value)


def test_sqlite_without_kernel_table(tmp_path):
    path = tmp_path / "no_kernels.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT)")
    con.close()
    with pytest.raises(BadInput, match="no CUDA kernel table: was the report captured with -t cuda") as e:
        load([path])
    assert str(e.value).startswith(str(path))
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 2 and "no CUDA kernel table" in result.stderr and "Traceback" not in result.output


def test_truncated_sqlite(tmp_path):
    b = build_one_rank()
    for i in range(2000):  # enough rows for the tables to span many pages
        b.kernel("gemm", 7, i * 10, i * 10 + 5, launch_at=i * 10)
    path = b.write(tmp_path / "full.sqlite")
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BadInput, match="truncated or corrupt") as e:
        load([truncated])
    assert str(truncated) in str(e.value)


def test_missing_required_column(tmp_path):
    path = build_one_rank().write(tmp_path / "t.sqlite")
    with sqlite3.connect(path) as con:
        con.execute("ALTER TABLE CUPTI_ACTIVITY_KIND_KERNEL DROP COLUMN streamId")
    con.close()
    with pytest.raises(BadInput, match="CUPTI_ACTIVITY_KIND_KERNEL lacks column.s. streamId") as e:
        load([path])
    assert str(path) in str(e.value)


def test_non_integer_values(tmp_path):
    path = build_one_rank().write(tmp_path / "t.sqlite")
    with sqlite3.connect(path) as con:
        con.execute("UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET start = 'soon' WHERE rowid = 2")
    con.close()
    with pytest.raises(BadInput, match="CUPTI_ACTIVITY_KIND_KERNEL: start holds values that are not integers"):
        load([path])


# --- conformance over ../shared/corpus/nsys --------------------------------------------------------

def corpus_exports() -> list[Path]:
    """Every export in the corpus, listed without touching it at import (so a missing corpus
    does not take the hand-built tests down with it): then one placeholder stands in."""
    folder = CORPUS / "nsys"
    return sorted(folder.rglob("*.sqlite")) if folder.is_dir() else [folder / "missing.sqlite"]


def sql(path: Path, query: str) -> list[tuple]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        return con.execute(query).fetchall()


@pytest.mark.parametrize("path", corpus_exports(), ids=lambda p: p.name)
def test_every_export_loads_with_its_own_kernel_count(path):
    path = corpus_path(*path.relative_to(CORPUS).parts)  # missing: skips here, fails in CI
    trace = load([path])
    kernels = trace.gpu_ops[trace.gpu_ops["kind"] == "kernel"]
    per_rank = kernels.groupby("rank").size()
    assert per_rank.sum() == sql(path, "SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL")[0][0]
    assert [r.rank for r in trace.ranks] == list(range(len(trace.ranks)))
    assert all(r.versions["nsys"][:4] in ("2024", "2025", "2026") for r in trace.ranks)
    assert (trace.gpu_ops["end"] >= trace.gpu_ops["start"]).all()


def test_h100_without_nccl_is_not_applicable():
    result = analyze(load([corpus_path("nsys", "nsys-ai", "h100_2gpu_1s.sqlite")]))
    assert len(result.ranks) == 2
    assert all(r.overlap_pct is None and r.comm_ns == 0 for r in result.ranks)


def oracle_overlap(path: Path) -> list[tuple[int, int, int]]:
    """(comm_ns, compute_ns, overlap_ns) per (deviceId, pid), straight from the kernel rows:
    plain sorting and merging, independent of overlapscope.intervals."""
    rows = sql(path, "SELECT k.deviceId, (k.globalPid >> 24) & 16777215, k.start, k.\"end\", s.value "
                     "FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s ON s.id = k.demangledName")
    out = []
    for pair in sorted({(device, pid) for device, pid, *_ in rows}):
        mine = [(start, end, name) for device, pid, start, end, name in rows if (device, pid) == pair]
        comm = merged([(s, e) for s, e, name in mine if re.match(r"(void\s+)?nccl", name)])
        compute = merged([(s, e) for s, e, name in mine if not re.match(r"(void\s+)?nccl", name)])
        out.append((length(comm), length(compute), length(intersect(comm, compute))))
    return out


def merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        elif end > start:
            out.append([start, end])
    return [(s, e) for s, e in out]


def intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def length(spans: list[tuple[int, int]]) -> int:
    return sum(e - s for s, e in spans)


@pytest.mark.parametrize("name", ["mfu_2gpu_before.sqlite", "mfu_2gpu_after.sqlite"])
def test_overlap_equals_an_oracle_from_the_sql_rows(name):
    path = corpus_path("nsys", "nsys-ai", name)
    result = analyze(load([path]))
    assert [(r.comm_ns, r.compute_ns, r.overlap_ns) for r in result.ranks] == oracle_overlap(path)
    assert all(r.comm_ns > 0 for r in result.ranks)


def test_sync_rows_take_the_device_of_their_context():
    """nsys 2026.2 writes deviceId 0 on every sync row of this file, also for the process whose
    context 2 runs on device 1; the reader puts those rows on device 1, with that process's rank."""
    path = corpus_path("nsys", "nsys-ai", "mfu_2gpu_before.sqlite")
    assert sql(path, "SELECT DISTINCT deviceId FROM CUPTI_ACTIVITY_KIND_SYNCHRONIZATION") == [(0,)]
    trace = load([path])
    per_rank = trace.syncs.groupby("rank").agg(device=("device", "unique"), rows=("kind", "size"))
    assert [list(d) for d in per_rank["device"]] == [[0], [1]]
    assert per_rank["rows"].sum() == 366


def test_nsys_2025_layout_sync_types():
    """deprecatedSyncType (NULL) beside syncType, eventId 0xFFFFFFFF. Two rows are typed stream
    waits (syncType 2) but their calls are cudaStreamSynchronize: they are stream syncs."""
    path = corpus_path("nsys", "nvidia-fuser", "report_nsys2025.1.sqlite")
    calls = sql(path, "SELECT s.syncType, n.value FROM CUPTI_ACTIVITY_KIND_SYNCHRONIZATION s "
                      "JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON r.correlationId = s.correlationId "
                      "AND r.globalTid >> 24 = s.globalPid >> 24 JOIN StringIds n ON n.id = r.nameId")
    assert sorted(calls) == [(2, "cudaStreamSynchronize_v3020"), (2, "cudaStreamSynchronize_v3020"),
                             (4, "cudaDeviceSynchronize_v3020")]
    trace = load([path])
    assert sorted(trace.syncs["kind"].astype(str)) == ["context_sync", "stream_sync", "stream_sync"]
    assert set(trace.syncs["event"]) == {NO_ID}


def test_sync_kind_follows_the_cuda_call(tmp_path):
    """A cudaStreamSynchronize typed as a stream wait (no event) is read as the stream sync it is,
    and the race checker then orders the synced kernel before what the host does next."""
    b = NsysBuilder()
    b.kernel("producer", 7, 100, 5000, launch_at=0)
    b.sync("stream_sync", 2000, 5100, stream=7, typed_as="stream_wait_event")
    b.kernel("consumer", 21, 6000, 7000, launch_at=5200)
    trace = load([b.write(tmp_path / "t.sqlite")])
    assert trace.syncs["kind"].astype(str).tolist() == ["stream_sync"]
    hb = happens_before(trace.for_rank(0))
    order = trace.gpu_ops.sort_values("start").index.to_numpy()
    assert hb.op_before(order[:1], order[1:]).tolist() == [True]


def test_copies_on_a_gpu_without_kernels_belong_to_their_process_rank(tmp_path):
    """Process 1000 computes on GPU 0 and copies into GPU 1 (a peer copy, recorded on GPU 1's
    context); process 2000 computes on GPU 1. Two ranks, not three: the copy is rank 0's."""
    b = NsysBuilder()
    b.kernel("gemm", 7, 0, 100, launch_at=0, pid=1000, device=0)
    b.memcpy(148, 200, 300, launch_at=150, pid=1000, device=1)
    b.kernel("gemm", 7, 0, 100, launch_at=0, pid=2000, device=1)
    trace = load([b.write(tmp_path / "t.sqlite")])
    assert [(r.rank, r.pid, r.device) for r in trace.ranks] == [(0, 1000, 0), (1, 2000, 1)]
    copies = trace.gpu_ops[trace.gpu_ops["kind"] == "memcpy"]
    assert copies[["rank", "device"]].values.tolist() == [[0, 1]]
    assert trace.host_calls.groupby("rank").size().tolist() == [2, 1]


def test_second_record_of_a_cross_device_copy_is_ordered_like_the_first(tmp_path):
    """One cudaMemcpyAsync into a peer GPU, recorded once per context (stream 21 on GPU 0, then
    stream 148 on GPU 1) behind an event wait on the producer's stream: both records come after
    the producer. A copy on GPU 1 that is another call stays unordered (the control)."""
    b = NsysBuilder()
    b.kernel("producer", 7, 100, 1000, launch_at=0)
    b.event_record(5, stream=7, at=50)
    b.sync("stream_wait_event", 60, 65, stream=21, event=5)
    corr = b.memcpy(21, 1100, 1200, launch_at=70)
    b.memcpy(148, 1210, 1300, device=1, corr=corr)
    b.memcpy(149, 1400, 1500, launch_at=80, device=1)
    trace = load([b.write(tmp_path / "t.sqlite")])
    ops = trace.gpu_ops.reset_index(drop=True)
    hb = happens_before(trace.for_rank(0))
    producer = ops.index[ops["name"] == "producer"].to_numpy()
    by_stream = {int(s): ops.index[ops["stream"] == s].to_numpy() for s in (21, 148, 149)}
    assert hb.op_before(producer, by_stream[21]).tolist() == [True]
    assert hb.op_before(producer, by_stream[148]).tolist() == [True]
    assert hb.op_before(producer, by_stream[149]).tolist() == [False]


def test_event_sync_linked_to_its_cuda_event_record():
    trace = load([corpus_path("nsys", "test-cuda", "report_nsys2026.1.sqlite")])
    syncs = trace.syncs
    wait = syncs[syncs["kind"] == "event_sync"].iloc[0]
    assert (wait["event"], wait["wait_on_stream"], wait["record_correlation"]) == (2, 7, 147)
    assert sorted(syncs[syncs["kind"] == "event_record"]["correlation"]) == [130, 147]


def test_nccl_nvtx_ranges_fill_collectives():
    """NCCL's NVTX ranges (ncclGroupStart/ncclSend/ncclRecv/ncclGroupEnd) surround each SendRecv
    kernel's launch, in a domain whose create row is outside this trimmed file."""
    trace = load([corpus_path("nsys", "nsys-ai", "mfu_2gpu_before.sqlite")])
    coll = trace.collectives
    assert set(coll["collective"].astype(str)) == {"ncclRecv+ncclSend"}
    ops = trace.gpu_ops
    linked = coll.merge(ops, on=["rank", "correlation"])
    assert len(linked) == len(coll) > 0
    assert linked["name"].astype(str).str.startswith("ncclDevKernel_SendRecv").all()
    assert (trace.ranges["domain"].astype(str) == "domain 1").sum() == 462
