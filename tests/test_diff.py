"""`overlapscope diff` on a before/after pair: the all-reduce inline, then on a side stream."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from overlapscope.cli import app
from overlapscope.diff import WHOLE_TRACE, compare_findings, diff_runs
from overlapscope.races.findings import Access, Finding, RaceReport
from overlapscope.pipeline import load
from test_report_helpers import COMM_NS, tbo_run

runner = CliRunner()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff")
    before = tbo_run(tmp / "inline", overlapped=False, race=True)
    after = tbo_run(tmp / "comm_stream", overlapped=True)
    return before, after


def test_overlap_before_after_and_delta(pair):
    result = diff_runs(load([pair[0]]), load([pair[1]]), ["tbo"])
    rows = {(r.rank, r.scope): r for r in result.rows}
    assert [(r.rank, r.scope) for r in result.rows] == [(0, WHOLE_TRACE), (0, "tbo"), (1, WHOLE_TRACE), (1, "tbo")]
    tbo = rows[(0, "tbo")]
    assert (tbo.before.overlap_pct, tbo.after.overlap_pct, tbo.overlap_delta) == (0.0, 100.0, 100.0)
    assert (tbo.before.exposed_comm_ns, tbo.after.exposed_comm_ns) == (3 * COMM_NS, 0)
    assert tbo.exposed_delta_ns == -3 * COMM_NS
    # the race of the "before" run is gone in the "after" run
    assert [(f.rank, f.rule, f.buffer) for f in result.gone_findings] == [(0, "cross-stream", "ids"),
                                                                          (1, "cross-stream", "ids")]
    assert result.new_findings == [] and result.unchanged_findings == 0


def test_json_output(pair):
    result = runner.invoke(app, ["diff", str(pair[1]), str(pair[0]), "--region", "tbo", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    row = next(r for r in data["rows"] if r["rank"] == 1 and r["scope"] == "tbo")
    assert row["before"]["overlap_pct"] == 100.0 and row["after"]["overlap_pct"] == 0.0
    assert row["overlap_delta_pct"] == -100.0 and row["exposed_comm_delta_ns"] == 3 * COMM_NS
    assert [f["rule"] for f in data["races"]["new"]] == ["cross-stream", "cross-stream"]
    assert data["races"]["gone"] == [] and data["races"]["unchanged"] == 0


def test_console_output(pair):
    result = runner.invoke(app, ["diff", str(pair[0]), str(pair[1]), "--region", "tbo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "+100.0 pts" in result.stdout and "-45.0 µs" in result.stdout
    assert "race findings: 0 new, 2 gone, 0 unchanged" in result.stdout


def test_not_applicable_and_missing_ranks(tmp_path):
    """A region without comm has no delta (n/a, never 0); a rank present on one side only has no other side."""
    one = tbo_run(tmp_path / "one", overlapped=True, ranks=1)
    two = tbo_run(tmp_path / "two", overlapped=True, ranks=2)
    result = diff_runs(load([one]), load([two]), ["ProfilerStep#9"])
    rows = {(r.rank, r.scope): r for r in result.rows}
    assert rows[(0, "ProfilerStep#9")].overlap_delta is None
    assert rows[(1, WHOLE_TRACE)].before is None and rows[(1, WHOLE_TRACE)].overlap_delta is None
    out = runner.invoke(app, ["diff", str(one), str(two)], env={"COLUMNS": "200"}).stdout
    assert "(no such rank)" in out


def finding(rank: int, buffer: str, first: str, second: str, start: int = 0) -> Finding:
    return Finding("cross-stream", "manifest", rank, buffer, Access(first, 7, start, start + 10, ""),
                   Access(second, 13, start + 5, start + 15, ""), "hint")


def test_findings_match_by_rank_rule_buffer_and_op_names_not_by_time():
    before = RaceReport([finding(0, "ids", "gather", "consume"), finding(0, "ids", "gather", "consume", 100),
                         finding(1, "kv", "a", "b")], [])
    after = RaceReport([finding(0, "ids", "gather", "consume", 999), finding(0, "staging", "gather", "rdma")], [])
    new, gone, unchanged = compare_findings(before, after)
    assert [(f.rank, f.buffer) for f in new] == [(0, "staging")]
    assert [(f.rank, f.buffer, f.first.start_ns) for f in gone] == [(0, "ids", 100), (1, "kv", 0)]
    assert unchanged == 1


def test_bad_input(pair, tmp_path):
    result = runner.invoke(app, ["diff", str(pair[0]), str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such file or directory" in result.stderr
