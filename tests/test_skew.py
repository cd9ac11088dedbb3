"""Collectives matched across ranks, waiting for a late peer named, and overlap without that waiting;
worked out by hand on hand-built 2-rank traces (times in ns)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders import KinetoBuilder
from overlapscope.cli import app
from overlapscope.pipeline import ScaleOptions, analyze_run
from overlapscope.renderers.json import dumps
from overlapscope.skew import collective_summary, exclude_waiting, find_waiting, skew_of
from overlapscope.pipeline import load
from test_parallel import NCCL, T0

REPO = Path(__file__).resolve().parents[1]
# a real 2-rank run in which one rank started its first collective late (benchmarks/capture_late_rank.py)
LATE_RANK_SAMPLE = Path(os.environ.get("OVERLAPSCOPE_LATE_RANK_TRACE", REPO / "sample_traces" / "late_rank"))
runner = CliRunner()


def collective(b: KinetoBuilder, start: int, end: int, seq: int | None, name: str = "allreduce",
               group: str = "0") -> None:
    args = {"Collective name": name, "Process Group Name": group, "In msg nelems": 1 << 20}
    if seq is not None:
        args["Seq"] = seq
    b.kernel(NCCL, 20, T0 + start, T0 + end, launch_at=T0 + start - 500, args=args)


def straggler_run(folder: Path, with_seq: bool = True) -> Path:
    """Rank 1 computes until 4.0 ms and joins all-reduce #0 then; rank 0 is done at 1.0 ms and its
    all-reduce #0 [1.0, 4.1) ms waits 3.0 ms of its 3.1 ms for rank 1. Both run `attn` [4.0, 4.08) ms
    under the real transfer. All-reduce #1: rank 1 is 20 µs late (under the 50 µs threshold).
    All-reduce #2: rank 1 is 100 µs late, a quarter of the kernel (not mostly waiting)."""
    folder.mkdir(exist_ok=True)
    for rank, compute_end in ((0, 1_000_000), (1, 4_000_000)):
        b = KinetoBuilder(rank=rank, world_size=2, device=rank)
        seq = (lambda n: n) if with_seq else (lambda n: None)
        b.kernel("gemm", 7, T0, T0 + compute_end, launch_at=T0 - 900)
        b.kernel("attn", 7, T0 + 4_000_000, T0 + 4_080_000, launch_at=T0 - 800)
        collective(b, 1_000_000 if rank == 0 else 4_000_000, 4_100_000, seq(0))
        collective(b, 5_000_000 + 20_000 * rank, 5_050_000, seq(1))
        collective(b, 6_000_000 + 100_000 * rank, 6_400_000, seq(2))
        b.write(folder / f"rank-{rank}.json")
    return folder


def test_the_kernel_that_waited_for_the_late_rank_is_named(tmp_path):
    skew = skew_of(load([straggler_run(tmp_path / "run")]))
    assert (skew.matched, skew.unmatched, skew.inconsistent) == (3, 0, 0)
    (row,) = skew.to_dict()["waiting"]
    assert row["rank"] == 0 and row["late_rank"] == 1 and row["seq"] == 0 and row["collective"] == "allreduce"
    assert (row["start_ns"], row["end_ns"], row["late_start_ns"]) == (T0 + 1_000_000, T0 + 4_100_000, T0 + 4_000_000)
    assert row["wait_ns"] == 3_000_000 and row["kernel"] == NCCL


def test_overlap_excluding_the_wait_by_hand(tmp_path):
    trace = load([straggler_run(tmp_path / "run")])
    skew = skew_of(trace)
    # rank 0: C = [1.0, 4.1) + [5.0, 5.05) + [6.0, 6.4) ms = 3.55 ms, K ∩ C = attn = 80 µs
    plain = {r["rank"]: r for r in analyze_run([tmp_path / "run"], options=ScaleOptions(jobs=1)).to_dict()["ranks"]}
    assert (plain[0]["comm_ns"], plain[0]["overlap_ns"]) == (3_550_000, 80_000)
    # excluding the wait, #0 is [4.0, 4.1) ms: C = 0.1 + 0.05 + 0.4 = 0.55 ms; rank 1 is unchanged
    excluded = {r.rank: r for r in skew.excluding_wait.ranks}
    assert (excluded[0].comm_ns, excluded[0].overlap_ns) == (550_000, 80_000)
    assert excluded[0].overlap_pct == pytest.approx(100 * 80 / 550)
    assert (excluded[1].comm_ns, excluded[1].overlap_ns) == (plain[1]["comm_ns"], plain[1]["overlap_ns"])


def test_without_seq_the_order_of_each_group_matches(tmp_path):
    with_seq = skew_of(load([straggler_run(tmp_path / "a")])).to_dict()
    without = skew_of(load([straggler_run(tmp_path / "b", with_seq=False)])).to_dict()
    for doc in (with_seq, without):
        for rows in doc["excluding_wait"].values():
            for row in rows:
                row.pop("source", None)
    assert (with_seq.pop("basis"), without.pop("basis")) == ("seq", "order")
    assert without == with_seq


def test_groups_point_to_point_unmatched_and_inconsistent(tmp_path):
    ranks = []
    for rank in (0, 1):
        b = KinetoBuilder(rank=rank, world_size=2, device=rank)
        collective(b, 0, 1_000_000, 0, group="tp")  # rank 1 starts 900 µs late... in group "tp"
        collective(b, 900_000 * rank, 1_000_000, 0, group="dp")  # ... and in group "dp" too
        collective(b, 2_000_000, 2_100_000, 1, name="send" if rank == 0 else "recv", group="dp")
        collective(b, 3_000_000, 3_100_000, 2, name="allreduce" if rank == 0 else "allgather", group="dp")
        if rank == 0:
            collective(b, 4_000_000, 4_100_000, 3, group="dp")  # rank 1's trace ended before this one
        ranks.append(b.write(tmp_path / f"rank-{rank}.json"))
    summary = collective_summary(load(ranks))
    assert not summary["collective"].isin(["send", "recv"]).any()
    skew = find_waiting(summary)
    assert (skew.matched, skew.unmatched, skew.inconsistent) == (2, 1, 1)
    assert skew.waiting[["rank", "process_group", "seq", "wait"]].values.tolist() == [[0, "dp", 0, 900_000]]


def test_nothing_to_match_leaves_the_trace_alone(tmp_path):
    b = KinetoBuilder(rank=0)
    b.kernel("gemm", 7, 0, 100, launch_at=0)
    trace = load([b.write(tmp_path / "rank-0.json")])
    skew = skew_of(trace)
    assert (skew.matched, len(skew.waiting)) == (0, 0)
    assert exclude_waiting(trace, skew.waiting) is trace
    assert skew.to_dict()["waiting"] == []


def test_the_parallel_path_gives_what_skew_of_gives(tmp_path):
    run = straggler_run(tmp_path / "run")
    expected = dumps(skew_of(load([run]), ["^x"]).to_dict())
    for options in (ScaleOptions(jobs=1, skew=True), ScaleOptions(jobs=2, skew=True),
                    ScaleOptions(jobs=2, skew=True, use_cache=True, cache_dir=tmp_path / "cache"),
                    ScaleOptions(jobs=1, skew=True, use_cache=True, cache_dir=tmp_path / "cache")):
        assert dumps(analyze_run([run], ["^x"], (), options).skew.to_dict()) == expected


def test_cli_skew(tmp_path):
    run = straggler_run(tmp_path / "run")
    doc = json.loads(runner.invoke(app, ["analyze", str(run), "--json", "--skew", "--no-cache", "-j", "1"]).stdout)
    assert [w["rank"] for w in doc["skew"]["waiting"]] == [0]
    assert "skew" not in json.loads(runner.invoke(app, ["analyze", str(run), "--json", "--no-cache"]).stdout)
    shown = runner.invoke(app, ["analyze", str(run), "--skew", "--no-cache", "-j", "1"])
    assert shown.exit_code == 0
    assert "rank 0: allreduce #0 (process group 0) waited 3.00 ms of 3.10 ms for rank 1" in shown.stdout
    assert "waiting excluded" in shown.stdout


def test_real_trace_where_one_rank_started_late():
    if not LATE_RANK_SAMPLE.is_dir():
        pytest.skip(f"no late-rank sample trace at {LATE_RANK_SAMPLE} (capture: benchmarks/capture_late_rank.py)")
    trace = load([LATE_RANK_SAMPLE])
    summary = collective_summary(trace)
    skew = find_waiting(summary)
    assert skew.matched > 0 and len(skew.waiting)
    longest = skew.waiting.iloc[0]
    group = summary[summary["process_group"] == longest["process_group"]]
    # the long first collective of the on-time rank is the one named, waiting most of its time for the other
    assert longest["seq"] == group["seq"].min()
    assert longest["late_rank"] != longest["rank"]
    assert 2 * longest["wait"] > longest["end"] - longest["start"]
    first_on_time = group[group["rank"] == longest["rank"]].sort_values("start").iloc[0]
    assert first_on_time["correlation"] == longest["correlation"]


def test_nsys_nccl_ranges_match_by_order(tmp_path):
    """Two processes in one export, each an NCCL all-reduce per step; process 2000 (rank 1) joins the
    first one 2 ms late. nsys names no communicator: all NCCL calls are one group, in order."""
    from nsys_builder import NsysBuilder

    b = NsysBuilder(gpu_names={0: "NVIDIA H200", 1: "NVIDIA H200"})
    for pid, device, late in ((1000, 0, 0), (2000, 1, 2_000_000)):
        b.domain(1, "NCCL", pid=pid)
        for step in range(2):
            at = step * 10_000_000
            b.nvtx("ncclAllReduce", at + 100, at + 900, pid=pid, domain=1, registered=True)
            start = at + 1_000 + (late if step == 0 else 0)
            b.kernel("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 20, start, at + 2_500_000, launch_at=at + 200,
                     pid=pid, device=device)
    trace = load([b.write(tmp_path / "run.sqlite")])
    skew = skew_of(trace)
    assert (skew.matched, skew.unmatched) == (2, 0)
    (row,) = skew.to_dict()["waiting"]
    assert (row["rank"], row["late_rank"], row["seq"], row["process_group"]) == (0, 1, 0, "")
    assert row["collective"] == "ncclAllReduce" and row["wait_ns"] == 2_000_000
