"""The history database: each `analyze --db` / `gate --db` run and its numbers, in SQLite.

Written through sqlite-utils, read back with SQL; the schema is documented in docs/history.md.
Every write (creating the schema, recording a run) is one `BEGIN IMMEDIATE` transaction that waits up
to BUSY_TIMEOUT_S for another writer, so CI jobs sharing one database, even a new one, all record.
Every SQLite failure (locked, corrupt, disk full, not SQLite) is one BadInput line, never a traceback.
"""

from __future__ import annotations

import dataclasses
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

SCHEMA_VERSION = 2  # 2: runs.label, runs.profiler, metrics.matched (version 1 databases are migrated)
READABLE_VERSIONS = (1, 2)  # read as they are (a version 1 database is migrated when next written)
WHOLE_TRACE = "(whole trace)"  # the scope name the trend gives the per-rank whole-trace rows
BUSY_TIMEOUT_S = 10.0  # how long a command waits for another process writing the same database
_INT64_MAX = 2**63 - 1  # SQLite's largest integer: a larger --last means every run

_TABLES: dict[str, dict[str, Any]] = {
    "meta": {"columns": {"key": str, "value": str}, "pk": "key"},
    "runs": {
        "columns": {"id": int, "recorded_at": str, "command": str, "cwd": str, "git_commit": str, "git_dirty": int,
                    "overlapscope_version": str, "model": str, "variant": str, "manifest": str, "gate_passed": int,
                    "label": str, "profiler": str},
        "pk": "id", "not_null": {"recorded_at", "command"},
    },
    "trace_files": {
        "columns": {"run_id": int, "rank": int, "role": str, "path": str, "bytes": int, "sha256": str},
        "foreign_keys": [("run_id", "runs", "id")], "not_null": {"run_id", "role", "path", "sha256"},
    },
    "metrics": {
        "columns": {"run_id": int, "rank": int, "scope_kind": str, "scope": str, "ranges": int, "comm_ns": int,
                    "compute_ns": int, "overlap_ns": int, "overlap_pct": float, "exposed_comm_ns": int,
                    "matched": str},
        "foreign_keys": [("run_id", "runs", "id")],
        "not_null": {"run_id", "rank", "scope_kind", "scope", "comm_ns", "overlap_ns", "exposed_comm_ns"},
    },
    "gate_checks": {
        "columns": {"run_id": int, "rank": int, "name": str, "passed": int, "detail": str},
        "foreign_keys": [("run_id", "runs", "id")], "not_null": {"run_id", "name", "passed"},
    },
}


# columns added after version 1, by ALTER TABLE when a version 1 database is written to
_ADDED = (("runs", "label", "TEXT"), ("runs", "profiler", "TEXT"), ("metrics", "matched", "TEXT"))
_PROFILER_OF_FORMAT = {"kineto": "torch", "nsys": "nsys"}


def record_run(db_path: str | Path, trace: Trace, analysis: Analysis, command: str,
               gate: GateResult | None = None, cwd: str | Path | None = None,
               now: datetime | None = None, label: str | None = None,
               matched: dict[tuple[int, str], tuple[str, ...]] | None = None) -> int:
    """Append one run (its facts, file digests and every metric row) and return its id.

    `label`: how the trend names the run (default `default_label`). `matched`: (rank, region regex)
    -> the distinct names of the host ranges the region matched; default: the regions' rows'
    `matched` attribute when they have one, else computed from `trace` when it holds its ranges
    (a trace of facts only, without events, records NULL: that region is then told apart by its
    regex alone)."""
    cwd = Path(cwd or Path.cwd())
    commit, dirty = git_state(cwd)
    manifest = trace.manifest or {}
    profiler = profiler_of(trace)
    run = {
        "recorded_at": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "command": command, "cwd": str(cwd), "git_commit": commit, "git_dirty": dirty,
        "overlapscope_version": __version__, "model": _text(manifest.get("model")),
        "variant": _text(manifest.get("variant")),
        "manifest": json.dumps(manifest, sort_keys=True) if trace.manifest else None,
        "gate_passed": None if gate is None else int(gate.passed),
        "label": label if label is not None else default_label(trace), "profiler": profiler,
    }
    if matched is None:
        matched = matched_ranges(trace, analysis)
    files = _file_rows(trace)
    db = _open(db_path, create=True)
    try:
        # one transaction: a run is recorded whole or not at all (close() rolls back an unfinished one)
        db.execute("BEGIN IMMEDIATE")
        run_id = db["runs"].insert(run).last_pk
        db["trace_files"].insert_all([{"run_id": run_id, **f} for f in files])
        db["metrics"].insert_all([{"run_id": run_id, **m} for m in _metric_rows(analysis, matched)])
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
    label: str | None = None  # the run's label (runs.label)
    profiler: str | None = None  # torch | nsys | ... (runs.profiler); None when not known
    regex: str | None = None  # the region regex this run recorded for the scope (None: whole trace)
    matched: tuple[str, ...] | None = None  # the range names it matched on any rank; None: not recorded

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

    def regexes(self, scope: str) -> list[str]:
        """The region regexes recorded as this one scope (several when they matched the same ranges)."""
        return list(dict.fromkeys(p.regex for p in self.of(scope) if p.regex is not None))

    def to_dict(self) -> dict[str, Any]:
        return {"scopes": {s: [{**p.__dict__, "matched": None if p.matched is None else list(p.matched),
                                "overlap_pct": p.pooled_pct} for p in self.of(s)]
                           for s in self.scopes()}}


# {label}, {profiler}, {matched}: the columns, or NULL in a version 1 database (read without migrating)
_TREND_SQL = """
SELECT r.id, r.recorded_at, r.git_commit, r.command,
       CASE m.scope_kind WHEN 'trace' THEN :whole ELSE m.scope END AS scope,
       COUNT(*), SUM(m.comm_ns), SUM(m.overlap_ns), SUM(m.exposed_comm_ns),
       MIN(m.overlap_pct), SUM(m.comm_ns = 0), {label}, {profiler}, m.scope_kind,
       COUNT({matched}), GROUP_CONCAT({matched}, char(10))
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
        have = {(t, c) for t in ("runs", "metrics") for c in _columns(db, t)}
        sql = _TREND_SQL.format(**{c: (f"{'r' if t == 'runs' else 'm'}.{c}" if (t, c) in have else "NULL")
                                   for t, c, _ in _ADDED})
        rows = db.execute(sql, {"whole": WHOLE_TRACE, "last": last}).fetchall()
    except sqlite3.Error as e:
        raise _sqlite_problem(db_path, e, "read") from None
    finally:
        db.close()
    return Trend(_normalised([TrendPoint(
        *row[:5], ranks=row[5], comm_ns=row[6], overlap_ns=row[7], exposed_comm_ns=row[8], worst_rank_pct=row[9],
        ranks_without_comm=row[10], label=row[11], profiler=row[12],
        regex=None if row[13] == "trace" else row[4],
        matched=None if row[13] == "trace" else _matched_union(row[14], row[5], row[15])) for row in rows]))


def _matched_union(known: int, ranks: int, texts: str | None) -> tuple[str, ...] | None:
    """The union of the ranks' matched names; None unless every rank recorded them."""
    if known != ranks or texts is None:
        return None
    names: set[str] = set()
    for text in texts.split("\n"):  # JSON text never holds a raw newline
        try:
            names.update(str(n) for n in json.loads(text))
        except (ValueError, TypeError):
            return None
    return tuple(sorted(names))


def _normalised(points: list[TrendPoint]) -> list[TrendPoint]:
    """Region points grouped into scopes by the ranges they matched (docs/history.md, "Scopes"):
    two regexes are one scope when each matched the same non-empty set of range names; a region
    whose matched names were not recorded, or that matched nothing, is a scope of its regex alone.
    A scope is named after its first regex (oldest run first); when two scopes would share a name
    (one regex that matched different ranges over time), each is followed by what it matched. Within
    one run, a scope keeps its first region row (two regexes of one run matching the same ranges
    measure the same thing)."""
    def key(p: TrendPoint) -> tuple:
        if p.regex is None:
            return ("trace",)
        return ("ranges", p.matched) if p.matched else ("regex", p.regex)

    first_regex: dict[tuple, str] = {}
    for p in points:
        first_regex.setdefault(key(p), WHOLE_TRACE if p.regex is None else p.regex)
    clash = {k for k, name in first_regex.items() if list(first_regex.values()).count(name) > 1}
    names = {k: (f"{name} [matched: {_names(k[1])}]" if k in clash and k[0] == "ranges" else name)
             for k, name in first_regex.items()}
    out, seen = [], set()
    for p in points:
        k = key(p)
        if (p.run_id, k) in seen:
            continue
        seen.add((p.run_id, k))
        out.append(dataclasses.replace(p, scope=names[k]))
    return out


def _names(names: tuple[str, ...], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def profiler_of(trace: Trace) -> str | None:
    """run.json's "profiler", else the profilers the rank files' formats tell (torch for Kineto)."""
    given = (trace.manifest or {}).get("profiler")
    if given:
        return str(given)
    found = sorted({_PROFILER_OF_FORMAT.get(r.format, r.format) for r in trace.ranks if r.format})
    return "+".join(found) or None


def default_label(trace: Trace) -> str | None:
    """ "model/variant (profiler)" from run.json (e.g. "deepseek_v4_tbo/comm-stream (nsys)"); without a
    run.json, the directory holding the trace files instead of model/variant; None when nothing is known."""
    m = trace.manifest or {}
    name = "/".join(str(m[k]) for k in ("model", "variant") if m.get(k))
    if not name and trace.ranks:
        parents = {Path(r.source).parent.name for r in trace.ranks if r.source}
        name = parents.pop() if len(parents) == 1 else ""
    profiler = profiler_of(trace)
    if not name:
        return profiler
    return f"{name} ({profiler})" if profiler else name


def matched_ranges(trace: Trace, analysis: Analysis) -> dict[tuple[int, str], tuple[str, ...]]:
    """(rank, regex) -> distinct names of the host ranges each region matched: from the region rows'
    `matched` when they carry it, else from the trace's ranges; empty when neither knows."""
    out = {(r.rank, r.region): tuple(sorted(set(r.matched))) for r in analysis.regions
           if getattr(r, "matched", None) is not None}
    missing = sorted({r.region for r in analysis.regions if (r.rank, r.region) not in out})
    if not missing or not len(trace.ranges):
        return out
    from .trace.links import ranges_matching
    from .trace.names import compile_regex

    ranges = trace.ranges
    for regex in missing:
        hit = ranges_matching(ranges, compile_regex(regex, "region"))
        by_rank = hit.groupby("rank", observed=True)["name"].agg(lambda s: tuple(sorted(set(map(str, s)))))
        for r in analysis.regions:
            if r.region == regex and (r.rank, regex) not in out:
                out[(r.rank, regex)] = by_rank.get(r.rank, ())
    return out


def _columns(db: Any, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall()}


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


def _metric_rows(analysis: Analysis, matched: dict[tuple[int, str], tuple[str, ...]] | None = None
                 ) -> list[dict[str, Any]]:
    matched = matched or {}
    rows = [{"rank": r.rank, "scope_kind": "trace", "scope": "", "ranges": None, "comm_ns": r.comm_ns,
             "compute_ns": r.compute_ns, "overlap_ns": r.overlap_ns, "overlap_pct": r.overlap_pct,
             "exposed_comm_ns": r.exposed_comm_ns, "matched": None} for r in analysis.ranks]
    for kind, scopes in (("region", analysis.regions), ("step", analysis.steps)):
        rows += [{"rank": s.rank, "scope_kind": kind, "scope": s.region, "ranges": s.ranges, "comm_ns": s.comm_ns,
                  "compute_ns": None, "overlap_ns": s.overlap_ns, "overlap_pct": s.overlap_pct,
                  "exposed_comm_ns": s.exposed_comm_ns,
                  "matched": _json_names(matched.get((s.rank, s.region))) if kind == "region" else None}
                 for s in scopes]
    return rows


def _json_names(names: tuple[str, ...] | None) -> str | None:
    return None if names is None else json.dumps(sorted(set(names)))


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
    if version not in READABLE_VERSIONS:
        raise BadInput(db_path, f"history schema version {version}; this overlapscope reads versions "
                                f"{', '.join(map(str, READABLE_VERSIONS))}")
    if version != SCHEMA_VERSION and create:
        _migrate(db)


def _migrate(db: Any) -> None:
    """Version 1 -> 2, inside the caller's write transaction: the new columns (NULL in old rows),
    and the old runs' label and profiler from their recorded run.json where there is one."""
    for table, column, kind in _ADDED:
        if column not in _columns(db, table):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    for row_id, manifest in db.execute("SELECT id, manifest FROM runs WHERE manifest IS NOT NULL").fetchall():
        try:
            m = json.loads(manifest)
        except ValueError:
            continue
        if not isinstance(m, dict):
            continue
        name = "/".join(str(m[k]) for k in ("model", "variant") if m.get(k))
        profiler = str(m["profiler"]) if m.get("profiler") else None
        label = (f"{name} ({profiler})" if profiler else name) if name else profiler
        db.execute("UPDATE runs SET label = ?, profiler = ? WHERE id = ?", [label, profiler, row_id])
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])


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
