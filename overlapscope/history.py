"""The history database: each `analyze --db` / `gate --db` run and its numbers, in SQLite.

Written through sqlite-utils, read back with SQL; the schema is documented in docs/history.md.
Every write (creating the schema, recording a run) is one `BEGIN IMMEDIATE` transaction that waits up
to BUSY_TIMEOUT_S for another writer, so CI jobs sharing one database, even a new one, all record.
Every SQLite failure (locked, corrupt, disk full, not SQLite) is one BadInput line, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import operator
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import BadInput
from .overlap import Analysis, percent
from .trace.model import Trace

if TYPE_CHECKING:
    from .gate import GateResult

SCHEMA_VERSION = 1
WHOLE_TRACE = "(whole trace)"  # the scope name the trend gives the per-rank whole-trace rows
BUSY_TIMEOUT_S = 10.0  # how long a command waits for another process writing the same database
_INT64_MAX = 2**63 - 1  # SQLite's largest integer: a larger --last means every run

_TABLES: dict[str, dict[str, Any]] = {
    "meta": {"columns": {"key": str, "value": str}, "pk": "key"},
    "runs": {
        "columns": {"id": int, "recorded_at": str, "command": str, "cwd": str, "git_commit": str, "git_dirty": int,
                    "overlapscope_version": str, "model": str, "variant": str, "manifest": str, "gate_passed": int},
        "pk": "id", "not_null": {"recorded_at", "command"},
    },
    "trace_files": {
        "columns": {"run_id": int, "rank": int, "role": str, "path": str, "bytes": int, "sha256": str},
        "foreign_keys": [("run_id", "runs", "id")], "not_null": {"run_id", "role", "path", "sha256"},
    },
    "metrics": {
        "columns": {"run_id": int, "rank": int, "scope_kind": str, "scope": str, "ranges": int, "comm_ns": int,
                    "compute_ns": int, "overlap_ns": int, "overlap_pct": float, "exposed_comm_ns": int},
        "foreign_keys": [("run_id", "runs", "id")],
        "not_null": {"run_id", "rank", "scope_kind", "scope", "comm_ns", "overlap_ns", "exposed_comm_ns"},
    },
    "gate_checks": {
        "columns": {"run_id": int, "rank": int, "name": str, "passed": int, "detail": str},
        "foreign_keys": [("run_id", "runs", "id")], "not_null": {"run_id", "name", "passed"},
    },
}


def record_run(db_path: str | Path, trace: Trace, analysis: Analysis, command: str,
               gate: GateResult | None = None, cwd: str | Path | None = None,
               now: datetime | None = None) -> int:
    """Append one run (its facts, file digests and every metric row) and return its id."""
    cwd = Path(cwd or Path.cwd())
    commit, dirty = git_state(cwd)
    manifest = trace.manifest or {}
    run = {
        "recorded_at": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "command": command, "cwd": str(cwd), "git_commit": commit, "git_dirty": dirty,
        "overlapscope_version": __version__, "model": _text(manifest.get("model")),
        "variant": _text(manifest.get("variant")),
        "manifest": json.dumps(manifest, sort_keys=True) if trace.manifest else None,
        "gate_passed": None if gate is None else int(gate.passed),
    }
    files = _file_rows(trace)
    db = _open(db_path, create=True)
    try:
        # one transaction: a run is recorded whole or not at all (close() rolls back an unfinished one)
        db.execute("BEGIN IMMEDIATE")
        run_id = db["runs"].insert(run).last_pk
        db["trace_files"].insert_all([{"run_id": run_id, **f} for f in files])
        db["metrics"].insert_all([{"run_id": run_id, **m} for m in _metric_rows(analysis)])
        if gate is not None:
            db["gate_checks"].insert_all([{"run_id": run_id, "rank": c.rank, "name": c.name,
                                           "passed": int(c.passed), "detail": c.detail} for c in gate.checks])
        db.execute("COMMIT")
    except sqlite3.Error as e:
        raise _sqlite_problem(db_path, e, "write") from None
    finally:
        db.close()
    return int(run_id)


@dataclass(frozen=True)
class TrendPoint:
    """One scope of one recorded run, pooled over its ranks."""

    run_id: int
    recorded_at: str
    git_commit: str | None
    command: str
    scope: str  # WHOLE_TRACE or a region regex
    ranks: int
    comm_ns: int
    overlap_ns: int
    exposed_comm_ns: int
    worst_rank_pct: float | None  # the lowest overlap of a rank with comm in this scope
    ranks_without_comm: int

    @property
    def pooled_pct(self) -> float | None:
        """Hidden comm over all ranks' comm: null when no rank had comm in the scope."""
        return percent(self.overlap_ns, self.comm_ns)


@dataclass
class Trend:
    points: list[TrendPoint]

    def scopes(self) -> list[str]:
        return list(dict.fromkeys(p.scope for p in self.points))

    def of(self, scope: str) -> list[TrendPoint]:
        return [p for p in self.points if p.scope == scope]

    def to_dict(self) -> dict[str, Any]:
        return {"scopes": {s: [{**p.__dict__, "overlap_pct": p.pooled_pct} for p in self.of(s)]
                           for s in self.scopes()}}


_TREND_SQL = """
SELECT r.id, r.recorded_at, r.git_commit, r.command,
       CASE m.scope_kind WHEN 'trace' THEN :whole ELSE m.scope END AS scope,
       COUNT(*), SUM(m.comm_ns), SUM(m.overlap_ns), SUM(m.exposed_comm_ns),
       MIN(m.overlap_pct), SUM(m.comm_ns = 0)
FROM runs r JOIN metrics m ON m.run_id = r.id
WHERE m.scope_kind IN ('trace', 'region') AND r.id IN (SELECT id FROM runs ORDER BY id DESC LIMIT :last)
GROUP BY r.id, m.scope_kind, m.scope
ORDER BY r.id, m.scope_kind DESC, m.scope
"""


def read_trend(db_path: str | Path, last: int = 50) -> Trend:
    """The whole-trace and region numbers of the last `last` runs, oldest first."""
    last = _last(last)
    if not Path(db_path).is_file():
        raise BadInput(db_path, "no such history database (record runs with `analyze --db` or `gate --db`)")
    db = _open(db_path, create=False)
    try:
        rows = db.execute(_TREND_SQL, {"whole": WHOLE_TRACE, "last": last}).fetchall()
    except sqlite3.Error as e:
        raise _sqlite_problem(db_path, e, "read") from None
    finally:
        db.close()
    return Trend([TrendPoint(*row[:5], ranks=row[5], comm_ns=row[6], overlap_ns=row[7], exposed_comm_ns=row[8],
                             worst_rank_pct=row[9], ranks_without_comm=row[10]) for row in rows])


def git_state(cwd: Path) -> tuple[str | None, int | None]:
    """(HEAD commit, 1 when tracked files changed) when `cwd` is in a git work tree, else (None, None)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    dirty = None if status.returncode != 0 else int(bool(status.stdout.strip()))
    return head.stdout.strip(), dirty


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _file_rows(trace: Trace) -> list[dict[str, Any]]:
    files = [(info.rank, "trace", info.source) for info in trace.ranks]
    files += [(rank, "execution-trace", path) for rank, path in sorted(trace.execution_traces.items())]
    rows, seen = [], set()
    for rank, role, path in files:
        if path in seen:  # an nsys file holds several ranks
            continue
        seen.add(path)
        try:
            rows.append({"rank": rank, "role": role, "path": path, "bytes": Path(path).stat().st_size,
                         "sha256": sha256_of(path)})
        except OSError as e:
            raise BadInput(path, f"cannot read it to record its digest: {e.strerror}") from None
    return rows


def _metric_rows(analysis: Analysis) -> list[dict[str, Any]]:
    rows = [{"rank": r.rank, "scope_kind": "trace", "scope": "", "ranges": None, "comm_ns": r.comm_ns,
             "compute_ns": r.compute_ns, "overlap_ns": r.overlap_ns, "overlap_pct": r.overlap_pct,
             "exposed_comm_ns": r.exposed_comm_ns} for r in analysis.ranks]
    for kind, scopes in (("region", analysis.regions), ("step", analysis.steps)):
        rows += [{"rank": s.rank, "scope_kind": kind, "scope": s.region, "ranges": s.ranges, "comm_ns": s.comm_ns,
                  "compute_ns": None, "overlap_ns": s.overlap_ns, "overlap_pct": s.overlap_pct,
                  "exposed_comm_ns": s.exposed_comm_ns} for s in scopes]
    return rows


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _last(last: Any) -> int:
    """A positive whole number of runs; beyond SQLite's integers it means every run."""
    try:
        if isinstance(last, bool):
            raise TypeError
        last = operator.index(last)
    except TypeError:
        last = 0
    if last < 1:
        raise BadInput("last", "must be a whole number of runs, at least 1")
    return min(last, _INT64_MAX)


def _open(db_path: str | Path, create: bool):
    """The database with every table in place; a file that is not an overlapscope history is an error.

    Creating the schema holds the write lock from the first look at the tables to the schema_version
    row, so a second process creating the same new file waits and then finds the whole schema."""
    import sqlite_utils

    try:
        db = sqlite_utils.Database(sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_S))
    except sqlite3.Error as e:
        raise _sqlite_problem(db_path, e, "open") from None
    except OSError as e:
        raise BadInput(db_path, f"cannot open: {e.strerror}") from None
    try:
        if create:
            db.execute("BEGIN IMMEDIATE")
        _check_schema(db, db_path, create)
        if create:
            db.execute("COMMIT")
    except sqlite3.Error as e:
        db.close()
        raise _sqlite_problem(db_path, e, "open") from None
    except BaseException:
        db.close()
        raise
    return db


def _check_schema(db: Any, db_path: str | Path, create: bool) -> None:
    """Create the schema in an empty database (when writing); else insist on ours, at our version."""
    existing = set(db.table_names())
    if not existing and create:
        _create_schema(db)
        return
    if "runs" not in existing:
        raise BadInput(db_path, "an SQLite database, but not an overlapscope history (no runs table)")
    version = _schema_version(db) if "meta" in existing else "unknown (no meta table)"
    if version != SCHEMA_VERSION:
        raise BadInput(db_path, f"history schema version {version}; this overlapscope reads version {SCHEMA_VERSION}")


def _schema_version(db: Any) -> int | str:
    """The recorded version as a number, or a short description of what is there instead."""
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return "unknown (no schema_version row)"
    value = row[0]
    if isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit()):
        return int(value)
    return "NULL" if value is None else repr(value)[:40]


def _create_schema(db: Any) -> None:
    for name, spec in _TABLES.items():
        db[name].create(spec["columns"], pk=spec.get("pk"), foreign_keys=spec.get("foreign_keys"),
                        not_null=spec.get("not_null"))
    db["meta"].insert({"key": "schema_version", "value": str(SCHEMA_VERSION)})
    db["metrics"].create_index(["run_id"])
    db["metrics"].create_index(["scope_kind", "scope"])


# SQLite's primary result codes (https://sqlite.org/rescode.html) that users can act on
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26
_SQLITE_MESSAGES = (("is locked", _SQLITE_BUSY), ("malformed", _SQLITE_CORRUPT), ("disk is full", _SQLITE_FULL),
                    ("not a database", _SQLITE_NOTADB))


def _sqlite_problem(db_path: str | Path, e: sqlite3.Error, doing: str) -> BadInput:
    """One line saying what the user can do about an SQLite failure: wait, free space, or use another file."""
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+; before it, only the message tells
    detail = " ".join(str(e).split())
    primary = code & 0xFF if code is not None else next(
        (c for text, c in _SQLITE_MESSAGES if text in detail), None)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        problem = (f"the history database is locked by another process (waited {BUSY_TIMEOUT_S:g} s); "
                   f"try again when it is done ({detail})")
    elif primary == _SQLITE_CORRUPT:
        problem = f"the history database is corrupt ({detail})"
    elif primary == _SQLITE_FULL:
        problem = f"cannot write the history database: the disk is full ({detail})"
    elif primary == _SQLITE_NOTADB:
        problem = f"not an SQLite database ({detail})"
    else:
        problem = f"cannot {doing} the history database: {detail}"
    return BadInput(db_path, problem)
