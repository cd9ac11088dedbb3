"""The history database: runs recorded by `analyze --db` and `gate --db`, read back as a trend."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from overlapscope.cli import app
from overlapscope.history import SCHEMA_VERSION, WHOLE_TRACE, read_trend, record_run, sha256_of
from overlapscope.overlap import analyze
from overlapscope.trace.load import load
from test_report_helpers import COMM_NS, tbo_run

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("history")
    return (tbo_run(tmp / "inline", overlapped=False, manifest={"model": "deepseek_v4_tbo", "variant": "inline"}),
            tbo_run(tmp / "comm_stream", overlapped=True))


def test_two_runs_recorded_and_read_back(runs, tmp_path):
    db = tmp_path / "history.db"
    for run in runs:
        result = runner.invoke(app, ["analyze", str(run), "--region", "tbo", "--db", str(db)])
        assert result.exit_code == 0, result.output
    trend = read_trend(db)
    assert trend.scopes() == [WHOLE_TRACE, "tbo"]
    tbo = trend.of("tbo")
    assert [p.run_id for p in tbo] == [1, 2]
    assert [p.pooled_pct for p in tbo] == [0.0, 100.0]
    assert [p.worst_rank_pct for p in tbo] == [0.0, 100.0]
    assert [p.exposed_comm_ns for p in tbo] == [2 * 3 * COMM_NS, 0]
    assert all(p.ranks == 2 and p.command == "analyze" for p in tbo)

    con = sqlite3.connect(db)
    (version,) = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert int(version) == SCHEMA_VERSION
    model, variant, manifest = con.execute("SELECT model, variant, manifest FROM runs WHERE id = 1").fetchone()
    assert (model, variant, json.loads(manifest)["variant"]) == ("deepseek_v4_tbo", "inline", "inline")
    assert con.execute("SELECT manifest FROM runs WHERE id = 2").fetchone() == (None,)
    files = con.execute("SELECT rank, role, path, sha256 FROM trace_files WHERE run_id = 1 ORDER BY rank").fetchall()
    assert [(r, role) for r, role, _, _ in files] == [(0, "trace"), (1, "trace")]
    assert all(digest == sha256_of(path) and len(digest) == 64 for _, _, path, digest in files)
    steps = con.execute("SELECT COUNT(*) FROM metrics WHERE run_id = 2 AND scope_kind = 'step'").fetchone()
    assert steps == (2 * 3,)  # every profiler step of both ranks


def test_git_commit_is_recorded_inside_a_repository(runs, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "f").write_text("x")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    trace = load([runs[1]])
    db = tmp_path / "h.db"
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    record_run(db, trace, analyze(trace), "analyze", cwd=repo, now=when)
    outside = tmp_path / "not_a_repo"
    outside.mkdir()
    record_run(db, trace, analyze(trace), "analyze", cwd=outside)
    [first, second] = read_trend(db).of(WHOLE_TRACE)
    assert first.git_commit == head and first.recorded_at == "2026-01-02T03:04:05+00:00"
    assert second.git_commit is None
    assert sqlite3.connect(db).execute("SELECT git_dirty FROM runs WHERE id = 1").fetchone() == (0,)


def test_gate_records_its_checks(runs, tmp_path):
    db = tmp_path / "h.db"
    result = runner.invoke(app, ["gate", str(runs[0]), "--min-overlap", "50", "--region", "tbo", "--db", str(db)])
    assert result.exit_code == 1
    con = sqlite3.connect(db)
    assert con.execute("SELECT command, gate_passed FROM runs").fetchall() == [("gate", 0)]
    assert con.execute("SELECT rank, name, passed FROM gate_checks ORDER BY rank").fetchall() == [
        (0, "overlap >= 50 % in region /tbo/", 0), (1, "overlap >= 50 % in region /tbo/", 0)]


def test_history_command(runs, tmp_path):
    db = tmp_path / "h.db"
    for run in runs:
        assert runner.invoke(app, ["analyze", str(run), "--region", "tbo", "--db", str(db)]).exit_code == 0
    shown = runner.invoke(app, ["history", "--db", str(db)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "tbo" in shown.stdout and "+100.0 pts" in shown.stdout
    data = json.loads(runner.invoke(app, ["history", "--db", str(db), "--json", "--last", "1"]).stdout)
    assert [p["run_id"] for p in data["scopes"]["tbo"]] == [2]
    assert data["scopes"]["tbo"][0]["overlap_pct"] == 100.0


@pytest.mark.parametrize("content, message", [
    (None, "no such history database"),
    (b"not a database at all, just text" * 10, "not an SQLite database"),
    ("other", "not an overlapscope history (no runs table)"),
])
def test_bad_databases(tmp_path, content, message):
    db = tmp_path / "h.db"
    if isinstance(content, bytes):
        db.write_bytes(content)
    elif content == "other":
        sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    result = runner.invoke(app, ["history", "--db", str(db)])
    assert result.exit_code == 2 and message in result.stderr


def test_analyze_db_in_a_missing_directory_is_bad_input(runs, tmp_path):
    result = runner.invoke(app, ["analyze", str(runs[0]), "--db", str(tmp_path / "no" / "h.db")])
    assert result.exit_code == 2 and "h.db" in result.stderr
