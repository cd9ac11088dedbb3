"""Each rule on hand-built Kineto traces: a racy version (manifest and latent) and a fixed one.

Builder calls are made in time order, so correlation ids grow with time as CUPTI's do."""

from __future__ import annotations

import pytest

from overlapscope.overlap import launch_points
from overlapscope.races.places import op_places
from overlapscope.pipeline import load
from race_builders import NIC, T0, RaceBuilder, check, execution_trace, tensor, write

IDS = {"ids": (0x7F00_0000_0000, 4096)}
STAGING = {"staging": (0x7E00_0000_0000, 8192)}
ROUTER = {"router": (0x7D00_0000_0000, 2048)}


# ---- cross-stream ------------------------------------------------------------------------------

def dp_gather_then_consume(consume_start: int, join: bool) -> RaceBuilder:
    """`dp_allgather` writes ids on stream 7; `consume_ids` reads them on stream 13."""
    b = RaceBuilder(rank=0)
    b.step(1, 0, 50_000)
    b.mark("dp_allgather", 1000, 2000, writes=IDS)
    b.launch("ncclDevKernel_AllGather_RING_LL", 7, 1500, 5000, 9000)
    if join:
        rc = b.record(2500)  # on stream 7, after the all-gather was enqueued
        b.wait(13, 7, rc, 3000)
    b.mark("consume_ids", 4000, 4800, reads=IDS)
    b.launch("index_select_kernel", 13, 4500, consume_start, consume_start + 1000)
    return b


def test_cross_stream_manifest(tmp_path):
    report = check(dp_gather_then_consume(6000, join=False), tmp_path=tmp_path)
    assert len(report.findings) == 1
    f = report.findings[0]
    assert (f.rule, f.kind, f.rank, f.buffer, f.step) == ("cross-stream", "manifest", 0, "ids", "ProfilerStep#1")
    assert (f.first.name, f.first.stream, f.first.region) == ("ncclDevKernel_AllGather_RING_LL", 7, "dp_allgather")
    assert (f.second.name, f.second.stream, f.second.region) == ("index_select_kernel", 13, "consume_ids")
    assert "record an event on stream 7 after `dp_allgather` and make stream 13 wait on it" in f.hint
    assert "before `consume_ids`" in f.hint


def test_findings_name_the_users_range_not_the_communication_librarys(tmp_path):
    """PyTorch's `nccl:_all_gather_base` record_function (and NCCL's own NVTX range) sits inside
    the user's mark, innermost around the kernel launch; the finding names the user's code. A
    kernel launched inside the library's range alone still gets that range's name."""
    b = dp_gather_then_consume(6000, join=False)
    b.region("nccl:_all_gather_base", 1400, 1600)
    f = check(b, tmp_path=tmp_path).findings[0]
    assert f.first.region == "dp_allgather"
    assert "after `dp_allgather`" in f.hint
    lone = RaceBuilder(rank=0)
    lone.step(1, 0, 50_000)
    lone.region("ncclAllGather", 1400, 1600)
    lone.launch("ncclDevKernel_AllGather_RING_LL", 7, 1500, 5000, 9000)
    (tmp_path / "lone").mkdir()
    trace = load([write(lone, tmp_path / "lone")]).for_rank(0)
    regions, _ = op_places(trace, launch_points(trace))
    assert regions.tolist() == ["ncclAllGather"]


def test_cross_stream_latent(tmp_path):
    report = check(dp_gather_then_consume(10_000, join=False), tmp_path=tmp_path)
    assert [(f.rule, f.kind) for f in report.findings] == [("cross-stream", "latent")]
    assert report.unchecked_pairs == 0


def test_cross_stream_fixed_by_event_record_and_wait(tmp_path):
    assert check(dp_gather_then_consume(9500, join=True), tmp_path=tmp_path).findings == []


def test_wait_recorded_before_the_write_does_not_fix_it(tmp_path):
    """An event recorded before the all-gather was enqueued covers nothing of it."""
    b = RaceBuilder(rank=0)
    rc = b.record(500)
    b.mark("dp_allgather", 1000, 2000, writes=IDS)
    b.launch("ncclDevKernel_AllGather_RING_LL", 7, 1500, 5000, 9000)
    b.wait(13, 7, rc, 3000)
    b.mark("consume_ids", 4000, 4800, reads=IDS)
    b.launch("index_select_kernel", 13, 4500, 9500, 10_500)
    assert [f.rule for f in check(b, tmp_path=tmp_path).findings] == ["cross-stream"]


def test_write_after_read_hints_record_stream(tmp_path):
    """A tensor read on a side stream, its memory then written on the main stream (the caching
    allocator handed it out again without record_stream: TensorRT-LLM #15265)."""
    b = RaceBuilder(rank=0)
    b.mark("side_read", 1000, 2000, reads=IDS)
    b.launch("side_kernel", 13, 1500, 2000, 6000)
    b.mark("reuse", 2400, 2600, writes=IDS)
    b.launch("fill_kernel", 7, 2500, 3000, 4000)
    [f] = check(b, tmp_path=tmp_path).findings
    assert (f.rule, f.kind, f.first.stream, f.second.stream) == ("cross-stream", "manifest", 13, 7)
    assert "record_stream" in f.hint


def test_same_stream_never_races(tmp_path):
    b = RaceBuilder(rank=0)
    b.mark("w", 1000, 2000, writes=IDS)
    b.launch("k1", 7, 1500, 2000, 6000)
    b.mark("r", 2400, 2600, reads=IDS)
    b.launch("k2", 7, 2500, 6000, 7000)
    assert check(b, tmp_path=tmp_path).findings == []


def test_reads_never_race(tmp_path):
    b = RaceBuilder(rank=0)
    b.mark("r1", 1000, 2000, reads=IDS)
    b.launch("k1", 7, 1500, 2000, 6000)
    b.mark("r2", 2400, 2600, reads=IDS)
    b.launch("k2", 13, 2500, 3000, 7000)
    assert check(b, tmp_path=tmp_path).findings == []


def test_disjoint_memory_never_races(tmp_path):
    b = RaceBuilder(rank=0)
    b.mark("w", 1000, 2000, writes={"a": (0x1000, 4096)})
    b.launch("k1", 7, 1500, 2000, 6000)
    b.mark("r", 2400, 2600, reads={"b": (0x2000, 4096)})  # [0x1000, 0x2000) and [0x2000, 0x3000) only touch
    b.launch("k2", 13, 2500, 3000, 7000)
    assert check(b, tmp_path=tmp_path).findings == []


def test_partial_overlap_races(tmp_path):
    b = RaceBuilder(rank=0)
    b.mark("w", 1000, 2000, writes={"a": (0x1000, 4096)})
    b.launch("k1", 7, 1500, 2000, 6000)
    b.mark("r", 2400, 2600, reads={"b": (0x1800, 4096)})
    b.launch("k2", 13, 2500, 3000, 7000)
    [f] = check(b, tmp_path=tmp_path).findings
    assert f.buffer == "a / b"


def test_one_finding_per_step_and_pair(tmp_path):
    """The same racy pattern twice in step 1 and once in step 2: two findings. (A device
    synchronize closes each iteration; without it the next all-gather would overwrite ids while
    the previous consumer may still read them, a race of its own.)"""
    b = RaceBuilder(rank=0)
    for base in (0, 20_000, 40_000):
        b.mark("dp_allgather", base + 1000, base + 2000, writes=IDS)
        b.launch("ncclDevKernel_AllGather_RING_LL", 7, base + 1500, base + 5000, base + 9000)
        b.mark("consume_ids", base + 4000, base + 4800, reads=IDS)
        b.launch("index_select_kernel", 13, base + 4500, base + 6000, base + 7000)
        b.device_sync(base + 5000, base + 9500)
    b.step(1, 0, 39_000)
    b.step(2, 39_000, 60_000)
    findings = check(b, tmp_path=tmp_path).findings
    assert sorted(f.step for f in findings) == ["ProfilerStep#1", "ProfilerStep#2"]


def test_device_synchronize_orders_everything_before_it(tmp_path):
    b = RaceBuilder(rank=0)
    b.mark("dp_allgather", 1000, 2000, writes=IDS)
    b.launch("ncclDevKernel_AllGather_RING_LL", 7, 1500, 5000, 9000)
    b.device_sync(2500, 9100)
    b.mark("consume_ids", 9200, 9400, reads=IDS)
    b.launch("index_select_kernel", 13, 9300, 9500, 10_500)
    assert check(b, tmp_path=tmp_path).findings == []


# ---- host consumer -----------------------------------------------------------------------------

def staging_then_rdma(gather_end: int, read: tuple[int, int], fix: str | None) -> RaceBuilder:
    """`gather` writes the staging buffer on stream 7; a transfer-engine thread's RDMA read
    (`rdma_read`, on="host") reads it (ROCm/ATOM #1121)."""
    b = RaceBuilder(rank=0)
    b.step(1, 0, 50_000)
    b.mark("gather", 1000, 2000, writes=STAGING)
    b.launch("gather_kernel", 7, 1500, 2000, gather_end)
    if fix == "stream_sync":
        b.stream_sync(7, 2100, gather_end + 100)
    elif fix in ("event_sync", "event_query_too_early"):
        rc = b.record(2100)
        end = 2300 if fix == "event_query_too_early" else gather_end + 100
        b.event_sync(7, rc, 2200, end, query=fix == "event_query_too_early")
    b.region("kv_transfer", read[0] - 100, read[1] + 100, tid=NIC)
    b.mark("rdma_read", read[0], read[1], reads=STAGING, on="host", tid=NIC)
    return b


def test_host_consumer_manifest(tmp_path):
    [f] = check(staging_then_rdma(8000, (3000, 5000), None), tmp_path=tmp_path).findings
    assert (f.rule, f.kind, f.buffer, f.step) == ("host-consumer", "manifest", "staging", "ProfilerStep#1")
    assert (f.first.name, f.first.stream, f.first.region) == ("gather_kernel", 7, "gather")
    assert (f.second.name, f.second.stream, f.second.region) == ("rdma_read", -1, "kv_transfer")
    assert f.second.end_ns - f.second.start_ns == 2000
    assert "torch.cuda.current_stream().synchronize()" in f.hint and "`rdma_read`" in f.hint


def test_host_consumer_latent(tmp_path):
    [f] = check(staging_then_rdma(2500, (3000, 5000), None), tmp_path=tmp_path).findings
    assert (f.rule, f.kind) == ("host-consumer", "latent")


@pytest.mark.parametrize("fix", ["stream_sync", "event_sync"])
def test_host_consumer_fixed_by_a_sync_on_the_model_thread(tmp_path, fix):
    """The sync is on the model's thread, the read on the transfer engine's: the documented
    extension (a sync orders the synced work before later calls of every thread) applies."""
    assert check(staging_then_rdma(8000, (8200, 9000), fix), tmp_path=tmp_path).findings == []


def test_event_query_that_returned_early_orders_nothing(tmp_path):
    """cudaEventQuery shows up as an Event Sync; it only counts if the work had finished."""
    findings = check(staging_then_rdma(8000, (8200, 9000), "event_query_too_early"), tmp_path=tmp_path).findings
    assert [(f.rule, f.kind) for f in findings] == [("host-consumer", "latent")]


def test_gpu_overwrites_while_host_still_reads(tmp_path):
    b = RaceBuilder(rank=0)
    b.mark("rdma_read", 1000, 6000, reads=STAGING, on="host", tid=NIC)
    b.mark("next_gather", 2000, 2500, writes=STAGING)
    b.launch("gather_kernel", 7, 2100, 3000, 4000)
    [f] = check(b, tmp_path=tmp_path).findings
    assert (f.rule, f.kind, f.first.stream, f.second.stream) == ("host-consumer", "manifest", -1, 7)
    assert "wait for the transfer to complete" in f.hint


def test_host_write_then_gpu_read_on_the_same_thread_is_ordered(tmp_path):
    """A host-side write that ends before the launch on the same thread happens before it."""
    b = RaceBuilder(rank=0)
    b.mark("rdma_write", 1000, 2000, writes=STAGING, on="host")
    b.mark("consume", 2400, 2600, reads=STAGING)
    b.launch("consume_kernel", 7, 2500, 3000, 4000)
    assert check(b, tmp_path=tmp_path).findings == []


# ---- wrong join --------------------------------------------------------------------------------

def side_allreduce_then_consume(consume_start: int, join_stream: int | None) -> RaceBuilder:
    """`side_allreduce` on stream 20 writes the router logits; `consume` reads them on stream 7.
    The join makes `join_stream` wait on stream 20 (ATOM #1208 joined the wrong one)."""
    b = RaceBuilder(rank=0)
    b.step(1, 0, 50_000)
    b.mark("side_allreduce", 1000, 2000, writes=ROUTER)
    b.launch("ncclDevKernel_AllReduce_RING_LL", 20, 1500, 2000, 6000)
    if join_stream is not None:
        rc = b.record(2100)
        b.wait(join_stream, 20, rc, 2200)
    b.launch("other_microbatch_kernel", 30, 2300, 2500, 3000)
    b.mark("consume", 2400, 2600, reads=ROUTER)
    b.launch("moe_gate_kernel", 7, 2500, consume_start, consume_start + 1000)
    return b


def test_wrong_join_manifest(tmp_path):
    [f] = check(side_allreduce_then_consume(3000, join_stream=30), tmp_path=tmp_path).findings
    assert (f.rule, f.kind, f.buffer) == ("wrong-join", "manifest", "router")
    assert (f.first.stream, f.first.region, f.second.stream, f.second.region) == (20, "side_allreduce", 7, "consume")
    assert "stream 30 waits for stream 20" in f.hint and "wrong stream" in f.hint
    assert "Make stream 7 wait for stream 20" in f.hint


def test_wrong_join_latent(tmp_path):
    [f] = check(side_allreduce_then_consume(7000, join_stream=30), tmp_path=tmp_path).findings
    assert (f.rule, f.kind) == ("wrong-join", "latent")


def test_missing_join_is_a_plain_cross_stream_race(tmp_path):
    [f] = check(side_allreduce_then_consume(3000, join_stream=None), tmp_path=tmp_path).findings
    assert (f.rule, f.kind) == ("cross-stream", "manifest")


def test_join_on_the_consumer_stream_fixes_it(tmp_path):
    assert check(side_allreduce_then_consume(7000, join_stream=7), tmp_path=tmp_path).findings == []


# ---- collective order --------------------------------------------------------------------------

def ranks_issuing(orders: list[list[tuple[str, int]]], seq: bool = True) -> list[RaceBuilder]:
    out = []
    for rank, order in enumerate(orders):
        b = RaceBuilder(rank=rank)
        b.step(1, 0, 50_000)
        for i, (name, n) in enumerate(order):
            t = 1000 + i * 5000
            b.collective(name, n, 20, t, t + 500, t + 3000, pg="0", seq=i + 1 if seq else None)
        out.append(b)
    return out


@pytest.mark.parametrize("seq", [True, False])
def test_collective_order_differs(tmp_path, seq):
    r0, r1 = ranks_issuing([[("allreduce", 1000), ("allgather", 500)], [("allgather", 500), ("allreduce", 1000)]], seq)
    [f] = check(r0, r1, tmp_path=tmp_path).findings
    assert (f.rule, f.kind, f.rank, f.buffer, f.step) == ("collective-order", "manifest", 1, "process group 0",
                                                         "ProfilerStep#1")
    assert f.first.name == "allreduce (1000 elems) on rank 0" and f.second.name == "allgather (500 elems) on rank 1"
    assert "same order" in f.hint


@pytest.mark.parametrize("seq", [True, False])
def test_collective_order_agrees(tmp_path, seq):
    order = [("allreduce", 1000), ("allgather", 500), ("allreduce", 1000)]
    assert check(*ranks_issuing([order, order], seq), tmp_path=tmp_path).findings == []


def test_collective_sizes_must_agree(tmp_path):
    r0, r1 = ranks_issuing([[("allreduce", 1000)], [("allreduce", 999)]])
    assert [f.rule for f in check(r0, r1, tmp_path=tmp_path).findings] == ["collective-order"]


def test_shifted_capture_windows_without_seq_are_not_a_finding(tmp_path):
    """Rank 1's capture started one collective later: the overlap agrees, nothing to report."""
    r0, r1 = ranks_issuing([[("allreduce", 10), ("allgather", 5), ("allreduce", 10)],
                            [("allgather", 5), ("allreduce", 10)]], seq=False)
    assert check(r0, r1, tmp_path=tmp_path).findings == []


def test_point_to_point_sides_differ_legitimately(tmp_path):
    r0, r1 = ranks_issuing([[("send", 10)], [("recv", 10)]])
    assert check(r0, r1, tmp_path=tmp_path).findings == []


# ---- accesses from the Execution Trace ---------------------------------------------------------

ADD_ = "aten::add_.Tensor(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)"
MUL = "aten::mul.Tensor(Tensor self, Tensor other) -> Tensor"


def et_two_streams(join: bool) -> tuple[RaceBuilder, dict]:
    """aten::add_ writes storage 50 on stream 7; aten::mul reads it on stream 13."""
    b = RaceBuilder(rank=0)
    b.step(1, 0, 50_000)
    b.cpu_op("aten::add_", 1000, 1300, rf_id=5)
    b.launch("add_kernel", 7, 1100, 2000, 6000)
    if join:
        rc = b.record(1350)
        b.wait(13, 7, rc, 1380)
    b.cpu_op("aten::mul", 1400, 1700, rf_id=6)
    b.launch("mul_kernel", 13, 1500, 3000 if not join else 6100, 4000 if not join else 7000)
    et = execution_trace([
        {"id": 10, "rf_id": 5, "name": "aten::add_", "schema": ADD_,
         "inputs": [(tensor(1, 50), "Tensor(float)"), (tensor(2, 51), "Tensor(float)"), (1, "Int")],
         "outputs": [(tensor(1, 50), "Tensor(float)")]},
        {"id": 11, "rf_id": 6, "name": "aten::mul", "schema": MUL,
         "inputs": [(tensor(1, 50), "Tensor(float)"), (tensor(3, 52), "Tensor(float)")],
         "outputs": [(tensor(4, 60), "Tensor(float)")]},
        {"id": 12, "rf_id": 99, "name": "aten::sub", "inputs": [(tensor(5, 70), "Tensor(float)")],
         "outputs": [(tensor(6, 71), "Tensor(float)")]},
    ])
    return b, et


def test_execution_trace_race(tmp_path):
    b, et = et_two_streams(join=False)
    report = check(b, tmp_path=tmp_path, et=et)
    [f] = report.findings
    assert (f.rule, f.kind, f.buffer) == ("cross-stream", "manifest", "storage 50")
    assert (f.first.name, f.second.name) == ("add_kernel", "mul_kernel")
    assert any("no matching Kineto op" in n and "12" in n for n in report.notes)


def test_execution_trace_fixed(tmp_path):
    b, et = et_two_streams(join=True)
    assert check(b, tmp_path=tmp_path, et=et).findings == []


# ---- traces without sync records (Kineto's cuda_sync events are opt-in) --------------------------

def test_unrecorded_waits_make_the_order_unknown(tmp_path):
    """The program joins the streams (cudaEventRecord + cudaStreamWaitEvent calls) but the trace
    holds no cuda_sync events saying which: the pair is not reported, and the notes say why."""
    b = RaceBuilder(rank=0)
    b.mark("dp_allgather", 1000, 2000, writes=IDS)
    b.launch("ncclDevKernel_AllGather_RING_LL", 7, 1500, 5000, 9000)
    b.record(2500)
    b.host_call("cudaStreamWaitEvent", T0 + 3000, T0 + 3020, 999)
    b.mark("consume_ids", 4000, 4800, reads=IDS)
    b.launch("index_select_kernel", 13, 4500, 9500, 10_500)
    report = check(b, tmp_path=tmp_path)
    assert report.findings == []
    assert any("enable_cuda_sync_events=True" in n for n in report.notes)
    assert any("not reported" in n for n in report.notes)
    assert report.unchecked_pairs == 1


def test_unrecorded_device_synchronize_still_orders(tmp_path):
    """cudaDeviceSynchronize needs no arguments: without sync records it is still understood."""
    b = RaceBuilder(rank=0)
    b.mark("gather", 1000, 2000, writes=STAGING)
    b.launch("gather_kernel", 7, 1500, 2000, 8000)
    b.host_call("cudaDeviceSynchronize", T0 + 2100, T0 + 8100, 998)
    b.mark("rdma_read", 8200, 9000, reads=STAGING, on="host", tid=NIC)
    assert check(b, tmp_path=tmp_path).findings == []
    b2 = staging_then_rdma(8000, (8200, 9000), None)  # the same without the synchronize races
    assert [f.rule for f in check(b2, tmp_path=tmp_path / "2").findings] == ["host-consumer"]


# ---- one finding per bug -----------------------------------------------------------------------

def test_every_kernel_of_a_region_racing_one_writer_is_one_finding(tmp_path):
    b = RaceBuilder(rank=0)
    b.mark("dp_allgather", 1000, 2000, writes={**IDS, "hidden": (0x7C00_0000_0000, 4096)})
    b.launch("ncclDevKernel_AllGather_RING_LL", 7, 1500, 5000, 9000)
    b.mark("moe", 4000, 4900, reads={**IDS, "hidden": (0x7C00_0000_0000, 4096)})
    for i, name in enumerate(["rms_norm_kernel", "gemm_kernel", "silu_kernel"]):
        b.launch(name, 13, 4100 + 100 * i, 6000 + 1000 * i, 6500 + 1000 * i)
    [f] = check(b, tmp_path=tmp_path).findings
    assert (f.rule, f.first.region, f.second.region, f.buffer) == ("cross-stream", "dp_allgather", "moe", "hidden, ids")


def test_marks_and_execution_trace_on_the_same_ops_are_one_finding(tmp_path):
    b, et = et_two_streams(join=False)
    # the same two ops also carry marks (address space): one finding, named by the marks
    b.mark("produce", 990, 1310, writes={"kv": (0x5000, 4096)})
    b.mark("consume", 1390, 1710, reads={"kv": (0x5000, 4096)})
    [f] = check(b, tmp_path=tmp_path, et=et).findings
    assert (f.buffer, f.first.region, f.second.region) == ("kv", "produce", "consume")


def test_ops_inside_a_host_mark_carry_out_the_host_access(tmp_path):
    """An on="host" mark around a GPU copy that stands in for the NIC read: the copy's own
    Execution Trace accesses are not counted again (one host-consumer finding, no cross-stream)."""
    b = RaceBuilder(rank=0)
    b.cpu_op("aten::copy_", 1000, 1300, rf_id=5)
    b.mark("gather", 1000, 1300, writes={"staging": (0x5000, 4096)})
    b.launch("gather_copy", 7, 1100, 2000, 8000)
    b.mark("rdma_read", 3000, 3500, reads={"staging": (0x5000, 4096)}, on="host")
    b.cpu_op("aten::copy_", 3100, 3400, rf_id=6)
    b.launch("peer_copy", 30, 3200, 3300, 4000)
    copy = "aten::copy_(Tensor(a!) self, Tensor src, bool non_blocking=False) -> Tensor(a!)"
    et = execution_trace([
        {"id": 10, "rf_id": 5, "name": "aten::copy_", "schema": copy,
         "inputs": [(tensor(1, 50), "Tensor(float)"), (tensor(2, 51), "Tensor(float)"), (False, "Bool")]},
        {"id": 11, "rf_id": 6, "name": "aten::copy_", "schema": copy,
         "inputs": [(tensor(3, 52), "Tensor(float)"), (tensor(1, 50), "Tensor(float)"), (True, "Bool")]},
    ])
    findings = check(b, tmp_path=tmp_path, et=et).findings
    assert [(f.rule, f.buffer) for f in findings] == [("host-consumer", "staging")]
