"""overlapscope/overlap.py on hand-built traces whose answers were worked out by hand, and a
property test of the whole-trace numbers against a per-nanosecond brute-force oracle."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from builders import KinetoBuilder
from overlapscope import commands
from overlapscope.overlap import (Analysis, ExposedRow, Overlap, RankRow, analyze, exposed_by_kernel, overlap_of,
                                  percent)
from overlapscope.pipeline import load
from overlapscope.trace.taxonomy import suggested_pattern

MAIN, OTHER_THREAD, OTHER_PROCESS = 1000, 2000, 3000


def scenario(tmp_path: Path, name: str = "a.json", rank: int = 0) -> Path:
    """One rank, times in ns (main process pid 1000; main thread tid 1000):

    ProfilerStep#1 [0,10000) and #2 [10000,20000) on the main thread; range "layer" [0,5000) on
    the main thread, range "bg" [250,350) on thread 2000.
    compute: gemm [0,4000) (launch 100), gemm [6000,7000) (launch 400), gemm [13000,13500) (launch 11000)
      K = 4000 + 1000 + 500 = 5500
    comm:  A [1000,3000)   launched at 200 by the main thread       (step 1, layer)  hidden 2000
           B [5000,8000)   launched at 300 by thread 2000           (step 1, bg)     hidden 1000
           C [12000,14000) launched at 1500 by process 3000         (no step)        hidden 500
           D [15000,16000) launched at 12000 by the main thread     (step 2)         hidden 0
      C = 8000, C ∩ K = 3500 → 43.75 %, exposed 4500.
    """
    b = KinetoBuilder(rank=rank, pid=MAIN, tid=MAIN)
    b.annotation("ProfilerStep#1", 0, 10_000)
    b.annotation("ProfilerStep#2", 10_000, 20_000)
    b.annotation("layer", 0, 5_000)
    b.annotation("bg", 250, 350, tid=OTHER_THREAD)
    b.kernel("ampere_bf16_s16816gemm_bf16_128x128", 7, 0, 4_000, launch_at=100)
    b.kernel("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 20, 1_000, 3_000,
             launch_at=200)
    b.kernel("ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 21, 5_000, 8_000,
             launch_at=300, tid=OTHER_THREAD)
    b.kernel("ampere_bf16_s16816gemm_bf16_128x128", 7, 6_000, 7_000, launch_at=400)
    b.pid = OTHER_PROCESS  # a second process's launch inside step 1's window
    b.kernel("ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 22, 12_000, 14_000,
             launch_at=1_500)
    b.pid = MAIN
    b.kernel("ampere_bf16_s16816gemm_bf16_128x128", 7, 13_000, 13_500, launch_at=11_000)
    b.kernel("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 20, 15_000, 16_000,
             launch_at=12_000)
    return b.write(tmp_path / name)


@pytest.fixture
def result(tmp_path) -> Analysis:
    return analyze(load([scenario(tmp_path)]), ["^layer$", "^bg$", "^nothing$"])


def test_percent_and_overlap_basics():
    assert percent(0, 0) is None and percent(0, 10) == 0.0 and percent(10, 10) == 100.0
    o = Overlap(comm_ns=8000, compute_ns=5500, overlap_ns=3500)
    assert (o.exposed_comm_ns, o.overlap_pct) == (4500, 43.75)
    assert Overlap(0, 100, 0).overlap_pct is None
    c = (np.array([0, 10], np.int64), np.array([5, 20], np.int64))
    k = (np.array([3], np.int64), np.array([12], np.int64))
    assert overlap_of(c, k) == Overlap(15, 9, 4)  # [3,5) + [10,12)


def test_whole_trace(result):
    (row,) = result.ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns, row.exposed_comm_ns) == (8000, 5500, 3500, 4500)
    assert row.overlap_pct == 43.75 and row.rank == 0 and row.device == 0


def test_regions_are_thread_bound(result):
    rows = {r.region: r for r in result.regions}
    # "layer" (main thread, [0,5000)) holds B's launch time (300) but B came from thread 2000: A only
    assert (rows["^layer$"].comm_ns, rows["^layer$"].overlap_ns, rows["^layer$"].overlap_pct) == (2000, 2000, 100.0)
    # "bg" on thread 2000 takes B
    assert (rows["^bg$"].comm_ns, rows["^bg$"].overlap_ns, rows["^bg$"].exposed_comm_ns) == (3000, 1000, 2000)
    assert rows["^bg$"].overlap_pct == pytest.approx(100 / 3)
    assert (rows["^nothing$"].ranges, rows["^nothing$"].comm_ns, rows["^nothing$"].overlap_pct) == (0, 0, None)
    assert rows["^layer$"].ranges == rows["^bg$"].ranges == 1


def test_steps_are_process_wide(result):
    rows = {s.region: s for s in result.steps}
    assert list(rows) == ["ProfilerStep#1", "ProfilerStep#2"]
    # step 1: A (main thread) and B (thread 2000 of the same process); not C (another process)
    assert (rows["ProfilerStep#1"].comm_ns, rows["ProfilerStep#1"].overlap_ns) == (5000, 3000)
    assert rows["ProfilerStep#1"].overlap_pct == 60.0
    # step 2: D only, fully exposed: 0 %, not n/a
    assert (rows["ProfilerStep#2"].comm_ns, rows["ProfilerStep#2"].overlap_pct) == (1000, 0.0)
    assert sum(s.comm_ns for s in result.steps) == 6000  # C (another process) is in no step


def test_steps_sort_by_number_not_text(tmp_path):
    b = KinetoBuilder(rank=0)
    for i, n in enumerate((10, 2, 9)):
        b.annotation(f"ProfilerStep#{n}", i * 1000, i * 1000 + 1000)
    b.kernel("ncclDevKernel_AllReduce", 20, 0, 100, launch_at=10)
    steps = analyze(load([b.write(tmp_path / "t.json")])).steps
    assert [s.region for s in steps] == ["ProfilerStep#2", "ProfilerStep#9", "ProfilerStep#10"]
    assert [s.comm_ns for s in steps] == [0, 0, 100]


def test_region_steps(result):
    got = [(r.step, r.region, r.comm_ns, r.overlap_ns, r.overlap_pct) for r in result.region_steps]
    assert got == [
        ("ProfilerStep#1", "^layer$", 2000, 2000, 100.0), ("ProfilerStep#2", "^layer$", 0, 0, None),
        ("ProfilerStep#1", "^bg$", 3000, 1000, pytest.approx(100 / 3)), ("ProfilerStep#2", "^bg$", 0, 0, None),
        ("ProfilerStep#1", "^nothing$", 0, 0, None), ("ProfilerStep#2", "^nothing$", 0, 0, None),
    ]
    assert analyze(load([scenario(Path(result.ranks[0].source).parent, "b.json")])).region_steps == []


FUSED = ("void tensorrt_llm::kernels::ar_fusion::allreduce_fusion_kernel_oneshot_lamport<__nv_bfloat16, "
         "(tensorrt_llm::kernels::ar_fusion::AllReduceFusionPattern)1, 8, true>(...)")
SYMM = ("void (anonymous namespace)::multimem_all_reduce_kernel<c10::BFloat16, 16>(c10::BFloat16*, unsigned long, "
        "unsigned int**, unsigned long, unsigned long)")


def test_families_and_fused_kernels(tmp_path):
    """nccl [0,1000) ∪ [500,1500) = 1500 (2 kernels); symmetric memory [2000,2400) = 400;
    fused all-reduce + norm [3000,5000) = 2000, neither comm nor compute; gemm [4000,6000).
    comm = 1900, compute = 2000 (the fused kernel would make it 3000), overlap 0."""
    b = KinetoBuilder(rank=0)
    b.kernel("ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 20, 0, 1_000, launch_at=0)
    b.kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 21, 500, 1_500,
             launch_at=1)
    b.kernel(SYMM, 22, 2_000, 2_400, launch_at=2)
    b.kernel(FUSED, 7, 3_000, 5_000, launch_at=3)
    b.kernel("sm90_xmma_gemm_bf16bf16_bf16f32", 8, 4_000, 6_000, launch_at=4)
    result = analyze(load([b.write(tmp_path / "t.json")]))
    (row,) = result.ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns) == (1900, 2000, 0)
    assert [(f.family, f.op_class, f.kernels, f.time_ns) for f in result.families] == [
        ("trtllm-allreduce-fusion", "fused", 1, 2000), ("nccl", "comm", 2, 1500), ("torch-symm-mem", "comm", 1, 400)]
    assert result.suspects == []  # the fused kernel is reported as fused, not as a suspect


CUSTOM = "my_custom_allreduce_kernel"


@pytest.fixture
def suspect_file(tmp_path) -> Path:
    """my_custom_allreduce_kernel [0,1000) and [2000,2500); gemm [500,3000)."""
    b = KinetoBuilder(rank=0)
    b.kernel(CUSTOM, 20, 0, 1_000, launch_at=0)
    b.kernel(CUSTOM, 20, 2_000, 2_500, launch_at=1)
    b.kernel("gemm", 7, 500, 3_000, launch_at=2)
    return b.write(tmp_path / "t.json")


def test_suspects_listed_with_their_comm_pattern(suspect_file):
    result = analyze(load([suspect_file]))
    (s,) = result.suspects
    assert (s.rank, s.kernel, s.kernels, s.time_ns) == (0, CUSTOM, 2, 1500)
    assert s.comm_pattern == suggested_pattern(CUSTOM)
    assert result.ranks[0].comm_ns == 0 and result.ranks[0].overlap_pct is None
    why = result.nothing_measured()
    assert why is not None and CUSTOM in why and f"--comm-pattern {s.comm_pattern!r}" in why
    assert "not applicable" in why
    # the pattern it suggests does count it: comm 1500, compute 2500, overlap [500,1000) + [2000,2500)
    counted = analyze(load([suspect_file], comm_patterns=[s.comm_pattern]))
    assert counted.suspects == [] and counted.nothing_measured() is None
    (row,) = counted.ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns) == (1500, 2500, 1000)
    assert [(f.family, f.kernels) for f in counted.families] == [("user pattern", 2)]


def test_nothing_measured_reasons(tmp_path):
    empty = KinetoBuilder(rank=0)
    empty.annotation("ProfilerStep#1", 0, 10)
    assert "no GPU kernels" in analyze(load([empty.write(tmp_path / "e.json")])).nothing_measured()
    compute = KinetoBuilder(rank=0)
    compute.kernel("gemm", 7, 0, 10, launch_at=0)
    assert analyze(load([compute.write(tmp_path / "c.json")])).nothing_measured() == (
        "no communication kernels in the trace: overlap is not applicable (null)")
    assert analyze(load([scenario(tmp_path)])).nothing_measured() is None


def test_exclude_kernel_leaves_it_out_of_compute(tmp_path, monkeypatch):
    """nccl [0,2000); spin_kernel [0,2000); gemm [1500,2500).
    With the spin kernel: K = [0,2500), overlap 2000 (100 %). Without: K = [1500,2500), overlap 500 (25 %)."""
    monkeypatch.chdir(tmp_path)  # no project configuration
    b = KinetoBuilder(rank=0)
    b.kernel("ncclDevKernel_AllReduce", 20, 0, 2_000, launch_at=0)
    b.kernel("spin_kernel", 7, 0, 2_000, launch_at=1)
    b.kernel("gemm", 8, 1_500, 2_500, launch_at=2)
    path = b.write(tmp_path / "t.json")
    (kept,) = commands.analyze([path], jobs=1, use_cache=False).analysis.ranks
    assert (kept.compute_ns, kept.overlap_ns, kept.overlap_pct) == (2500, 2000, 100.0)
    run = commands.analyze([path], jobs=1, use_cache=False, exclude_kernels=["^spin_kernel$"])
    (row,) = run.analysis.ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns, row.overlap_pct) == (2000, 1000, 500, 25.0)
    assert any("spin_kernel" in note for note in run.facts.notes)


def test_top_lists_the_most_exposed_instances(tmp_path):
    trace = load([scenario(tmp_path)])
    # exposed per instance: A 0, B 2000, C 1500, D 1000
    worst = analyze(trace, top=2).exposed
    assert [(e.kernel.split("(")[0], e.exposed_ns, e.comm_ns, e.step, e.range_path, e.stream) for e in worst] == [
        ("ncclDevKernel_AllGather_RING_LL", 2000, 3000, "ProfilerStep#1", "bg", 21),
        ("ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL", 1500, 2000, "", "", 22)]
    assert [e.exposed_ns for e in analyze(trace, top=10).exposed] == [2000, 1500, 1000, 0]
    assert analyze(trace, top=0).exposed == []
    paths = {p.path: (p.comm_ns, p.exposed_ns, p.instances) for p in analyze(trace).exposed_paths}
    assert paths == {"bg": (3000, 2000, 1), "layer": (2000, 0, 1)}
    kernels = {k.name.split("(")[0]: (k.count, k.total_ns, k.exposed_ns) for k in exposed_by_kernel(trace, 10)}
    assert kernels == {"ncclDevKernel_AllGather_RING_LL": (1, 3000, 2000),
                       "ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL": (1, 2000, 1500),
                       "ncclDevKernel_AllReduce_Sum_bf16_RING_LL": (2, 3000, 1000)}


def test_renumbered_joined_and_to_dict(tmp_path):
    one = analyze(load([scenario(tmp_path, "r0.json")]), ["^layer$"], top=3)
    two = analyze(load([scenario(tmp_path, "r1.json")]), ["^layer$"], top=3)
    assert one.renumbered(0) is one
    moved = two.renumbered(1)
    for name in ("ranks", "regions", "steps", "region_steps", "families", "exposed", "exposed_paths"):
        rows = getattr(moved, name)
        assert rows and all(r.rank == 1 for r in rows), name
        assert [dataclasses.replace(r, rank=0) for r in rows] == getattr(two, name)
    assert all(r.rank == 0 for r in two.ranks)  # the original is unchanged

    joined = Analysis.joined([moved, one])
    assert [r.rank for r in joined.ranks] == [0, 1]
    assert [(r.rank, r.region) for r in joined.steps] == [
        (0, "ProfilerStep#1"), (0, "ProfilerStep#2"), (1, "ProfilerStep#1"), (1, "ProfilerStep#2")]
    assert len(joined.exposed) == 3 and joined.top == 3  # the worst `top` over both ranks
    assert [e.exposed_ns for e in joined.exposed] == [2000, 2000, 1500]
    assert [e.rank for e in joined.exposed[:2]] == [0, 1]

    renamed = one.with_source(one.ranks[0].source, "given/name.json")
    assert renamed.ranks[0].source == "given/name.json" and renamed.steps == one.steps

    doc = joined.to_dict()
    assert list(doc) == ["ranks", "regions", "steps", "region_steps", "families", "suspects", "exposed",
                         "exposed_paths"]
    assert set(doc["ranks"][0]) == {f.name for f in dataclasses.fields(RankRow)}
    assert set(doc["exposed"][0]) == {f.name for f in dataclasses.fields(ExposedRow)}
    assert set(doc["regions"][0]) >= {"rank", "region", "comm_ns", "overlap_ns", "overlap_pct", "exposed_comm_ns"}
    assert doc["region_steps"][1]["overlap_pct"] is None  # ProfilerStep#2 of ^layer$: not applicable
    assert json.loads(json.dumps(doc)) == doc  # plain JSON values (no numpy scalars)


# --- property: whole-trace numbers against a per-nanosecond brute-force oracle ----------------------

KIND_NAMES = {
    "comm": "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
    "compute": "ampere_sgemm_128x64_nn",
    "fused": "allreduce_fusion_kernel_oneshot_lamport<float>",
    "memcpy": None,
}


def oracle(ops) -> list[tuple[int, int, int]]:
    """Per GPU that ran a kernel, in GPU order (rank i is the i-th such GPU of the file):
    (|C|, |K|, |C ∩ K|), counting nanoseconds one by one. Copies are memory, fused kernels neither."""
    out = []
    for device in sorted({d for kind, d, _, _, _ in ops if kind != "memcpy"}):
        comm, compute = set(), set()
        for kind, d, _, start, dur in ops:
            if d == device and kind in ("comm", "compute"):
                (comm if kind == "comm" else compute).update(range(start, start + dur))
        out.append((len(comm), len(compute), len(comm & compute)))
    return out or [(0, 0, 0)]  # copies only: still the file's one rank, with nothing measured


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(KIND_NAMES)), st.integers(0, 1), st.integers(0, 3),
                          st.integers(0, 400), st.integers(0, 120)), min_size=1, max_size=25))
def test_whole_trace_matches_a_brute_force_oracle(tmp_path_factory, ops):
    b = KinetoBuilder(rank=None)  # a lone file: rank 0, one rank per device
    for kind, device, stream, start, dur in ops:
        if kind == "memcpy":
            b.memcpy(stream, start, start + dur, launch_at=start, device=device)
        else:
            b.kernel(KIND_NAMES[kind], stream, start, start + dur, launch_at=start, device=device)
    trace = load([b.write(tmp_path_factory.mktemp("prop") / "t.json")])
    rows = analyze(trace).ranks
    expected = oracle(ops)
    assert [r.rank for r in rows] == list(range(len(expected)))
    for row, (c, k, both) in zip(rows, expected):
        assert (row.comm_ns, row.compute_ns, row.overlap_ns, row.exposed_comm_ns) == (c, k, both, c - both)
        assert row.overlap_pct == (None if c == 0 else pytest.approx(100 * both / c))


def test_rank_device_is_the_gpu_its_kernels_ran_on(tmp_path):
    b = KinetoBuilder(rank=0)
    b.kernel("ncclDevKernel_AllReduce", 20, 0, 1_000, launch_at=0, device=1)
    b.kernel("gemm", 7, 0, 500, launch_at=1, device=1)
    for i in range(3):  # copies recorded on another GPU (a peer's side of a transfer)
        b.memcpy(0, 2_000 + 10 * i, 2_005 + 10 * i, launch_at=2, device=0)
    (row,) = analyze(load([b.write(tmp_path / "t.json")])).ranks
    assert row.device == 1
