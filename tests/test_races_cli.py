"""`overlapscope races PATH... [--json]`: exit 0 none, 1 findings, 2 bad input, 3 not checked."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from overlapscope.cli import app
from race_builders import write
from test_races_rules import dp_gather_then_consume, staging_then_rdma

runner = CliRunner()


def test_findings_exit_1_with_the_design_json(tmp_path):
    path = write(dp_gather_then_consume(6000, join=False), tmp_path)
    result = runner.invoke(app, ["races", str(path), "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == ["verdict", "reason", "findings", "groups", "checked", "notes"]
    assert doc["verdict"] == "races"
    [f] = doc["findings"]
    assert f["group"] == doc["groups"][0]["id"] == 1
    assert set(f) >= {"rule", "kind", "rank", "buffer", "first", "second", "hint"}
    assert set(f["first"]) == {"name", "stream", "start_ns", "end_ns", "region"}
    assert (f["rule"], f["kind"], f["first"]["stream"], f["second"]["region"]) == ("cross-stream", "manifest", 7,
                                                                                    "consume_ids")


def test_no_findings_exit_0(tmp_path):
    path = write(dp_gather_then_consume(9500, join=True), tmp_path)
    result = runner.invoke(app, ["races", str(path)])
    assert result.exit_code == 0, result.output
    assert "No race found" in result.stdout


def test_no_findings_with_unchecked_pairs_says_so(tmp_path):
    """The streams are joined by a wait whose record the trace lacks: nothing is reported, and the
    console says that "no race" here covers less than the whole trace (exit 0: no finding)."""
    b = dp_gather_then_consume(9500, join=False)
    b.wait(13, 7, record_corr=987_654, at=3000)  # names a record the trace does not hold
    result = runner.invoke(app, ["races", str(write(b, tmp_path))], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "No race found, but 1 conflicting access pair(s) could not be checked" in result.stdout


def test_nothing_known_exit_3_not_checked(tmp_path):
    """Kernels on two streams, no Execution Trace, no marks: nothing could race-check: exit 3, and
    the JSON says so and why (issue 11, item 5)."""
    from test_races_verdicts import two_streams_no_accesses

    path = write(two_streams_no_accesses(), tmp_path)
    result = runner.invoke(app, ["races", str(path), "--json"])
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert (doc["verdict"], doc["findings"]) == ("not checked", [])
    assert doc["checked"][0]["accesses_known"] == 0 and "Execution Trace" in doc["reason"]
    console = runner.invoke(app, ["races", str(path)], env={"COLUMNS": "200"})
    assert console.exit_code == 3
    assert "Not checked" in console.stdout and "No race found" not in console.stdout


def test_console_shows_the_fix(tmp_path):
    path = write(staging_then_rdma(8000, (3000, 5000), None), tmp_path)
    result = runner.invoke(app, ["races", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "host/NIC access not ordered with the GPU" in result.stdout
    assert "torch.cuda.current_stream().synchronize()" in result.stdout
    assert "1 finding(s) in 1 group(s): 1 manifest" in result.stdout


def test_bad_input_exit_2_one_line(tmp_path):
    bad = tmp_path / "rank-0.json"
    bad.write_text('{"traceEvents": [')
    result = runner.invoke(app, ["races", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "overlapscope: error:" in result.stderr


def test_garbage_execution_trace_exit_2(tmp_path):
    run = tmp_path / "run"
    write(dp_gather_then_consume(6000, join=False), run, "rank-0.trace.json")
    (run / "rank-0.et.json").write_text('{"schema": "1.0.1", "nodes": [{"id": 2,')
    result = runner.invoke(app, ["races", str(run)])
    assert result.exit_code == 2
    assert "rank-0.et.json" in result.stderr
