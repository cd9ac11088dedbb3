"""The history database: runs recorded by `analyze --db` and `gate --db`, read back as a trend."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overlapscope import history
from overlapscope.cli import app
from overlapscope.errors import BadInput
from overlapscope.history import SCHEMA_VERSION, WHOLE_TRACE, read_trend, record_run, sha256_of
from overlapscope.overlap import analyze
from overlapscope.pipeline import load
from overlapscope.renderers.markdown import trend_markdown
from run_builders import COMM_NS, tbo_run

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


# --- fail closed: every broken, locked, full or raced database is one BadInput line, never a traceback ---

@pytest.fixture(scope="module")
def measured(runs):
    trace = load([runs[1]])
    return trace, analyze(trace)


def record(db, measured, tmp_path) -> int:
    trace, analysis = measured
    return record_run(db, trace, analysis, "gate", cwd=tmp_path)  # tmp_path: outside git, so no git calls


def one_line_bad_input(call, *message: str) -> BadInput:
    with pytest.raises(BadInput) as caught:
        call()
    problem = caught.value.problem
    assert "\n" not in problem and all(m in problem for m in message), problem
    return caught.value


@pytest.mark.parametrize("value", ["'one'", "NULL", "'1.0'", "X'00'"])
def test_a_schema_version_that_is_no_whole_number_is_bad_input(measured, tmp_path, value):
    db = tmp_path / "h.db"
    record(db, measured, tmp_path)
    with sqlite3.connect(db) as con:
        con.execute(f"UPDATE meta SET value = {value} WHERE key = 'schema_version'")
    con.close()
    one_line_bad_input(lambda: read_trend(db), "schema version")
    one_line_bad_input(lambda: record(db, measured, tmp_path), "schema version")


def test_corrupt_pages_are_bad_input(measured, tmp_path):
    db = tmp_path / "h.db"
    for _ in range(3):
        record(db, measured, tmp_path)
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    assert len(data) >= 4 * page  # a real database of several pages
    data[page:-page] = bytes(range(256)) * ((len(data) - 2 * page) // 256)  # keep page 1: it still opens
    db.write_bytes(bytes(data))
    one_line_bad_input(lambda: read_trend(db), "corrupt")
    one_line_bad_input(lambda: record(db, measured, tmp_path), "corrupt")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_bad_input(measured, tmp_path):
    journal = Path("/dev/full-journal")
    existed = journal.exists()
    try:
        err = one_line_bad_input(lambda: record(Path("/dev/full"), measured, tmp_path), "full")
        assert err.source == "/dev/full"
    finally:
        if not existed:  # SQLite keeps the journal of a failed commit; leave /dev as it was
            journal.unlink(missing_ok=True)


def test_last_beyond_int64_reads_every_run(measured, tmp_path):
    db = tmp_path / "h.db"
    record(db, measured, tmp_path)
    record(db, measured, tmp_path)
    assert [p.run_id for p in read_trend(db, last=2**70).of(WHOLE_TRACE)] == [1, 2]


@pytest.mark.parametrize("last", [0, -1, 2.5, True])
def test_last_that_is_no_positive_whole_number_is_bad_input(measured, tmp_path, last):
    db = tmp_path / "h.db"
    record(db, measured, tmp_path)
    assert one_line_bad_input(lambda: read_trend(db, last=last), "at least 1").source == "last"


def test_a_locked_database_says_locked(measured, tmp_path, monkeypatch):
    monkeypatch.setattr(history, "BUSY_TIMEOUT_S", 0.2, raising=False)  # wait briefly, not the default
    db = tmp_path / "h.db"
    record(db, measured, tmp_path)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for call in (lambda: read_trend(db), lambda: record(db, measured, tmp_path)):
            err = one_line_bad_input(call, "locked")
            assert "not an SQLite database" not in err.problem
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(read_trend(db).of(WHOLE_TRACE)) == 1


def _record_together(db_paths, measured, cwd, barrier, results) -> None:
    trace, analysis = measured
    for db in db_paths:
        barrier.wait(timeout=60)
        try:
            record_run(db, trace, analysis, "gate", cwd=cwd)
            results.put(None)
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the test
            results.put(f"{db}: {e!r}")


def test_processes_creating_the_same_new_database_all_record(measured, tmp_path):
    processes, trials = 8, 4
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold Arrow threads
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    dbs = [tmp_path / f"h{t}.db" for t in range(trials)]
    workers = [ctx.Process(target=_record_together, args=(dbs, measured, tmp_path, barrier, results))
               for _ in range(processes)]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in range(processes * trials)]
    for w in workers:
        w.join(timeout=30)
    assert [o for o in outcomes if o] == []
    for db in dbs:
        assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone() == (processes,)


@pytest.mark.parametrize("text, meaning", [("database is locked", "locked"),
                                           ("file is not a database", "not an SQLite"),
                                           ("database disk image is malformed", "corrupt")])
def test_sqlite_errors_are_told_apart_without_error_codes(text, meaning):
    # before Python 3.11, sqlite3 errors carry no sqlite_errorcode: the message must do
    assert meaning in history._sqlite_problem("h.db", sqlite3.OperationalError(text), "read").problem


# --- labels, scopes normalised by the ranges they matched, profiler changes, schema migration ---

def test_labels_default_from_run_json_and_profiler(runs, tmp_path):
    db = tmp_path / "h.db"
    for run in runs:
        trace = load([run])
        record_run(db, trace, analyze(trace, ["tbo"]), "analyze", cwd=tmp_path)
    trace = load([runs[1]])
    record_run(db, trace, analyze(trace), "analyze", cwd=tmp_path, label="my label")
    points = read_trend(db).of(WHOLE_TRACE)
    # run 1 has run.json (model/variant, no profiler: the Kineto files say torch); run 2 has none: its directory
    assert [p.label for p in points] == ["deepseek_v4_tbo/inline (torch)", "comm_stream (torch)", "my label"]
    assert [p.profiler for p in points] == ["torch"] * 3
    con = sqlite3.connect(db)
    assert con.execute("SELECT label, profiler FROM runs WHERE id = 1").fetchone() == (
        "deepseek_v4_tbo/inline (torch)", "torch")


def test_regexes_that_matched_the_same_ranges_are_one_scope(runs, tmp_path):
    db = tmp_path / "h.db"
    trace = load([runs[1]])
    for regex in ("^tbo/mb0$", "tbo/mb0"):
        record_run(db, trace, analyze(trace, [regex]), "analyze", cwd=tmp_path)
    trend = read_trend(db)
    assert trend.scopes() == [WHOLE_TRACE, "^tbo/mb0$"]
    assert [(p.run_id, p.regex, p.matched) for p in trend.of("^tbo/mb0$")] == [
        (1, "^tbo/mb0$", ("tbo/mb0",)), (2, "tbo/mb0", ("tbo/mb0",))]
    assert trend.regexes("^tbo/mb0$") == ["^tbo/mb0$", "tbo/mb0"]
    assert "also recorded as tbo/mb0" in trend_markdown(trend)
    stored = sqlite3.connect(db).execute("SELECT DISTINCT matched FROM metrics WHERE scope_kind = 'region'")
    assert stored.fetchall() == [('["tbo/mb0"]',)]


def test_one_regex_that_matched_other_ranges_is_another_scope(tmp_path):
    db = tmp_path / "h.db"
    for name in ("tbo/mb0", "tbo/mb1"):
        trace = load([tbo_run(tmp_path / name.replace("/", "_"), overlapped=True, region=name)])
        record_run(db, trace, analyze(trace, ["tbo/mb"]), "analyze", cwd=tmp_path)
    trace = load([tbo_run(tmp_path / "none", overlapped=True, region="other")])
    record_run(db, trace, analyze(trace, ["tbo/mb"]), "analyze", cwd=tmp_path)  # matched nothing: by regex
    assert read_trend(db).scopes() == [WHOLE_TRACE, "tbo/mb [matched: tbo/mb0]", "tbo/mb [matched: tbo/mb1]",
                                       "tbo/mb"]


def test_facts_without_ranges_record_no_matched_names(runs, tmp_path):
    """`analyze --db` records from the run's facts: without ranges (or rows carrying `matched`) the
    region is told apart by its regex alone, never wrongly merged."""
    db = tmp_path / "h.db"
    assert runner.invoke(app, ["analyze", str(runs[1]), "--region", "tbo", "--db", str(db)]).exit_code == 0
    [point] = read_trend(db).of("tbo")
    assert point.regex == "tbo" and point.matched in (None, ("tbo/mb0",))


def test_no_bare_delta_across_profilers(tmp_path):
    db = tmp_path / "h.db"
    for name, profiler, overlapped in (("a", "torch", False), ("b", "nsys", True), ("c", "nsys", True)):
        trace = load([tbo_run(tmp_path / name, overlapped=overlapped, manifest={"model": "m", "variant": name,
                                                                               "profiler": profiler})])
        record_run(db, trace, analyze(trace), "analyze", cwd=tmp_path)
    text = trend_markdown(read_trend(db))
    rows = [line for line in text.splitlines() if line.startswith("| #")]
    assert "profiler changed (torch → nsys)" in rows[1] and "pts" not in rows[1]
    assert "+0.0 pts" in rows[2] and "m/c (nsys)" in rows[2]


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs (id INTEGER PRIMARY KEY, recorded_at TEXT NOT NULL, command TEXT NOT NULL, cwd TEXT,
   git_commit TEXT, git_dirty INTEGER, overlapscope_version TEXT, model TEXT, variant TEXT, manifest TEXT,
   gate_passed INTEGER);
CREATE TABLE trace_files (run_id INTEGER NOT NULL REFERENCES runs(id), rank INTEGER, role TEXT NOT NULL,
   path TEXT NOT NULL, bytes INTEGER, sha256 TEXT NOT NULL);
CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id), rank INTEGER NOT NULL,
   scope_kind TEXT NOT NULL, scope TEXT NOT NULL, ranges INTEGER, comm_ns INTEGER NOT NULL, compute_ns INTEGER,
   overlap_ns INTEGER NOT NULL, overlap_pct REAL, exposed_comm_ns INTEGER NOT NULL);
CREATE TABLE gate_checks (run_id INTEGER NOT NULL REFERENCES runs(id), rank INTEGER, name TEXT NOT NULL,
   passed INTEGER NOT NULL, detail TEXT);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO runs (id, recorded_at, command, model, variant, manifest) VALUES
   (1, '2025-01-01T00:00:00+00:00', 'analyze', 'm', 'v', '{"model": "m", "variant": "v", "profiler": "nsys"}');
INSERT INTO metrics VALUES (1, 0, 'trace', '', NULL, 100, 200, 50, 50.0, 50),
                           (1, 0, 'region', 'tbo', 3, 100, NULL, 50, 50.0, 50);
"""


def test_a_version_1_database_is_read_and_migrated_when_written(runs, tmp_path):
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(V1_SCHEMA)
    con.close()
    [old] = read_trend(db).of("tbo")  # read as it is, not changed by reading
    assert (old.pooled_pct, old.label, old.profiler, old.matched) == (50.0, None, None, None)
    assert sqlite3.connect(db).execute("SELECT value FROM meta").fetchone() == ("1",)
    trace = load([runs[1]])
    record_run(db, trace, analyze(trace, ["tbo"]), "analyze", cwd=tmp_path)
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),) and SCHEMA_VERSION == 2
    assert con.execute("SELECT label, profiler FROM runs WHERE id = 1").fetchone() == ("m/v (nsys)", "nsys")
    trend = read_trend(db)
    # the old region row has no matched names: it stays the scope of its regex; the new one matched ranges
    assert trend.scopes() == [WHOLE_TRACE, "tbo", "tbo [matched: tbo/mb0]"]
    assert [p.run_id for p in trend.of(WHOLE_TRACE)] == [1, 2]
    assert "profiler changed (nsys → torch)" in trend_markdown(trend)
