"""The one sentence that says what a diff changed, for the console and the pull-request card."""

from __future__ import annotations

from ..diff import WHOLE_TRACE, Diff, DiffRow, pooled_overlap
from .format import duration


def _pooled(rows: list[DiffRow], side: str) -> float | None:
    """The scope's overlap pooled over ranks (diff.pooled_overlap)."""
    return pooled_overlap(rows, side)


def verdict_sentence(diff: Diff, code=lambda s: f"`{s}`") -> str:
    """One sentence: the overlap of the main scope (the first region, else the whole trace) pooled
    over ranks, before → after and on how many ranks it moved that way; the mean change of exposed
    comm per step per rank; the race groups. `code` formats a scope name (Markdown: a code span)."""
    scope = diff.regions[0] if diff.regions else WHOLE_TRACE
    rows = [r for r in diff.rows if r.scope == scope]
    name = code(scope) if scope != WHOLE_TRACE else "the whole trace"
    parts = [_overlap_clause(rows, name)]
    per_step = [r.delta("exposed_per_step_ns") for r in rows]
    per_step = [d for d in per_step if d is not None]
    if per_step:
        mean = sum(per_step) / len(per_step)
        verb = "fell" if mean < 0 else "rose" if mean > 0 else "stayed the same"
        amount = f" by {duration(round(abs(mean)))}" if mean else ""
        parts.append(f"exposed communication {verb}{amount} per step")
    parts.append(_race_clause(diff))
    return "; ".join(p for p in parts if p) + "."


def _overlap_clause(rows: list[DiffRow], name: str) -> str:
    before, after = _pooled(rows, "before"), _pooled(rows, "after")
    if before is None or after is None:
        what = lambda v: "n/a (no communication)" if v is None else f"{v:.1f} %"  # noqa: E731
        return f"Overlap of {name} went from {what(before)} to {what(after)}"
    deltas = [r.overlap_delta for r in rows]
    known = [d for d in deltas if d is not None]
    rose, fell = sum(d > 0 for d in known), sum(d < 0 for d in known)
    verb = "rose" if after > before else "fell" if after < before else "stayed"
    if verb == "stayed":
        return f"Overlap of {name} stayed at {after:.1f} %"
    agree = rose if verb == "rose" else fell
    where = "on every rank" if agree == len(rows) else f"on {agree} of {len(rows)} ranks"
    return f"Overlap of {name} {verb} from {before:.1f} % to {after:.1f} % {where}"


def _race_clause(diff: Diff) -> str:
    before, after = diff.race_verdicts
    new, gone = diff.new_groups, diff.gone_groups
    if new:
        out = f"{len(new)} new race group(s)"
    elif after == "not checked":
        out = "races not checked (no memory access known)"
    else:
        out = "no new race"
    if gone:
        out += f", {len(gone)} race group(s) gone"
    return out
