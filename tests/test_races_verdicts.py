"""Issue 11, items 4-6: manifest means the race bit; "none" only when something was checked; one
root cause, one finding group. Hand-built Kineto traces (builder calls in time order)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console

from overlapscope import races
from overlapscope.races import check_races
from overlapscope.races import findings as findings_module
from overlapscope.renderers.races_console import print_races
from overlapscope.pipeline import load
from race_builders import NIC, RaceBuilder, check
from test_races_rules import IDS, STAGING, dp_gather_then_consume, ranks_issuing

REPO = Path(__file__).resolve().parents[1]


# ---- 4. manifest: overlapped, or ran against issue order ------------------------------------------

def test_overlap_is_manifest(tmp_path):
    """The gather (issued first) runs 5000-9000, the consumer (issued second) 6000-7000."""
    [f] = check(dp_gather_then_consume(6000, join=False), tmp_path=tmp_path).findings
    assert (f.kind, f.timing) == ("manifest", "overlapped")
    assert "overlapped in time" in f.hint


def test_inverted_order_is_manifest(tmp_path):
    """The consumer was launched after the gather (4500 > 1500) but ran entirely before it
    (2000-3000, the gather 5000-9000): it read stale ids. The race bit."""
    [f] = check(dp_gather_then_consume(2000, join=False), tmp_path=tmp_path).findings
    assert (f.rule, f.kind) == ("cross-stream", "manifest")
    assert f.timing == "inverted"
    assert (f.first.region, f.second.region) == ("dp_allgather", "consume_ids")
    assert "ran entirely before" in f.hint


def test_in_issue_order_without_overlap_is_latent(tmp_path):
    [f] = check(dp_gather_then_consume(10_000, join=False), tmp_path=tmp_path).findings
    assert (f.kind, f.timing) == ("latent", "in order")
    assert "timing luck" in f.hint


def staging_host_read(gather: tuple[int, int], read: tuple[int, int]) -> RaceBuilder:
    """`page_gather` launched at 1500 writes staging on stream 7 during `gather`; the transfer
    engine's `rdma_read` mark (on="host", another thread) reads it during `read`."""
    b = RaceBuilder(rank=0)
    b.step(1, 0, 50_000)
    b.mark("page_gather", 1000, 2000, writes=STAGING)
    b.launch("gather_kernel", 7, 1500, *gather)
    b.mark("rdma_read", *read, reads=STAGING, on="host", tid=NIC)
    return b


def test_host_read_marked_after_the_write_that_ran_before_it_is_manifest(tmp_path):
    """staging_transfer --variant unsynced --world-size 1: the GPU queue was backed up, the gather
    ran 6000-8000, the NIC read (marked after the launch) ran 3000-5000 and sent stale pages."""
    [f] = check(staging_host_read((6000, 8000), (3000, 5000)), tmp_path=tmp_path).findings
    assert (f.rule, f.kind) == ("host-consumer", "manifest")
    assert f.timing == "inverted"
    assert "`rdma_read` ran entirely before `page_gather`" in f.hint


def test_host_read_in_mark_order_after_the_write_is_latent(tmp_path):
    [f] = check(staging_host_read((2000, 2500), (3000, 5000)), tmp_path=tmp_path).findings
    assert (f.rule, f.kind, f.timing) == ("host-consumer", "latent", "in order")


def test_host_read_overlapping_the_write_is_manifest(tmp_path):
    [f] = check(staging_host_read((2000, 4000), (3000, 5000)), tmp_path=tmp_path).findings
    assert (f.kind, f.timing) == ("manifest", "overlapped")


def test_finding_json_says_how_it_bit(tmp_path):
    [f] = check(dp_gather_then_consume(2000, join=False), tmp_path=tmp_path).findings
    assert f.to_dict()["timing"] == "inverted"


# ---- 5. verdict and coverage ---------------------------------------------------------------------

def two_streams_no_accesses() -> RaceBuilder:
    b = RaceBuilder(rank=0)
    b.launch("gemm_kernel", 7, 1000, 2000, 4000)
    b.launch("other_kernel", 13, 1500, 2500, 3000)
    return b


def test_no_access_known_is_not_checked(tmp_path):
    report = check(two_streams_no_accesses(), tmp_path=tmp_path)
    assert report.findings == []
    assert report.verdict == "not checked"
    assert report.accesses_known == 0
    assert "Execution Trace" in report.reason and "access marks" in report.reason
    [c] = report.coverage
    assert isinstance(c, races.RankCoverage)
    assert (c.rank, c.accesses_known, c.pairs_checked, c.pairs_unchecked) == (0, 0, 0, 0)
    assert "no memory accesses are known" in c.reason


def test_collective_order_alone_does_not_make_it_checked(tmp_path):
    """Two ranks with NCCL metadata but no accesses: the collective order was compared (and
    agrees), memory was not: "not checked", and the reason says what was compared."""
    order = [("allreduce", 1000), ("allgather", 500)]
    report = check(*ranks_issuing([order, order]), tmp_path=tmp_path)
    assert report.verdict == "not checked"
    assert "collective order" in report.reason
    assert [c.collectives for c in report.coverage] == [2, 2]


def test_collective_order_finding_without_accesses_is_races(tmp_path):
    r0, r1 = ranks_issuing([[("allreduce", 1000), ("allgather", 500)], [("allgather", 500), ("allreduce", 1000)]])
    report = check(r0, r1, tmp_path=tmp_path)
    assert report.verdict == "races"


def test_checked_and_clean_is_none(tmp_path):
    report = check(dp_gather_then_consume(9500, join=True), tmp_path=tmp_path)
    assert report.verdict == "none"
    [c] = report.coverage
    assert c.accesses_known == report.accesses_known == 2
    assert (c.pairs_checked, c.pairs_unchecked, c.reason) == (1, 0, "")


def test_findings_are_races(tmp_path):
    assert check(dp_gather_then_consume(6000, join=False), tmp_path=tmp_path).verdict == "races"


def test_pairs_left_unchecked_are_counted_per_rank(tmp_path):
    b = dp_gather_then_consume(9500, join=False)
    b.wait(13, 7, record_corr=987_654, at=3000)  # a record the trace does not hold
    report = check(b, tmp_path=tmp_path)
    assert report.verdict == "none" and report.unchecked_pairs == 1
    [c] = report.coverage
    assert (c.pairs_checked, c.pairs_unchecked) == (0, 1)
    assert "could not be resolved" in c.reason
    assert "1 conflicting access pair(s) left unchecked" in report.reason


def test_to_dict_is_the_whole_races_json(tmp_path):
    report = check(dp_gather_then_consume(6000, join=False), tmp_path=tmp_path)
    doc = report.to_dict()
    assert list(doc) == ["verdict", "reason", "findings", "groups", "checked", "notes"]
    assert doc["verdict"] == "races"
    [f] = doc["findings"]
    assert f["group"] == 1 and f["rule"] == "cross-stream" and set(f["first"]) == {"name", "stream", "start_ns",
                                                                                   "end_ns", "region"}
    [g] = doc["groups"]
    assert (g["id"], g["rule"], g["kind"], g["count"], g["ranks"], g["first_instance"]) == (1, "cross-stream",
                                                                                          "manifest", 1, [0], 0)
    assert doc["checked"] == [{"rank": 0, "accesses_known": 2, "pairs_checked": 1, "pairs_unchecked": 0,
                               "collectives": 0, "reason": ""}]


def test_not_checked_json(tmp_path):
    doc = check(two_streams_no_accesses(), tmp_path=tmp_path).to_dict()
    assert (doc["verdict"], doc["findings"], doc["groups"]) == ("not checked", [], [])
    assert doc["checked"][0]["accesses_known"] == 0


def test_a_hand_made_report_without_coverage_is_not_checked():
    from overlapscope.races import RaceReport

    assert RaceReport([], []).verdict == "not checked"


# ---- 6. one root cause, one finding group --------------------------------------------------------

def microbatched_rank(rank: int, steps: int = 3, manifest_step: int | None = None) -> RaceBuilder:
    """Each step: `dp_allgather` on stream 29 writes l<step>.mb0.ids (a new buffer each step), and
    `moe_router` reads it on stream 21 without waiting; in `manifest_step` the read overlaps."""
    b = RaceBuilder(rank=rank)
    for s in range(steps):
        base = s * 20_000
        b.step(s + 1, base, base + 19_000)
        ids = {f"l{s}.mb0.ids": (0x7F00_0000_0000 + s * 0x10000, 4096)}
        b.mark("dp_allgather", base + 1000, base + 2000, writes=ids)
        b.launch("ncclDevKernel_AllGather_RING_LL", 29, base + 1500, base + 5000, base + 9000)
        b.mark("moe_router", base + 4000, base + 4800, reads=ids)
        start = base + (6000 if s + 1 == manifest_step else 10_000)
        b.launch("router_kernel", 21, base + 4500, start, start + 1000)
        b.device_sync(base + 5000, base + 11_500)
    return b


def test_occurrences_of_one_root_cause_are_one_group(tmp_path):
    report = check(microbatched_rank(0, manifest_step=2), microbatched_rank(1), tmp_path=tmp_path)
    assert len(report.findings) == 6
    [g] = report.groups
    assert isinstance(g, races.FindingGroup)
    assert (g.rule, g.kind, g.count, g.manifest, g.ranks, g.steps) == (
        "cross-stream", "manifest", 6, 1, (0, 1), ("ProfilerStep#1", "ProfilerStep#2", "ProfilerStep#3"))
    assert g.buffer_family == "l#.mb#.ids"
    assert (g.first_instance.rank, g.first_instance.step) == (0, "ProfilerStep#1")
    assert (g.worst.rank, g.worst.step, g.worst.kind) == (0, "ProfilerStep#2", "manifest")
    assert g.hint == g.worst.hint
    doc = report.to_dict()
    assert [f["group"] for f in doc["findings"]] == [1] * 6  # JSON keeps every occurrence
    assert doc["groups"][0]["occurrences"] == list(range(6)) and doc["groups"][0]["count"] == 6


def test_other_region_or_stream_is_another_group(tmp_path):
    b = microbatched_rank(0, steps=1)
    b.mark("dp_allgather", 30_000, 30_500, writes=IDS)
    b.launch("ncclDevKernel_AllGather_RING_LL", 29, 30_100, 31_000, 35_000)
    b.mark("shared_expert", 30_600, 30_900, reads=IDS)
    b.launch("expert_kernel", 21, 30_700, 36_000, 37_000)
    report = check(b, tmp_path=tmp_path)
    assert [(g.rule, g.second.what, g.count) for g in report.groups] == [
        ("cross-stream", "moe_router", 1), ("cross-stream", "shared_expert", 1)]


def test_latent_group_worst_is_the_closest_call(tmp_path):
    report = check(microbatched_rank(0), tmp_path=tmp_path)
    [g] = report.groups
    assert g.kind == "latent" and g.manifest == 0


def test_buffer_family_strips_indices():
    assert findings_module.buffer_family(["l0.mb1.gathered_ids", "l12.mb0.gathered_ids", "l3.mb1.gathered_hidden"]) == \
        "l#.mb#.gathered_hidden, l#.mb#.gathered_ids"


def test_console_shows_one_panel_per_group(tmp_path):
    report = check(microbatched_rank(0, manifest_step=2), microbatched_rank(1), tmp_path=tmp_path)
    console = Console(record=True, width=160)
    print_races(report, console)
    text = console.export_text()
    assert text.count("╭") == 1  # one panel
    assert "6 occurrences" in text and "ranks 0, 1" in text and "steps 1-3" in text
    assert "6 finding(s) in 1 group(s)" in text
    assert len(text.splitlines()) <= 25


def test_console_says_not_checked(tmp_path):
    report = check(two_streams_no_accesses(), tmp_path=tmp_path)
    console = Console(record=True, width=160)
    print_races(report, console)
    text = console.export_text()
    assert "Not checked" in text and "No race found" not in text


def test_console_escapes_trace_strings(tmp_path):
    b = dp_gather_then_consume(6000, join=False)
    b.step(9, 0, 100)  # harmless; the region names below carry markup
    b.mark("[bold]x[/]", 5000, 5100, writes=IDS)
    b.launch("k[/]", 13, 5050, 5200, 5300)
    console = Console(record=True, width=200)
    print_races(check(b, tmp_path=tmp_path), console)
    assert "[bold]x[/]" in console.export_text()


WRONG_JOIN = REPO / "sample_traces" / "deepseek_v4_tbo" / "wrong-join" / "nsys"


@pytest.mark.skipif(not WRONG_JOIN.exists(), reason="sample traces missing")
def test_wrong_join_sample_is_one_group_per_micro_batch_stream():
    """24 findings (2 micro-batches x 2 ranks x 6 steps): one group per micro-batch stream, a
    short console report."""
    report = check_races(load([WRONG_JOIN]))
    assert len(report.findings) == 24
    assert [(g.rule, g.kind, g.count, g.ranks, len(g.steps)) for g in report.groups] == [
        ("wrong-join", "manifest", 12, (0, 1), 6)] * 2
    assert {g.second.stream for g in report.groups} == {21, 25}
    assert re.fullmatch(r"l#\.mb#\.gathered_hidden, l#\.mb#\.gathered_ids", report.groups[0].buffer_family)
    console = Console(record=True, width=160)
    print_races(report, console)
    assert len(console.export_text().splitlines()) < 60
