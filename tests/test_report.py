"""The report's data (verdicts, exposed tree, lanes, coverage, facts) and its HTML, without a browser (see
test_report_browser.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from overlapscope import report as rp
from overlapscope import intervals as iv
from overlapscope.cli import app
from overlapscope.overlap import exposed_by_kernel
from overlapscope.races.findings import Access, Finding, RaceReport
from overlapscope.renderers.html import rank_label, render_html, script_json, verdict_sentences, verdict_text
from overlapscope.pipeline import load
from run_builders import COMM_NS, HOSTILE, LONG_NAME, T0, hostile_run, nested_run, no_gpu_run, tbo_run

runner = CliRunner()


@pytest.fixture(scope="module")
def racy_run(tmp_path_factory):
    return tbo_run(tmp_path_factory.mktemp("racy"), overlapped=True, race=True,
                   manifest={"model": "deepseek_v4_tbo", "variant": "comm_stream", "config": {"tp": 8}})


def test_lanes_of_a_rank(racy_run):
    trace = load([racy_run])
    timeline = rp.rank_timeline(trace, 0, ["tbo"], rp.build_report(trace, ["tbo"]).findings)
    labels = [lane.label for lane in timeline.lanes]
    assert labels == ["stream 7", "stream 13", "stream 14", "stream 20", "comm hidden", "comm exposed",
                      "region /tbo/", "profiler steps"]
    stream20 = timeline.lanes[3].tracks
    assert [(t.kind, t.count, t.binned) for t in stream20] == [("comm", 3, False)]
    assert stream20[0].names == ["ncclDevKernel_AllReduce_Sum_bf16_RING_LL"] * 3
    hidden = timeline.lanes[4].tracks[0]
    # the all-reduce is fully hidden; the all-gather of the race (2 µs) runs under index_select
    assert int((hidden.ends - hidden.starts).sum()) == 3 * COMM_NS + 2_000
    assert timeline.lanes[5].tracks[0].count == 0
    assert [m.number for m in timeline.races] == [1]


def test_big_lanes_are_drawn_as_coverage_and_the_page_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(rp, "DETAIL_LIMIT", 4)
    trace = load([tbo_run(tmp_path / "run", overlapped=True, ranks=1, steps=3)])
    report = rp.build_report(trace, ["tbo"])
    stream7 = report.timelines[0].lanes[0].tracks[0]
    assert stream7.binned and stream7.count == 9 and stream7.covered.size == rp.COVERAGE_BINS
    # what the bins cover adds up to the union of the lane's spans
    width = np.diff(stream7.edges)
    assert abs(float((stream7.covered * width).sum()) - 3 * 60_000) < 1
    assert any("stream 7: 9 compute spans drawn as the covered fraction" in n for n in report.decimation)
    assert "Aggregated lanes" in render_html(report)


def brute_covered_before(starts, ends, point):
    covered = np.zeros(0, dtype=np.int64)
    for s, e in zip(starts, ends):
        covered = np.union1d(covered, np.arange(s, min(e, point)))
    return covered.size


intervals = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 60)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(intervals, st.lists(st.integers(-10, 400), min_size=1, max_size=8))
def test_covered_before_matches_brute_force(spans, points):
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    ends = np.array([s + d for s, d in spans], dtype=np.int64)
    from overlapscope import intervals as iv

    got = iv.covered_before(iv.union(starts, ends), np.array(points))
    assert got.tolist() == [brute_covered_before(starts, ends, p) for p in points]


def test_exposed_kernels_rank_comm_by_exposed_time(tmp_path):
    trace = load([tbo_run(tmp_path / "inline", overlapped=False)])
    [row] = exposed_by_kernel(trace, 15)
    assert (row.name, row.ranks, row.count, row.total_ns, row.exposed_ns) == (
        "ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 2, 6, 6 * COMM_NS, 6 * COMM_NS)


def test_manifest_facts_flatten_and_shorten():
    facts = dict(rp.manifest_facts({"overlapscope_run": 1, "model": "m", "config": {"tp": 8, "ep": 2},
                                    "step_times_ms": [[1.5, 2.0]], "command": "x" * 1000}))
    assert "overlapscope_run" not in facts
    assert facts["model"] == "m" and facts["config.tp"] == "8" and facts["config.ep"] == "2"
    assert facts["step_times_ms"] == "[[1.5, 2.0]]"
    assert facts["command"].startswith("x" * rp.FACT_TEXT_LIMIT) and "(1,000 characters)" in facts["command"]
    assert rp.manifest_facts(None) == []


@pytest.mark.parametrize("text", HOSTILE + ["\u2028</ScRiPt ", "a&b<c>d"])
def test_script_json_cannot_end_its_script_and_round_trips(text):
    encoded = script_json({"name": text, "list": [text]})
    assert not re.search(r"[<>&\u2028\u2029]", encoded)
    assert orjson.loads(encoded) == {"name": text, "list": [text]}


def test_page_is_self_contained(racy_run):
    page = render_html(rp.build_report(load([racy_run]), ["tbo"]))
    assert page.count("plotly.js v") == 1  # the bundle's banner: inlined exactly once
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page, re.IGNORECASE)
    assert '<meta http-equiv="Content-Security-Policy" content="default-src &#x27;none&#x27;;' in page
    assert "MathJax.Hub.Config" not in page and "cdn.plot.ly/plotly" not in page


def hostile_findings() -> RaceReport:
    first = Access(HOSTILE[0], 7, rp_t(5_000), rp_t(25_000), HOSTILE[2])
    second = Access(LONG_NAME, 20, rp_t(10_000), rp_t(30_000), HOSTILE[3])
    return RaceReport([Finding("cross-stream", "manifest", 0, HOSTILE[1], first, second, HOSTILE[4])], [HOSTILE[3]])


def rp_t(ns: int) -> int:
    from run_builders import T0

    return T0 + ns


def test_hostile_strings_never_reach_the_page_raw(tmp_path):
    run = hostile_run(tmp_path / "hostile")
    report = rp.build_report(load([run]), [re.escape(HOSTILE[2])], races=hostile_findings())
    page = render_html(report)
    body = page.split("<body>", 1)[1]
    for text in HOSTILE:
        assert text not in body
    # only our own elements: the plotly bundle, the figure data blocks and the main script
    assert body.count("<script") == 2 + body.count('<script type="application/json" class="figure"')
    markup = re.sub(r"<script>.*?</script>", "", body, flags=re.DOTALL)  # our two scripts (plotly, main)
    assert not re.search(r"<(img|svg|h1>broken)", markup, re.IGNORECASE)
    for block in re.findall(r'class="figure" data-for="[^"]+">(.*?)</script>', body, re.DOTALL):
        json.loads(block)  # every data block is whole JSON: nothing ended it early


def test_report_command_writes_the_page(racy_run, tmp_path):
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(racy_run), "--region", "tbo", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report written to {out}" in result.stdout
    page = out.read_text()
    assert 'id="race-1"' in page and 'id="race-2"' in page and "deepseek_v4_tbo" in page


def test_report_of_a_run_without_gpu_ops_warns(tmp_path):
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(no_gpu_run(tmp_path / "run")), "-o", str(out)])
    assert result.exit_code == 0 and out.exists()
    assert "warning: no GPU kernels in the trace" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["report", "MISSING", "-o", "r.html"], "MISSING: no such file or directory"),
    (["report", "RUN", "-o", "no/such/dir/r.html"], "its directory does not exist"),
    (["report", "RUN", "-o", "r.html", "--region", "("], "invalid regular expression"),
    (["report", "RUN", "-o", "r.html", "--db", "missing.db"], "no such history database"),
])
def test_report_bad_input(racy_run, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [str(racy_run) if a == "RUN" else a for a in args])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---- the verdict, the exposed tree, GPU-time lanes, the opening step (nested_run: answers by hand) ----


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    return load([nested_run(tmp_path_factory.mktemp("nested") / "run")])


def sentences(report) -> list[tuple[tuple[int, ...], str]]:
    return [(ranks, verdict_text(pieces)) for ranks, _, _, pieces in verdict_sentences(report.verdicts)]


def test_verdict_sentence_of_a_region_by_hand(nested):
    # rank 0 (and 2) per step: all-gather 10 µs all hidden, all-reduce 10 µs with 2 µs under compute;
    # two steps: comm 40 µs, hidden 24 µs (60 %), exposed 16 µs = 8 µs per step, all of it in the combine
    report = rp.build_report(nested, ["^tbo/block$"], races=RaceReport([], []))
    assert sentences(report) == [
        ((0, 2), "60.0 % of the communication launched in `^tbo/block$` is hidden; 8.0 µs per step stays exposed, "
                 "8.0 µs of it in `l0 > mb1 > combine` (20.0 % hidden)"),
        # rank 1: compute ends 2 µs later, so 4 of the all-reduce's 10 µs are hidden
        ((1,), "70.0 % of the communication launched in `^tbo/block$` is hidden; 6.0 µs per step stays exposed, "
               "6.0 µs of it in `l0 > mb1 > combine` (40.0 % hidden)"),
    ]
    v = report.verdicts[0]
    assert (v.comm_ns, v.exposed_comm_ns, v.steps, v.path, v.full_path, v.path_comm_ns, v.path_exposed_ns) == (
        40_000, 16_000, 2, "l0 > mb1 > combine", "tbo/block > l0 > mb1 > combine", 20_000, 16_000)
    assert v.overlap_pct == pytest.approx(60.0)
    assert rank_label((0, 1, 2, 5)) == "ranks 0-2, 5" and rank_label((3,)) == "rank 3"


def test_verdict_sentence_of_the_whole_trace_by_hand(nested):
    # the whole trace adds the step_align all-reduce: 1 µs per step that nothing hides
    report = rp.build_report(nested, [], races=RaceReport([], []))
    assert sentences(report) == [
        ((0, 2), "57.1 % of the communication is hidden; 9.0 µs per step stays exposed, 8.0 µs of it in "
                 "`tbo/block > l0 > mb1 > combine` (20.0 % hidden)"),
        ((1,), "66.7 % of the communication is hidden; 7.0 µs per step stays exposed, 6.0 µs of it in "
               "`tbo/block > l0 > mb1 > combine` (40.0 % hidden)"),
    ]


def test_verdict_without_comm_or_range(tmp_path):
    from run_builders import no_comm_run

    report = rp.build_report(load([no_comm_run(tmp_path / "run")]), ["tbo", "nothing"], races=RaceReport([], []))
    assert sentences(report) == [
        ((0,), "no communication was launched in `tbo`: overlap is not applicable"),
        ((0,), "no host range matches `nothing`: nothing to measure"),
    ]


def test_exposed_tree_rows(nested):
    report = rp.build_report(nested, [], races=RaceReport([], []))
    rows = [(n.path, n.depth, n.comm_ns, n.hidden_ns, n.exposed_ns, n.instances)
            for n in report.exposed_tree if n.rank == 0]
    assert rows == [
        ("", 0, 42_000, 24_000, 18_000, 6),
        ("tbo/block", 1, 40_000, 24_000, 16_000, 4),
        ("tbo/block > l0", 2, 40_000, 24_000, 16_000, 4),
        ("tbo/block > l0 > mb1", 3, 20_000, 4_000, 16_000, 2),
        ("tbo/block > l0 > mb1 > combine", 4, 20_000, 4_000, 16_000, 2),
        ("tbo/block > l0 > mb0", 3, 20_000, 20_000, 0, 2),
        ("tbo/block > l0 > mb0 > dispatch", 4, 20_000, 20_000, 0, 2),
        ("step_align", 1, 2_000, 0, 2_000, 2),
    ]
    page = render_html(report)
    tree = page.split('id="exposed"', 1)[1].split("</section>", 1)[0]
    # nested <details>: the combine node sits inside mb1, inside l0, inside the block
    combine = tree.index('data-path="tbo/block &gt; l0 &gt; mb1 &gt; combine"')
    assert tree.rfind('data-path="tbo/block &gt; l0 &gt; mb1"', 0, combine) > tree.rfind('data-path="tbo/block"', 0, combine)
    assert tree.count("<details") == tree.count("</details>")


def test_tree_keeps_the_most_exposed_nodes_and_their_ancestors(nested, monkeypatch):
    monkeypatch.setattr(rp, "TREE_LIMIT", 2)
    report = rp.build_report(nested, [], races=RaceReport([], []))
    mine = [n.path for n in report.exposed_tree if n.rank == 0]
    assert mine == ["", "tbo/block"]  # the two most exposed (18 and 16 µs); the rest of the 8 are counted
    assert report.tree_left_out[0] == 6


def test_region_and_step_lanes_are_on_gpu_time(nested):
    report = rp.build_report(nested, ["^tbo/block$"], races=RaceReport([], []))
    lanes = {lane.label: lane.tracks[0] for lane in report.timelines[0].lanes}
    base = T0  # rank 0
    region = lanes["region /^tbo/block$/"]
    # the host range is [0.1, 5) µs; its GPU work runs from the compute kernel's start to the all-reduce's end
    assert list(zip(region.starts - base, region.ends - base)) == [(5_000, 40_000), (105_000, 140_000)]
    steps = lanes["profiler steps"]
    assert list(zip(steps.starts - base, steps.ends - base)) == [(5_000, 51_000), (105_000, 151_000)]
    assert steps.names == ["ProfilerStep#0", "ProfilerStep#1"]


def test_the_timelines_open_on_the_median_step():
    steps = [rp.StepWindow(f"ProfilerStep#{i}", 1_000 * i, 1_000 * i + span, 1) for i, span in
             enumerate([900, 100, 500, 300, 700])]
    assert rp._median_step(steps).name == "ProfilerStep#2"
    assert rp._median_step(steps[:4]).name == "ProfilerStep#3"  # lower median: 100, 300, 500, 900
    assert rp._median_step([]) is None


def test_opening_view_and_step_selector(nested):
    report = rp.build_report(nested, ["^tbo/block$"], races=RaceReport([], []))
    assert [s.name for s in report.steps] == ["ProfilerStep#0", "ProfilerStep#1"]
    assert report.representative == "ProfilerStep#0"  # both 46 µs long (ranks 1, 2 start 41, 82 ns later)
    step = report.steps[0]
    pad = int(step.span_ns * rp.VIEW_PAD)
    assert report.view == (step.start_ns - pad, step.end_ns + pad)
    page = render_html(report)
    assert '<select id="step-select">' in page and ">whole run</option>" in page
    assert "(median)</option>" in page


def test_detail_of_binned_lanes_is_embedded_and_fits_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(rp, "DETAIL_LIMIT", 4)
    trace = load([tbo_run(tmp_path / "run", overlapped=True, ranks=1, steps=5)])
    report = rp.build_report(trace, ["tbo"], races=RaceReport([], []))
    stream7 = report.timelines[0].lanes[0].tracks[0]
    assert stream7.binned and stream7.detail_complete and stream7.starts.size == 15
    assert stream7.name_table == ["attention_fwd_kernel", "moe_grouped_gemm"]
    spec = json.loads(re.search(r'data-for="timeline-rank-0">(.*?)</script>', render_html(report)).group(1))
    [lane] = [d for d in spec["timeline"]["detail"] if d["lane"] == 0]
    assert lane["windows"] is None and len(lane["tracks"][0]["s"]) == 15 and spec["timeline"]["limit"] == 4
    # over the budget: only the representative step and its neighbours, as many as fit (per rank)
    report = rp.build_report(trace, ["tbo"], races=RaceReport([], []))
    notes = rp.fit_detail(report.timelines, report.steps, next(s for s in report.steps if s.name == "ProfilerStep#2"),
                          budget=3 * 6)  # stream 7 (3 a step) and the hidden lane, region, ... a step each
    stream7 = report.timelines[0].lanes[0].tracks[0]
    assert not stream7.detail_complete and stream7.detail_windows
    kept_steps = {s.name for s in report.timelines[0].steps
                  if any(a <= s.start_ns < b for a, b in stream7.detail_windows)}
    assert "ProfilerStep#2" in kept_steps and len(kept_steps) < 5
    assert stream7.starts.size == 3 * len(kept_steps)
    assert any("only in these windows" in n for n in notes)


def test_excluded_kernels_are_shown(racy_run):
    trace = load([racy_run])
    page = render_html(rp.build_report(trace, ["tbo"], excluded=["pacing_spin<x>", "^warmup"]))
    excluded = page.split('id="excluded"', 1)[1].split("</p>", 1)[0]
    assert "<code>pacing_spin&lt;x&gt;</code>, <code>^warmup</code>" in excluded
    assert "No kernel left out" in render_html(rp.build_report(trace, ["tbo"]))


def test_race_section_shows_verdict_and_groups(racy_run, nested):
    page = render_html(rp.build_report(load([racy_run]), ["tbo"]))
    races = page.split('<section id="races">', 1)[1].split("</section>", 1)[0]
    assert 'data-verdict="races"' in races and "Races found" in races
    assert races.count('<tr id="race-group-') == 1  # the same race on both ranks: one root cause
    assert 'href="#race-' in races.split('id="race-groups-table"', 1)[1]
    # no access known: "not checked", never "no race"
    page = render_html(rp.build_report(nested, []))
    races = page.split('<section id="races">', 1)[1].split("</section>", 1)[0]
    assert 'data-verdict="not checked"' in races and "<strong>Not checked</strong>" in races
    assert "no race" not in races.lower().replace("no race among", "")


def test_race_marks_are_in_the_figure_for_the_page_to_label(racy_run):
    report = rp.build_report(load([racy_run]), ["tbo"])
    spec = json.loads(re.search(r'data-for="timeline-rank-1">(.*?)</script>', render_html(report)).group(1))
    assert [r["n"] for r in spec["timeline"]["races"]] == [2]
    assert spec["layout"]["annotations"] == []  # the page lays the labels out for the zoom it shows


def test_families_and_suspects_are_on_the_page(tmp_path):
    """#12.2: the report, like analyze, shows communication per family and the suspect kernels."""
    run = tbo_run(tmp_path / "run", overlapped=True, compute_names=("attention_fwd_kernel", "my_all_reduce_kernel",
                                                                    "attention_fwd_kernel"))
    page = render_html(rp.build_report(load([run]), ["tbo"]))
    families = page.split('id="families-table"', 1)[1].split("</table>", 1)[0]
    assert families.count("<tr>") == 3 and "nccl" in families and "45.0 µs" in families  # header + 2 ranks
    suspects = page.split('id="suspects-table"', 1)[1].split("</table>", 1)[0]
    assert "my_all_reduce_kernel" in suspects and "<code>my_all_reduce_kernel\\b</code>" in suspects
