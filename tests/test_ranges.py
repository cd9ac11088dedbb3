"""`list_ranges`: the host range names a user can pass to --region, with the communication they
launched. Hand-built traces with answers worked out by hand, then real traces checked against
`analyze` itself (the same region rule, computed another way)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from builders import KinetoBuilder
from corpus import corpus_path
from overlapscope.overlap import analyze
from overlapscope.pipeline import load
from overlapscope.ranges import list_ranges, suggested_regex

REPO = Path(__file__).resolve().parents[1]
T0 = 1_712_195_495_505_583_123  # ns since the epoch, not a whole microsecond
NCCL = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
MAIN, OTHER = 1000, 2000  # host threads


def build() -> KinetoBuilder:
    """Thread MAIN:  outer [0,10000) > mid [1000,8000) > inner [2000,4000), and a zero-length
    "blip" at 2000 (opens with inner, inside it); outer again [20000,21000) (empty); inner again at
    top level [30000,31000).  Thread OTHER: other_thread [0,4000).  ProfilerStep#1 [0,15000) on MAIN.

    Comm kernels (GPU time; launch instant, thread):
      X [5000,9000)  launched at 3000 on MAIN  -> inner, mid, outer (and the step)
      Y [8000,12000) launched at 9000 on MAIN  -> outer only (and the step)
      Z [13000,14000) launched at 10000 on MAIN -> nothing: outer ends at 10000 (half-open); step
      W [14000,14500) launched at 5000 on OTHER -> not other_thread (ended at 4000); the step, which
                                                   is a window of the whole process
    A compute kernel launched at 2500 in inner counts nowhere.
    outer: ops X, Y; union [5000,12000) = 7000 ns; sum of durations 8000 ns.
    mid, inner: op X; 4000 ns.  Step: X, Y, Z, W: union [5000,12000) + [13000,14500) = 8500 ns."""
    b = KinetoBuilder(rank=0)
    b.annotation("outer", T0 + 0, T0 + 10000)
    b.annotation("mid", T0 + 1000, T0 + 8000)
    b.annotation("inner", T0 + 2000, T0 + 4000)
    b.annotation("blip", T0 + 2000, T0 + 2000)
    b.annotation("outer", T0 + 20000, T0 + 21000)
    b.annotation("inner", T0 + 30000, T0 + 31000)
    b.annotation("other_thread", T0 + 0, T0 + 4000, tid=OTHER)
    b.annotation("ProfilerStep#1", T0 + 0, T0 + 15000)
    b.annotation("aten::mm", T0 + 2400, T0 + 2600, cat="cpu_op")
    b.kernel(NCCL, 20, T0 + 5000, T0 + 9000, launch_at=T0 + 3000)  # X
    b.kernel(NCCL, 20, T0 + 8000, T0 + 12000, launch_at=T0 + 9000)  # Y
    b.kernel(NCCL, 20, T0 + 13000, T0 + 14000, launch_at=T0 + 10000)  # Z
    b.kernel(NCCL, 24, T0 + 14000, T0 + 14500, launch_at=T0 + 5000, tid=OTHER)  # W
    b.kernel("ampere_sgemm_128x64_nn", 7, T0 + 3000, T0 + 6000, launch_at=T0 + 2500)
    return b


@pytest.fixture
def table(tmp_path):
    return list_ranges(load([build().write(tmp_path / "trace.json.gz")]))


def test_nesting_depth_counts_and_host_time(table):
    rows = {r.name: r for r in table.ranges}
    assert set(rows) == {"outer", "mid", "inner", "blip", "other_thread"}  # no cpu_op, no step
    got = {n: (r.count, r.min_depth, r.max_depth, r.host_ns) for n, r in rows.items()}
    assert got == {"outer": (2, 0, 0, 11000), "mid": (1, 1, 1, 7000), "inner": (2, 0, 2, 3000),
                   "blip": (1, 3, 3, 0), "other_thread": (1, 0, 0, 4000)}
    assert all(r.ranks == 1 and r.source == "user_annotation" for r in rows.values())


def test_comm_launched_inside_counts_for_every_enclosing_name(table):
    rows = {r.name: r for r in table.ranges}
    got = {n: (r.comm_ops, r.comm_ns, r.comm_sum_ns) for n, r in rows.items()}
    assert got == {"outer": (2, 7000, 8000), "mid": (1, 4000, 4000), "inner": (1, 4000, 4000),
                   "blip": (0, 0, 0), "other_thread": (0, 0, 0)}
    assert rows["outer"].comm_ns_by_rank == {0: 7000}


def test_order_comm_first_then_count(table):
    assert [r.name for r in table.ranges] == ["outer", "inner", "mid", "blip", "other_thread"]


def test_steps_are_listed_apart_and_are_process_wide(table):
    (step,) = table.steps
    assert (step.name, step.source, step.count, step.comm_ops, step.comm_ns, step.comm_sum_ns) == \
        ("ProfilerStep#1", "profiler_step", 1, 4, 8500, 9500)


def test_cpu_ops_only_on_request(tmp_path):
    trace = load([build().write(tmp_path / "trace.json.gz")])
    assert "aten::mm" not in {r.name for r in list_ranges(trace).ranges}
    rows = {r.name: r for r in list_ranges(trace, include_cpu_ops=True).ranges}
    # aten::mm [2400,2600) sits inside inner: depth 3 among the listed ranges; launched nothing
    assert (rows["aten::mm"].source, rows["aten::mm"].min_depth, rows["aten::mm"].comm_ops) == ("cpu_op", 3, 0)


def test_names_pool_over_ranks(tmp_path):
    files = []
    for rank in (0, 1):
        b = build()
        b.rank = rank
        files.append(b.write(tmp_path / f"rank-{rank}.json.gz"))
    rows = {r.name: r for r in list_ranges(load(files)).ranges}
    assert (rows["outer"].count, rows["outer"].ranks, rows["outer"].comm_ops, rows["outer"].comm_ns) == (4, 2, 4, 14000)
    assert rows["outer"].comm_ns_by_rank == {0: 7000, 1: 7000}


def test_a_trace_without_ranges_or_comm(tmp_path):
    b = KinetoBuilder(rank=0)
    b.kernel("ampere_sgemm_128x64_nn", 7, T0, T0 + 100, launch_at=T0 - 50)
    table = list_ranges(load([b.write(tmp_path / "t.json.gz")]))
    assert table.to_dict() == {"ranges": [], "steps": []}


def test_to_dict_and_suggested_regex(table):
    d = table.to_dict()
    assert list(d["ranges"][0]) == ["name", "source", "count", "ranks", "min_depth", "max_depth", "host_ns",
                                    "comm_ops", "comm_ns", "comm_sum_ns"]
    assert d["ranges"][0]["name"] == "outer"
    regex = suggested_regex("tbo/l0/mb0 (x)[1]+")
    assert regex == r"^tbo/l0/mb0\ \(x\)\[1\]\+$"
    assert re.search(regex, "tbo/l0/mb0 (x)[1]+") and not re.search(regex, "tbo/l0/mb0 (x)[1]+ more")


# ---- real traces: every name's comm equals what analyze reports for its suggested regex ----------


def agrees_with_analyze(trace, include_cpu_ops: bool = False) -> list:
    table = list_ranges(trace, include_cpu_ops=include_cpu_ops)
    regexes = [suggested_regex(r.name) for r in table.ranges]
    per_region: dict[str, dict[int, int]] = {}
    for row in analyze(trace, regexes).regions:
        if row.comm_ns:
            per_region.setdefault(row.region, {})[row.rank] = row.comm_ns
    for r in table.ranges:
        assert r.comm_ns_by_rank == per_region.get(suggested_regex(r.name), {}), r.name
        assert r.comm_ns == sum(r.comm_ns_by_rank.values())
    return table.ranges


@pytest.mark.parametrize("profiler", ["nsys", "torch"])
def test_sample_tbo_block_launches_the_comm_analyze_reports(profiler):
    trace = load([REPO / "sample_traces/deepseek_v4_tbo/comm-stream" / profiler])
    rows = {r.name: r for r in agrees_with_analyze(trace)}
    block = rows["tbo/block"]
    per_rank = {r.rank: r.comm_ns for r in analyze(trace, ["^tbo/block$"]).regions}
    assert block.comm_ops > 0 and block.comm_ns_by_rank == per_rank and block.comm_ns == sum(per_rank.values())
    assert (block.count, block.ranks, block.min_depth, block.max_depth) == (12, 2, 0, 0)
    # the stage ranges nest one level inside the block
    assert rows["tbo/l0/mb0/dp_allgather"].min_depth == 1


def test_corpus_dlrm_rank(tmp_path):
    path = next(corpus_path("wild", "param-dlrm").glob("worker0_*.json.gz"))
    trace = load([path])
    rows = {r.name: r for r in agrees_with_analyze(trace)}
    agrees_with_analyze(trace, include_cpu_ops=True)
    # five all-to-alls, each under its own nccl:all_to_all range (corpus README: SendRecv kernels)
    assert (rows["nccl:all_to_all"].count, rows["nccl:all_to_all"].comm_ops) == (5, 5)
    # the one profiler step holds all 8 NCCL kernels of the rank, whichever thread launched them
    (step,) = list_ranges(trace).steps
    n_comm = int((trace.gpu_ops["op_class"] == "comm").sum())
    assert n_comm == 8 and step.comm_ops == n_comm
