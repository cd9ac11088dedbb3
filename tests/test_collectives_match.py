"""Collectives matched across ranks when the traces carry no collective metadata (PyTorch 2.1-era
Kineto: no "Collective name", no "Seq"): the NCCL kernels' type from their names, the stream as
the group, the order the stream ran them. Hand-built 2-rank traces (times in ns) and the 8-rank DLRM
run of the corpus, counted independently with plain json."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders import KinetoBuilder
from corpus import corpus_files
from overlapscope.cli import app
from overlapscope.collectives import KERNEL_ORDER, kernel_type
from overlapscope.pipeline import ScaleOptions, analyze_run, load
from overlapscope.races import check_races
from overlapscope.skew import collective_summary, skew_of
from test_parallel import T0
from test_skew import straggler_run

ALL_REDUCE = "ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)"
ALL_GATHER = "ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
SEND_RECV = "ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t(ncclDevComm*, unsigned long, ncclWork*)"
DLRM = corpus_files("wild/param-dlrm", "worker*_step_12.*.pt.trace.json.gz")
runner = CliRunner()


def nccl(b: KinetoBuilder, name: str, start: int, end: int, stream: int = 20) -> None:
    """An NCCL kernel the way PyTorch 2.1 traced it: stream and correlation, no collective args."""
    b.kernel(name, stream, T0 + start, T0 + end, launch_at=T0 + start - 500)


def late_rank_run(folder: Path) -> Path:
    """Rank 1 computes until 4.0 ms; its all-reduce #0 starts then. Rank 0's all-reduce #0 runs
    [1.0, 4.1) ms: 3.0 ms of its 3.1 ms waiting for rank 1. A send/recv (rank 1 again 2 ms late)
    sits between the all-reduces: point-to-point, not matched, and not counted in the order.
    All-reduce #1 [5.0, 5.05) ms: rank 1 is 20 µs late, under the 50 µs threshold."""
    folder.mkdir(exist_ok=True)
    for rank, compute_end in ((0, 1_000_000), (1, 4_000_000)):
        b = KinetoBuilder(rank=rank, world_size=2, device=rank)
        b.kernel("gemm", 7, T0, T0 + compute_end, launch_at=T0 - 900)
        nccl(b, ALL_REDUCE, 1_000_000 if rank == 0 else 4_000_000, 4_100_000)
        nccl(b, SEND_RECV, 4_200_000 + 2_000_000 * rank, 6_300_000)
        nccl(b, ALL_REDUCE, 6_500_000 + 20_000 * rank, 6_550_000)
        b.write(folder / f"rank-{rank}.json")
    return folder


@pytest.mark.parametrize("name, kind", [
    (ALL_REDUCE, "AllReduce"), (ALL_GATHER, "AllGather"), (SEND_RECV, "SendRecv"),
    ("ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)", "SendRecv"),
    ("ncclDevKernel_ReduceScatter_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "ReduceScatter"),
    ("ncclDevKernel_Reduce_Sum_f32_RING_LL(x)", "Reduce"), ("ncclKernel_Broadcast_RING_LL_Sum_int8_t(x)", "Broadcast"),
    ("ncclAllReduceRingLLKernel_sum_f32(ncclColl)", "AllReduce"),  # NCCL <= 2.7
    ("ncclDevKernel_Generic_4(ncclDevKernelArgsStorage<4096ul>)", ""),  # RCCL: the name says no type
    ("gemm", ""),
])
def test_the_type_comes_from_the_kernel_name(name, kind):
    assert kernel_type(name) == kind


def test_without_metadata_kernel_order_finds_the_late_rank(tmp_path):
    trace = load([late_rank_run(tmp_path / "run")])
    assert len(trace.collectives) == 0  # nothing but the kernels themselves
    summary = collective_summary(trace)
    assert summary["collective"].tolist() == ["AllReduce"] * 4  # the send/recv is left out
    assert summary["process_group"].unique().tolist() == ["stream 20"]
    skew = skew_of(trace)
    assert (skew.matched, skew.unmatched, skew.inconsistent) == (2, 0, 0)
    assert (skew.basis, skew.note) == (KERNEL_ORDER, "")
    doc = skew.to_dict()
    assert (doc["basis"], doc["note"]) == (KERNEL_ORDER, "")
    (row,) = doc["waiting"]
    assert (row["rank"], row["late_rank"], row["seq"], row["collective"], row["process_group"]) == (
        0, 1, 0, "AllReduce", "stream 20")
    # [1.0, 4.1) ms on rank 0, rank 1 starts at 4.0 ms: 3.0 ms of waiting
    assert (row["start_ns"], row["end_ns"], row["late_start_ns"]) == (T0 + 1_000_000, T0 + 4_100_000, T0 + 4_000_000)
    assert row["wait_ns"] == 3_000_000 and row["kernel"] == ALL_REDUCE
    # the overlap without the wait: rank 0's comm was 3.1 + 2.1 + 0.05 ms, #0 trimmed to its last 0.1 ms
    excluded = {r.rank: r for r in skew.excluding_wait.ranks}
    assert excluded[0].comm_ns == 100_000 + 2_100_000 + 50_000


def test_the_basis_reaches_the_parallel_path_and_the_json(tmp_path):
    run = late_rank_run(tmp_path / "run")
    for jobs in (1, 2):
        skew = analyze_run([run], options=ScaleOptions(jobs=jobs, skew=True)).skew
        assert (skew.matched, skew.basis, len(skew.waiting)) == (2, KERNEL_ORDER, 1)
    out = runner.invoke(app, ["analyze", str(run), "--json", "--skew", "--no-cache", "-j", "1"])
    doc = json.loads(out.stdout)["skew"]
    assert (doc["basis"], doc["note"], doc["collectives_matched"]) == (KERNEL_ORDER, "", 2)


def test_with_metadata_the_basis_is_seq_and_nothing_else_changes(tmp_path):
    skew = skew_of(load([straggler_run(tmp_path / "run")]))
    assert (skew.basis, skew.note, skew.matched) == ("seq", "", 3)
    assert not [n for n in check_races(load([straggler_run(tmp_path / "run")])).notes if n.startswith("collective order:")]


def ranks_running(folder: Path, orders: list[list[tuple[str, int]]]) -> list[Path]:
    """One rank per list of (kernel name, stream), each kernel 100 µs, 1 ms apart."""
    folder.mkdir(exist_ok=True)
    paths = []
    for rank, order in enumerate(orders):
        b = KinetoBuilder(rank=rank, world_size=len(orders), device=rank)
        for i, (name, stream) in enumerate(order):
            nccl(b, name, 1_000_000 * (i + 1), 1_000_000 * (i + 1) + 100_000, stream=stream)
        paths.append(b.write(folder / f"rank-{rank}.json"))
    return paths


def test_ranks_that_disagree_on_the_order_are_reported_not_matched(tmp_path):
    paths = ranks_running(tmp_path / "run", [[(ALL_REDUCE, 20), (ALL_GATHER, 20)],
                                             [(ALL_GATHER, 20), (ALL_REDUCE, 20)]])
    skew = skew_of(load(paths))
    assert (skew.matched, skew.unmatched, skew.inconsistent, len(skew.waiting)) == (0, 0, 2, 0)
    assert skew.basis == KERNEL_ORDER
    assert skew.note.startswith("no collective could be matched across ranks: ")
    assert "2 where the ranks disagree on the collective" in skew.note
    report = check_races(load(paths))
    (finding,) = report.findings
    assert finding.rule == "collective-order" and finding.rank == 1 and finding.buffer == "process group stream 20"
    assert "`AllReduce`" in finding.hint and "`AllGather`" in finding.hint
    assert "compared by kernel order on the stream" in finding.hint
    assert finding.first.name.startswith("AllReduce (NCCL kernel ncclKernel_AllReduce")
    assert any(f"basis: {KERNEL_ORDER}" in n for n in report.notes)


def test_nothing_matched_is_said_plainly(tmp_path):
    # only point-to-point on both ranks
    p2p = ranks_running(tmp_path / "p2p", [[(SEND_RECV, 20)], [(SEND_RECV, 20)]])
    skew = skew_of(load(p2p))
    assert (skew.matched, skew.basis) == (0, "")
    assert skew.note.startswith("no collective could be matched across ranks: no rank has collectives")
    notes = check_races(load(p2p)).notes
    assert "collective order: no collective could be matched across ranks: their NCCL kernels are point-to-point " \
           "only (send/recv), which is not compared" in notes
    # the two ranks ran their all-reduces on different streams: nothing pairs up
    apart = ranks_running(tmp_path / "apart", [[(ALL_REDUCE, 20)], [(ALL_REDUCE, 24)]])
    skew = skew_of(load(apart))
    assert (skew.matched, skew.unmatched) == (0, 2)
    assert skew.note == ("no collective could be matched across ranks: 2 collective(s) seen on one rank only; "
                         "no collective metadata: NCCL kernels were paired by stream and kernel order")
    assert any(n.startswith("collective order: no collective could be matched across ranks: no stream's")
               for n in check_races(load(apart)).notes)
    # one rank only
    (one,) = ranks_running(tmp_path / "one", [[(ALL_REDUCE, 20)]])
    assert skew_of(load([one])).note == ("no collective could be matched across ranks: only rank 0 has collectives "
                                         "(the other ranks' traces are missing or hold none)")


def test_ranks_with_and_without_metadata_do_not_pair(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    with_meta = KinetoBuilder(rank=0, world_size=2, device=0)
    with_meta.kernel(ALL_REDUCE, 20, T0 + 1000, T0 + 2000, launch_at=T0,
                     args={"Collective name": "allreduce", "Process Group Name": "0", "Seq": 0})
    without = KinetoBuilder(rank=1, world_size=2, device=1)
    nccl(without, ALL_REDUCE, 1000, 2000)
    paths = [with_meta.write(folder / "rank-0.json"), without.write(folder / "rank-1.json")]
    skew = skew_of(load(paths))
    assert (skew.matched, skew.unmatched, skew.basis) == (0, 2, f"seq + {KERNEL_ORDER}")
    assert "rank(s) 0 have collective metadata and rank(s) 1 do not" in skew.note


# ---- the 8-rank DLRM run of the corpus (PyTorch 2.1 era, V100, NCCL) ----------------------------

def _all_reduces(path: Path) -> list[tuple[int, int]]:
    """(start, end) in ns of the file's AllReduce kernels, in the order they ran: plain json."""
    with gzip.open(path, "rt") as fh:
        events = json.load(fh)["traceEvents"]
    kernels = sorted((e for e in events if e.get("cat") == "kernel" and e["name"].startswith("ncclKernel_AllReduce")),
                     key=lambda e: e["ts"])
    return [(round(e["ts"] * 1000), round((e["ts"] + e["dur"]) * 1000)) for e in kernels]


@pytest.mark.skipif(not DLRM, reason="corpus missing: ../shared/corpus/wild/param-dlrm")
def test_dlrm_run_matches_by_kernel_order():
    assert len(DLRM) == 8
    per_rank = {int(p.name[len("worker")]): _all_reduces(p) for p in DLRM}
    counts = {len(v) for v in per_rank.values()}
    assert counts == {3}  # three all-reduces on every rank
    trace = load(DLRM)
    assert len(trace.collectives) == 0  # no metadata to use
    skew = skew_of(trace)
    assert (skew.matched, skew.unmatched, skew.inconsistent) == (3, 0, 0)
    assert skew.basis == KERNEL_ORDER and skew.note == ""
    # independently: the latest start of each all-reduce, and who waited more than 50 µs for it, most of the kernel
    expected = []
    for seq in range(3):
        late_rank = max(per_rank, key=lambda r: (per_rank[r][seq][0], -r))
        late = per_rank[late_rank][seq][0]
        for rank, spans in per_rank.items():
            start, end = spans[seq]
            wait = max(0, min(late - start, end - start))
            if late - start > 50_000 and 2 * wait > end - start:
                expected.append((rank, seq, wait, late_rank))
    got = sorted(zip(*(skew.waiting[c].tolist() for c in ("rank", "seq", "wait", "late_rank"))))
    assert got == sorted(expected) and len(got) == 17
    assert set(skew.waiting["process_group"]) == {"stream 84"}
    # the biggest: rank 0's third all-reduce waited 885 µs of 952 µs for rank 4
    top = skew.waiting.iloc[0]
    assert (top["rank"], top["seq"], top["wait"], top["late_rank"]) == (0, 2, 885_000, 4)


@pytest.mark.skipif(not DLRM, reason="corpus missing: ../shared/corpus/wild/param-dlrm")
def test_dlrm_collective_order_runs_by_kernel_order():
    report = check_races(load(DLRM))
    assert not [f for f in report.findings if f.rule == "collective-order"]  # the ranks agree
    assert [c.collectives for c in report.coverage] == [8] * 8  # 5 send/recv + 3 all-reduce kernels each
    assert "the collective order was compared across ranks 0, 1, 2, 3, 4, 5, 6, 7" in report.reason
    assert (f"collective order: rank(s) 0-7 have no collective metadata on their NCCL kernels (older PyTorch records "
            f"no \"Collective name\"): their collectives were read from the NCCL kernel names and compared by kernel "
            f"order on each stream (basis: {KERNEL_ORDER})") in report.notes
    assert "collective order: 24 collective kernel(s) of stream 84 compared across rank(s) 0-7 by kernel order" \
        in report.notes
