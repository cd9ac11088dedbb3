"""Renderers format only: numbers as the analyses computed them, trace strings inert.

One test module for the shared pieces (format.py, render(), json) and each console renderer on
results built by hand, so every line checked here has an answer written in the test."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from overlapscope.gate import Check, GateResult
from overlapscope.overlap import (
    Analysis, ExposedRow, FamilyRow, PathRow, RankRow, ScopeRow, StepRegionRow, SuspectRow,
)
from overlapscope.renderers import CONSOLE, render
from overlapscope.renderers.console import print_analysis, skew_lines
from overlapscope.renderers.format import console_text, duration, isolate_bidi, pct, plain, points, signed_duration
from overlapscope.renderers.junit import gate_junit
from overlapscope.renderers.markdown import cell, gate_markdown


@pytest.mark.parametrize("ns, text", [(0, "0 ns"), (999, "999 ns"), (1_000, "1.0 µs"), (999_949, "999.9 µs"),
                                      (1_000_000, "1.00 ms"), (2_500_000_000, "2.500 s"), (-1_500, "-1.5 µs")])
def test_duration_keeps_short_ones_exact(ns, text):
    assert duration(ns) == text


def test_percentages_and_points():
    assert pct(None) == "n/a" and pct(None, "n/a (no comm)") == "n/a (no comm)"
    assert pct(87.649) == "87.6 %" and pct(0.0) == "0.0 %" and pct(100.0) == "100.0 %"
    assert points(3.25) == "+3.2 pts" and points(-0.05) == "-0.1 pts" and points(None) == "n/a"
    assert signed_duration(-1_500) == "-1.5 µs" and signed_duration(2_000) == "+2.0 µs" and signed_duration(0) == "0 ns"


def test_trace_text_is_inert():
    assert console_text("^(nothing|x)[a-z]+") == r"^(nothing|x)\[a-z]+"  # rich would drop "[a-z]"
    assert console_text("k[/]") == r"k\[/]"
    assert plain("a\x1b[31mb\x07c\rd") == "a?[31mb?c?d"
    assert plain("x\u202ey\u2066z") == "xyz" and isolate_bidi("p\u202eq") == "pq"
    assert cell("a|b\nc") == r"a\|b c" and cell("<b>") == "&lt;b&gt;" and cell("<b>", for_html=False) == "<b>"


def _analysis() -> Analysis:
    return Analysis(
        ranks=[RankRow(0, "run/rank-[bold]0.json", 0, 2_000_000, 9_000_000, 1_500_000, 75.0, 500_000,
                       {"Kineto GPU ops without ts or dur": 3})],
        regions=[ScopeRow(0, "^(nothing|x)[a-z]+", 0, 0, None, 0, 0), ScopeRow(0, "tbo", 4, 0, None, 0, 2)],
        steps=[ScopeRow(0, "ProfilerStep#1", 1_000_000, 900_000, 90.0, 100_000, 1)],
        region_steps=[StepRegionRow(0, "ProfilerStep#1", "tbo", 0, 0, None, 0)],
        families=[FamilyRow(0, "nccl", "comm", 3, 2_000_000)],
        suspects=[SuspectRow(0, "my_allreduce_kernel", 2, 40_000, "my_allreduce_kernel")],
        exposed=[ExposedRow(0, "ProfilerStep#1", "tbo > combine", "nccl[/]k", 29, 0, 400_000, 400_000, 300_000)],
        exposed_paths=[PathRow(0, "tbo > combine", 2, 400_000, 300_000, 1)],
    )


def _printed(fn, result) -> str:
    buf = io.StringIO()
    fn(result, Console(file=buf, width=300, color_system=None))
    return buf.getvalue()


def test_console_analysis_shows_every_table_with_the_analysis_numbers():
    text = _printed(print_analysis, _analysis())
    for shown in ("2.00 ms", "9.00 ms", "75.0 %", "rank-[bold]0.json", "no such range", "n/a (no comm)",
                  "^(nothing|x)[a-z]+", "Communication per family", "nccl", "Per profiler step and region",
                  "90.0 %", "nccl[/]k", "tbo > combine", "300.0 µs", "my_allreduce_kernel", "'my_allreduce_kernel'",
                  "3 Kineto GPU ops without ts or dur left out"):
        assert shown in text, shown


def test_skew_lines_name_the_wait_and_the_late_rank():
    import pandas as pd

    from overlapscope.skew import Skew

    waiting = pd.DataFrame({"rank": [0], "process_group": ["pg\x1b"], "seq": [4], "collective": ["allreduce"],
                            "kernel": ["k"], "correlation": [1], "start": [0], "end": [2_000_000],
                            "wait": [1_500_000], "late_rank": [1], "late_start": [1_500_000]})
    lines = skew_lines(Skew(50_000, matched=3, unmatched=1, inconsistent=0, waiting=waiting))
    assert lines[0].startswith("skew: 3 collectives matched across ranks (1 on one rank only, 0 inconsistent)")
    assert lines[1] == "  rank 0: allreduce #4 (process group pg?) waited 1.50 ms of 2.00 ms for rank 1"


def test_render_json_is_to_dict_and_console_is_registered(capsys):
    analysis = _analysis()
    render(analysis, "json")
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(analysis.to_dict()))
    for name in ("RunAnalysis", "RaceReport", "Diff", "Trend", "GateResult", "RunResult", "Report", "RangeTable",
                 "Exported"):
        assert name in CONSOLE
    with pytest.raises(ValueError, match="no html renderer"):
        render(analysis, "html")


def test_gate_markdown_and_junit_say_not_checked_never_pass():
    result = GateResult(checks=[Check(0, "race findings <= 0", True, "not checked (allowed): x", checked=False),
                                Check(0, "overlap >= 80 % in region /a|b/", False, "70.00 % of 1.0 us")],
                        analysis=Analysis())
    md = gate_markdown(result)
    assert md.startswith("## overlapscope gate: ❌ FAILED (1 of 2 checks)")
    assert "| ⚠️ not checked | 0 | race findings &lt;= 0 |" in md and r"region /a\|b/" in md
    xml = gate_junit(result)
    assert 'skipped="1"' in xml and 'failures="1"' in xml and "<skipped" in xml
