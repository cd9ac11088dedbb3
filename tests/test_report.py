"""The report's data (lanes, coverage, facts) and its HTML, without a browser (see test_report_browser.py)."""

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
from overlapscope.renderers.html import render_html, script_json
from overlapscope.pipeline import load
from test_report_helpers import COMM_NS, HOSTILE, LONG_NAME, hostile_run, no_gpu_run, tbo_run

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
    from test_report_helpers import T0

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
