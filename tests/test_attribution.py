"""Exposed-communication attribution (overlapscope.attribution): every comm kernel instance with its
step, range path, hidden and exposed time.

(a) a hypothesis property test against a plain-Python per-nanosecond oracle on small random traces;
(b) hand-built Kineto traces with answers worked out by hand (nested paths, other threads' ranges,
    library ranges, process-wide steps, exclusion, overlapping instances);
(c) the V4 TBO comm-stream samples, against the README's third table and an independent measurement.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builders import KinetoBuilder
from overlapscope import intervals as iv
from overlapscope.attribution import INSTANCE_COLUMNS, JSON_INSTANCE_KEYS, attribute
from overlapscope.overlap import analyze
from overlapscope.trace.links import launch_points, launched_in_region
from overlapscope.pipeline import load
from overlapscope.trace.model import (FRAME_COLUMNS, GPU_OP_COLUMNS, HOST_CALL_COLUMNS, RANGE_COLUMNS, RankInfo,
                                      Trace, empty_frame, frame_from_columns)

REPO = Path(__file__).resolve().parents[1]
V4 = REPO / "sample_traces" / "deepseek_v4_tbo" / "comm-stream"
T0 = 1_712_195_495_505_583_123  # ns since the epoch, not a whole microsecond

# --------------------------------------------------------------------------------------------
# (a) property test against a brute-force oracle

# " > " inside a name must not split a path; the library names must never appear in one
RANGE_NAMES = ["a", "b", "c", "p > q", "nccl:all_reduce", "ncclAllReduce", "record_param_comms",
               "c10d::allreduce_", "ncclx"]
LIBRARY = {"nccl:all_reduce", "ncclAllReduce", "record_param_comms", "c10d::allreduce_"}
SOURCES = ["nvtx", "user_annotation", "user_annotation", "cpu_op", "gpu_user_annotation"]
PIDS, TIDS = (10, 11), (1, 2)

# small time domains, so that launches often fall exactly on range and step edges
op_st = st.tuples(st.integers(0, 1), st.integers(1, 3), st.integers(0, 80), st.integers(0, 30),
                  st.sampled_from(["comm", "comm", "compute", "compute", "memory"]),
                  st.booleans(), st.sampled_from(PIDS), st.sampled_from(TIDS), st.integers(0, 30), st.booleans())
range_st = st.tuples(st.integers(0, 1), st.sampled_from(PIDS), st.sampled_from(TIDS), st.integers(0, 30),
                     st.integers(0, 20), st.sampled_from(RANGE_NAMES), st.sampled_from(SOURCES))
# per (rank, pid): sorted cut points; consecutive pairs are steps (on a random thread of the process)
steps_st = st.lists(st.tuples(st.integers(0, 1), st.sampled_from(PIDS), st.sampled_from(TIDS),
                              st.lists(st.integers(0, 32), min_size=0, max_size=5, unique=True)),
                    max_size=4)


def build_trace(ops, ranges, steps) -> tuple[Trace, list[dict], list[dict]]:
    op_rows = [dict(rank=r, stream=s, start=a, end=a + d, op_class=c, launched=l, pid=p, tid=t, launch=lt,
                    exclude=x, correlation=100 + i)
               for i, (r, s, a, d, c, l, p, t, lt, x) in enumerate(ops)]
    range_rows = [dict(rank=r, pid=p, tid=t, start=a, end=a + d, name=n, source=src)
                  for (r, p, t, a, d, n, src) in ranges]
    seen = set()
    for rank, pid, tid, cuts in steps:
        if (rank, pid) in seen:  # one thread of steps per process: steps do not overlap
            continue
        seen.add((rank, pid))
        cuts = sorted(cuts)
        for k, (a, b) in enumerate(zip(cuts, cuts[1:])):
            range_rows.append(dict(rank=rank, pid=pid, tid=tid, start=a, end=b, name=f"ProfilerStep#{k + 1}",
                                   source="profiler_step"))
    n = len(op_rows)
    kind = ["memcpy" if o["op_class"] == "memory" else "kernel" for o in op_rows]
    names = [{"comm": "ncclDevKernel_AllReduce", "compute": "gemm", "memory": "Memcpy"}[o["op_class"]] for o in op_rows]
    gpu = frame_from_columns({"rank": [o["rank"] for o in op_rows], "device": [o["rank"] for o in op_rows],
                              "stream": [o["stream"] for o in op_rows], "kind": kind,
                              "start": [o["start"] for o in op_rows], "end": [o["end"] for o in op_rows],
                              "name": names, "correlation": [o["correlation"] for o in op_rows],
                              "op_class": [o["op_class"] for o in op_rows]}, GPU_OP_COLUMNS)
    calls = [o for o in op_rows if o["launched"]]
    host = frame_from_columns({"rank": [o["rank"] for o in calls], "pid": [o["pid"] for o in calls],
                               "tid": [o["tid"] for o in calls], "start": [o["launch"] for o in calls],
                               "end": [o["launch"] + 1 for o in calls], "name": ["cudaLaunchKernel"] * len(calls),
                               "correlation": [o["correlation"] for o in calls], "api": ["runtime"] * len(calls)},
                              HOST_CALL_COLUMNS)
    rng = frame_from_columns({c: [r[c] for r in range_rows] for c in ("rank", "pid", "tid", "start", "end", "name",
                                                                      "source")}, RANGE_COLUMNS)
    trace = Trace(ranks=[RankInfo(0, "gen"), RankInfo(1, "gen")], gpu_ops=gpu, host_calls=host,
                  syncs=empty_frame(FRAME_COLUMNS["syncs"]), ranges=rng,
                  collectives=empty_frame(FRAME_COLUMNS["collectives"]))
    assert n == len(gpu)
    return trace, op_rows, range_rows


def oracle(op_rows, range_rows) -> list[tuple]:
    """Per comm instance, by brute force: (rank, stream, start, end, hidden, step, path parts)."""
    out = []
    live = [o for o in op_rows if not o["exclude"]]
    for o in live:
        if o["op_class"] != "comm":
            continue
        covered = set()
        for k in live:
            if k["op_class"] == "compute" and k["rank"] == o["rank"]:
                covered.update(range(k["start"], k["end"]))
        hidden = sum(1 for t in range(o["start"], o["end"]) if t in covered)
        step, parts = "", ()
        if o["launched"]:
            t = o["launch"]
            steps = [r for r in range_rows if r["source"] == "profiler_step" and r["rank"] == o["rank"]
                     and r["pid"] == o["pid"] and r["start"] <= t < r["end"]]
            assert len(steps) <= 1
            step = steps[0]["name"] if steps else ""
            enclosing = [(r["start"], -r["end"], i, r["name"]) for i, r in enumerate(range_rows)
                         if r["source"] in ("nvtx", "user_annotation") and r["name"] not in LIBRARY
                         and (r["rank"], r["pid"], r["tid"]) == (o["rank"], o["pid"], o["tid"])
                         and r["start"] <= t < r["end"]]
            parts = tuple(name for *_, name in sorted(enclosing))
        out.append((o["rank"], o["stream"], o["start"], o["end"], hidden, step, parts))
    return sorted(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, max_size=25), st.lists(range_st, max_size=14), steps_st)
def test_every_instance_matches_a_brute_force_oracle(ops, ranges, steps):
    trace, op_rows, range_rows = build_trace(ops, ranges, steps)
    exclude = np.array([o["exclude"] for o in op_rows], dtype=bool)
    result = attribute(trace, exclude=exclude)
    df = result.instances
    assert tuple(df.columns) == INSTANCE_COLUMNS
    got = sorted(zip(df["rank"], df["stream"], df["start_ns"], df["end_ns"], df["hidden_ns"],
                     df["step"].astype(str), [result.components[p] for p in df["range_path"].astype(str)]))
    assert [tuple(int(x) if isinstance(x, (np.integer, int)) else x for x in g) for g in got] == oracle(op_rows, range_rows)
    assert (df["comm_ns"] == df["end_ns"] - df["start_ns"]).all()
    assert (df["exposed_ns"] == df["comm_ns"] - df["hidden_ns"]).all()
    assert ((df["hidden_ns"] >= 0) & (df["exposed_ns"] >= 0)).all()
    assert (df["range_path"].astype(str) == [" > ".join(result.components[p]) for p in df["range_path"].astype(str)]).all()

    # the tree: each node is the sum of the instances whose path starts with it; the root is everything
    tree = result.by_path()
    expected: dict[tuple, list[int]] = {}
    for row in df.itertuples(index=False):
        parts = result.components[str(row.range_path)]
        for d in range(len(parts) + 1):
            acc = expected.setdefault((int(row.rank), " > ".join(parts[:d]), d), [0, 0, 0])
            acc[0] += int(row.comm_ns)
            acc[1] += int(row.exposed_ns)
            acc[2] += 1
    got_tree = {(r.rank, r.path, r.depth): [r.comm_ns, r.exposed_ns, r.instances] for r in tree.itertuples(index=False)}
    assert got_tree == expected
    for agg in (result.by_step(), result.by_kernel()):
        assert agg.groupby("rank")[["comm_ns", "exposed_ns", "instances"]].sum().to_dict() == \
            df.assign(instances=1).groupby("rank")[["comm_ns", "exposed_ns", "instances"]].sum().to_dict()

    worst = result.worst(5)
    assert list(worst["exposed_ns"]) == sorted(df["exposed_ns"], reverse=True)[:5]
    json.dumps(result.to_dict(top=5))


# --------------------------------------------------------------------------------------------
# (b) hand-built traces, answers by hand


def build_paths() -> KinetoBuilder:
    """Main thread 1000, second thread 2000 of one process.

    Compute A [1000,5000) s7, B [3000,8000) s13, D [12000,12500) s7: K = [1000,8000) ∪ [12000,12500).
    Comm X [4000,10000) s20, launched at 300 on thread 1000 inside outer > mid > inner (and inside
    the library ranges record_param_comms > nccl:all_reduce, which are skipped; "foreign" on
    thread 2000 covers the launch's time but not its thread): hidden [4000,8000) = 4000, exposed 2000.
    Comm Y [9000,13000) s24, launched at 3000 by thread 2000 inside "foreign" only: hidden
    [12000,12500) = 500, exposed 3500. ProfilerStep#1 [0,5000) is on thread 1000: Y belongs to it.
    Comm Z [14000,14300) s20, launched at 6000 by thread 2000: no step, path "foreign".
    Comm W [15000,15100) s20, no launch event: step "" and path "". (Times are epoch ns: W's missing
    launch must not push the others' launch times through a float64, which moves 300 to 237.)
    """
    b = KinetoBuilder(rank=0)
    b.kernel("ampere_sgemm_128x64_nn", 7, T0 + 1000, T0 + 5000, launch_at=T0 + 100)
    b.kernel("void flash_fwd_kernel<...>", 13, T0 + 3000, T0 + 8000, launch_at=T0 + 110)
    b.kernel("triton_poi_fused_add_0", 7, T0 + 12000, T0 + 12500, launch_at=T0 + 120)
    ar = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
    b.kernel(ar, 20, T0 + 4000, T0 + 10000, launch_at=T0 + 300)
    b.kernel(ar, 24, T0 + 9000, T0 + 13000, launch_at=T0 + 3000, tid=2000)
    b.kernel(ar, 20, T0 + 14000, T0 + 14300, launch_at=T0 + 6000, tid=2000)
    b.kernel(ar, 20, T0 + 15000, T0 + 15100)
    b.annotation("ProfilerStep#1", T0 + 0, T0 + 5000)
    b.annotation("outer", T0 + 10, T0 + 9000)
    b.annotation("mid", T0 + 20, T0 + 2000)
    b.annotation("inner", T0 + 250, T0 + 1000)
    b.annotation("record_param_comms", T0 + 280, T0 + 900)
    b.annotation("nccl:all_reduce", T0 + 290, T0 + 800)
    b.annotation("sibling", T0 + 1000, T0 + 1500)  # after inner, before the launches it could hold
    b.annotation("foreign", T0 + 0, T0 + 7000, tid=2000)
    return b


@pytest.fixture
def paths_trace(tmp_path: Path) -> Trace:
    return load([build_paths().write(tmp_path / "trace.json.gz")])


def test_range_paths_steps_and_hidden_by_hand(paths_trace):
    df = attribute(paths_trace).instances
    rows = [(r.start_ns - T0, r.end_ns - T0, r.stream, r.step, r.range_path, r.comm_ns, r.hidden_ns, r.exposed_ns)
            for r in df.itertuples(index=False)]
    assert rows == [
        (4000, 10000, 20, "ProfilerStep#1", "outer > mid > inner", 6000, 4000, 2000),
        (9000, 13000, 24, "ProfilerStep#1", "foreign", 4000, 500, 3500),  # other thread, same process
        (14000, 14300, 20, "", "foreign", 300, 0, 300),
        (15000, 15100, 20, "", "", 100, 0, 100),
    ]


def test_instances_may_overlap_each_other_so_their_sum_exceeds_the_union(paths_trace):
    df = attribute(paths_trace).instances
    # X and Y share [9000,10000), exposed in both: per instance 2000 + 3500 + 300 + 100 = 5900;
    # the union C = [4000,13000) ∪ [14000,14300) ∪ [15000,15100) minus K is 4000 + 500 + 300 + 100 = 4900
    assert int(df["exposed_ns"].sum()) == 5900
    assert analyze(paths_trace).ranks[0].exposed_comm_ns == 4900


def test_tree_and_aggregates_by_hand(paths_trace):
    result = attribute(paths_trace)
    tree = {r.path: (r.depth, r.comm_ns, r.exposed_ns, r.instances, r.self_exposed_ns)
            for r in result.by_path().itertuples(index=False)}
    assert tree == {
        "": (0, 10400, 5900, 4, 100),
        "foreign": (1, 4300, 3800, 2, 3800),
        "outer": (1, 6000, 2000, 1, 0),
        "outer > mid": (2, 6000, 2000, 1, 0),
        "outer > mid > inner": (3, 6000, 2000, 1, 2000),
    }
    # depth-first, children by exposed time: foreign (3800) before outer (2000)
    assert list(result.by_path()["path"]) == ["", "foreign", "outer", "outer > mid", "outer > mid > inner"]
    steps = result.by_step()
    assert list(zip(steps["step"], steps["exposed_ns"], steps["instances"])) == [("", 400, 2),
                                                                                ("ProfilerStep#1", 5500, 2)]
    (kernel,) = result.by_kernel().itertuples(index=False)
    assert (kernel.family, kernel.comm_ns, kernel.exposed_ns, kernel.instances) == ("allreduce", 10400, 5900, 4)
    d = result.to_dict(top=2)
    assert json.loads(json.dumps(d)) == d
    assert [tuple(i) for i in d["instances"]] == [JSON_INSTANCE_KEYS] * 2
    assert [(i["range_path"], i["exposed_ns"]) for i in d["instances"]] == [("foreign", 3500),
                                                                          ("outer > mid > inner", 2000)]
    assert d["paths"][0] == {"rank": 0, "path": "", "depth": 0, "comm_ns": 10400, "exposed_ns": 5900, "instances": 4}


def test_exclude_drops_kernels_from_comm_and_compute(paths_trace):
    ops = paths_trace.gpu_ops
    names = ops["name"].astype(str)
    # drop B (flash) and the comm kernel that starts at 14000
    exclude = (names.str.startswith("void flash") | (ops["start"] == T0 + 14000)).to_numpy()
    df = attribute(paths_trace, exclude=exclude).instances
    assert len(df) == 3
    # X is now covered only by A up to 5000: [4000,5000)
    assert (int(df["hidden_ns"].iloc[0]), int(df["exposed_ns"].iloc[0])) == (1000, 5000)
    with pytest.raises(ValueError, match="exclude"):
        attribute(paths_trace, exclude=np.zeros(2, dtype=bool))


def test_no_communication_gives_empty_tables(tmp_path):
    b = KinetoBuilder(rank=0)
    b.kernel("gemm", 7, T0, T0 + 100, launch_at=T0)
    result = attribute(load([b.write(tmp_path / "t.json")]))
    assert len(result.instances) == 0 and len(result.by_path()) == 0
    assert result.to_dict() == {"instances": [], "paths": []}


# --------------------------------------------------------------------------------------------
# (c) the V4 TBO comm-stream samples (2 ranks x 6 profiler steps)

LAST_COMBINE = "tbo/block > tbo/l3/mb1/combine_outputs"
# the README's third table (scripts/sample_table.py): per rank-step, µs, of comm launched in tbo/block
README = {"torch": (911, 515), "nsys": (901, 492)}


@pytest.fixture(scope="module", params=["torch", "nsys"])
def v4(request):
    trace = load([V4 / request.param])
    return request.param, trace, attribute(trace)


def test_v4_every_comm_instance_is_attributed(v4):
    _, trace, result = v4
    df = result.instances
    assert len(df) == int((trace.gpu_ops["op_class"] == "comm").sum()) == 228
    # 19 per rank-step: the step's alignment all-reduce outside the block, and 18 in it
    assert set(df.groupby(["rank", "step"], observed=True).size()) == {19}
    assert set(df["step"].astype(str)) == {f"ProfilerStep#{i}" for i in range(1, 7)}
    block = df["range_path"].astype(str).str.startswith("tbo/block > ")
    assert set(df.loc[~block, "range_path"].astype(str)) == {"step_align"}
    assert set(df[block].groupby(["rank", "step"], observed=True).size()) == {18}
    # no library range and no buffer address in any path
    assert not df["range_path"].astype(str).str.contains("nccl|0x", case=False).any()


def test_v4_top_exposed_instance_of_each_rank_step_is_the_last_combine(v4):
    profiler, trace, result = v4
    df = result.instances
    block = df[df["range_path"].astype(str).str.startswith("tbo/block > ")]
    for (rank, step), group in block.groupby(["rank", "step"], observed=True):
        top = group.sort_values("exposed_ns", ascending=False).iloc[0]
        assert top["range_path"] == LAST_COMBINE, (rank, step)
        assert top["start_ns"] == group["start_ns"].max()  # the block's last collective
        assert "AllReduce_Sum_bf16" in top["kernel"]
        assert top["hidden_ns"] == 0  # no compute after it to hide under
        # the runner-up is far smaller: the other 17 only run on past the compute beside them
        assert top["exposed_ns"] > 3 * group["exposed_ns"].nlargest(2).iloc[1]
    # over the whole step only the alignment all-reduce ahead of the block can beat it
    for _, group in df.groupby(["rank", "step"], observed=True):
        assert group.sort_values("exposed_ns").iloc[-1]["range_path"] in (LAST_COMBINE, "step_align")

    # the README's numbers: per rank-step, the block's exposed comm and the part of it in the last collective
    per_step = block.groupby(["rank", "step"], observed=True)
    total_us, last_us = README[profiler]
    assert round(per_step["exposed_ns"].sum().mean() / 1e3) == total_us
    last = block[block["range_path"] == LAST_COMBINE]
    assert len(last) == 12 and round(last["exposed_ns"].mean() / 1e3) == last_us


def test_v4_exposed_matches_an_independent_measurement(v4):
    """Measured without attribution: the step windows (by launch time, process-wide), the region
    mask of overlap.launched_in_region and interval differences against the rank's compute union."""
    _, trace, result = v4
    ops, ranges = trace.gpu_ops, trace.ranges
    launch = launch_points(trace)
    comm = (ops["op_class"] == "comm").to_numpy() & launched_in_region(trace, r"^tbo/block$", launch)
    is_compute = (ops["op_class"] == "compute").to_numpy()
    start, end = ops["start"].to_numpy(), ops["end"].to_numpy()
    got = result.instances.set_index(["rank", "start_ns", "stream"])
    for rank in (0, 1):
        mine = (ops["rank"] == rank).to_numpy()
        compute = iv.union(start[mine & is_compute], end[mine & is_compute])
        steps = ranges[(ranges["rank"] == rank).to_numpy() & (ranges["source"] == "profiler_step").to_numpy()]
        for step in steps.itertuples(index=False):
            in_step = np.flatnonzero(mine & comm & (launch.time >= step.start) & (launch.time < step.end))
            last = in_step[np.argmax(start[in_step])]
            exposed = iv.measure(iv.difference((start[[last]], end[[last]]), compute))
            row = got.loc[(rank, start[last], ops["stream"].iloc[last])]
            assert (row["step"], row["range_path"], row["exposed_ns"]) == (step.name, LAST_COMBINE, exposed)
    # comm in the block never overlaps itself (one stream), so the per-instance sums are the region's
    block = result.instances[result.instances["range_path"].astype(str).str.startswith("tbo/block > ")]
    for row in analyze(trace, [r"^tbo/block$"]).regions:
        mine = block[block["rank"] == row.rank]
        assert (int(mine["comm_ns"].sum()), int(mine["exposed_ns"].sum())) == (row.comm_ns, row.exposed_comm_ns)


def test_v4_tree_puts_the_last_combine_first(v4):
    _, _, result = v4
    tree = result.by_path()
    for rank in (0, 1):
        nodes = tree[tree["rank"] == rank]
        root, block, worst = nodes.iloc[0], nodes.iloc[1], nodes.iloc[2]
        assert (root["path"], block["path"], worst["path"]) == ("", "tbo/block", LAST_COMBINE)
        assert root["instances"] == 114 and block["instances"] == 108 and worst["instances"] == 6
        assert worst["hidden_ns"] == 0 and worst["exposed_ns"] == worst["comm_ns"]
        children = nodes[(nodes["depth"] == 2) & nodes["path"].str.startswith("tbo/block > ")]
        assert len(children) == 16  # 4 layers x 2 micro-batches x (dp_allgather, combine_outputs)
        assert block["exposed_ns"] == children["exposed_ns"].sum()
        # dp_allgather nodes hold their access mark, shown by label only
        marks = nodes[nodes["depth"] == 3]
        assert set(marks["name"]) == {"osacc:dp_allgather"} and len(marks) == 8
