"""The same hand-built run written as Kineto, as an Nsight Systems export and as a rocpd database
gives the same numbers: per rank, per region and per profiler step.

The run: 2 ranks. nsys and rocpd number ranks by (process, GPU), Kineto by its distributedInfo, so
each rank is one process (pid 1000 + r) with its own GPU (device r) and one host thread: then all
three formats name the same ranks. Per rank, on the main thread:

    ProfilerStep#1  [1_000, 100_000]          host range (the profiler step)
    layer           [10_000, 30_000]          host range (the region)
      12_000  launch gemm           on stream 7   -> rank 0: [40_000, 70_000]   rank 1: [40_000, 60_000]
      20_000  launch NCCL all-reduce on stream 13 -> rank 0: [50_000, 90_000]   rank 1: [45_000, 85_000]
    35_000    launch NCCL all-reduce on stream 13 -> [92_000, 96_000]   (in the step, outside the region)
    100_500   launch NCCL all-reduce on stream 13 -> [101_000, 103_000] (after the step: whole rank only)

The same kernel names in all three, so classification cannot differ.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from builders import KinetoBuilder
from nsys_builder import NsysBuilder
from rocpd_builder import RocpdBuilder

from overlapscope.overlap import analyze
from overlapscope.pipeline import load

REGION = r"^layer$"
STEP = "ProfilerStep#1"
GEMM = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64"
NCCL = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
COMPUTE_STREAM, COMM_STREAM = 7, 13
STEP_SPAN, REGION_SPAN = (1_000, 100_000), (10_000, 30_000)
# (launch at, stream, name, (start, end) per rank)
LAUNCHES = [
    (12_000, COMPUTE_STREAM, GEMM, [(40_000, 70_000), (40_000, 60_000)]),
    (20_000, COMM_STREAM, NCCL, [(50_000, 90_000), (45_000, 85_000)]),
    (35_000, COMM_STREAM, NCCL, [(92_000, 96_000)] * 2),
    (100_500, COMM_STREAM, NCCL, [(101_000, 103_000)] * 2),
]

# By hand. Rank 0: compute [40k,70k] = 30k; comm 40k + 4k + 2k = 46k; overlap [50k,70k] = 20k.
# Rank 1: compute [40k,60k] = 20k; comm 46k; overlap [45k,60k] = 15k.
# Region: the first all-reduce only (40k). Step: the first two (44k).
RANKS = [  # rank, device, comm_ns, compute_ns, overlap_ns, exposed_comm_ns
    (0, 0, 46_000, 30_000, 20_000, 26_000),
    (1, 1, 46_000, 20_000, 15_000, 31_000),
]
REGIONS = [  # rank, region, comm_ns, overlap_ns, overlap_pct, exposed_comm_ns, ranges
    (0, REGION, 40_000, 20_000, 50.0, 20_000, 1),
    (1, REGION, 40_000, 15_000, 37.5, 25_000, 1),
]
STEPS = [
    (0, STEP, 44_000, 20_000, 20_000 / 44_000 * 100, 24_000, 1),
    (1, STEP, 44_000, 15_000, 15_000 / 44_000 * 100, 29_000, 1),
]


def pid_of(rank: int) -> int:
    return 1000 + rank


def kineto(tmp_path: Path) -> Path:
    for rank in (0, 1):
        b = KinetoBuilder(rank=rank, world_size=2, device=rank, pid=pid_of(rank), tid=pid_of(rank))
        b.annotation(STEP, *STEP_SPAN)
        b.annotation("layer", *REGION_SPAN)
        for at, stream, name, spans in LAUNCHES:
            b.kernel(name, stream, *spans[rank], launch_at=at)
        b.write(tmp_path / f"rank-{rank}.json")
    return tmp_path


def nsys(tmp_path: Path) -> Path:
    b = NsysBuilder(gpu_names={0: "NVIDIA H200", 1: "NVIDIA H200"})
    for rank in (0, 1):
        b.nvtx(STEP, *STEP_SPAN, pid=pid_of(rank))
        b.nvtx("layer", *REGION_SPAN, pid=pid_of(rank))
        for at, stream, name, spans in LAUNCHES:
            b.kernel(name, stream, *spans[rank], launch_at=at, pid=pid_of(rank), device=rank)
    return b.write(tmp_path / "run.sqlite")


def rocpd(tmp_path: Path) -> Path:
    b = RocpdBuilder(version=4)
    for rank in (0, 1):  # one profiled process per rank: two table sets (uuids) in one database
        run = b.run(pid_of(rank), gpus=(rank,))
        run.marker(STEP, *STEP_SPAN)
        run.marker("layer", *REGION_SPAN)
        for at, stream, name, spans in LAUNCHES:
            run.launch(name, stream, at, *spans[rank], device=rank)
    return b.write(tmp_path / "run_results.db")


@pytest.mark.parametrize("write", [kineto, nsys, rocpd])
def test_kineto_nsys_and_rocpd_give_the_same_numbers(write: Callable[[Path], Path], tmp_path: Path) -> None:
    trace = load([write(tmp_path)])
    result = analyze(trace, [REGION])
    assert [(r.rank, r.device, r.comm_ns, r.compute_ns, r.overlap_ns, r.exposed_comm_ns) for r in result.ranks] == RANKS
    assert [r.overlap_pct for r in result.ranks] == pytest.approx([20_000 / 46_000 * 100, 15_000 / 46_000 * 100])
    rows = [(r.rank, r.region, r.comm_ns, r.overlap_ns, r.overlap_pct, r.exposed_comm_ns, r.ranges)
            for r in result.regions]
    assert rows == REGIONS
    steps = [(r.rank, r.region, r.comm_ns, r.overlap_ns, r.overlap_pct, r.exposed_comm_ns, r.ranges)
             for r in result.steps]
    assert [s[:4] + s[5:] for s in steps] == [s[:4] + s[5:] for s in STEPS]
    assert [s[4] for s in steps] == pytest.approx([s[4] for s in STEPS])  # overlap_pct
