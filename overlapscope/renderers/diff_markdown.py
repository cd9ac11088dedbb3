"""`overlapscope diff --markdown FILE`: a card to paste into a pull request (GitHub Markdown).

Every trace-derived string (scope regexes, range paths, race sides, run labels) is written as a code
span: it renders exactly as written (no emphasis, links or HTML), with pipes escaped for tables and
whitespace runs (newlines included) collapsed to one space.
"""

from __future__ import annotations

import re

from ..diff import Diff, DiffRow, GroupChange, Side
from .diff_verdict import verdict_sentence
from .format import duration, isolate_bidi, pct, plain, points, signed_duration

_TICKS = re.compile(r"`+")


def code(text: object) -> str:
    """A GitHub Markdown code span holding `text` literally, safe inside a table cell."""
    s = " ".join(isolate_bidi(plain(text)).split()) or " "
    fence = "`" * (max((len(m) for m in _TICKS.findall(s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or s.startswith(" ") else ""
    return f"{fence}{pad}{s}{pad}{fence}".replace("|", "\\|")


def render_diff_markdown(diff: Diff) -> str:
    """The card: a heading naming both runs, the verdict sentence, the per rank and scope table,
    the exposed tree's top movers and the race groups that appeared or went away."""
    before, after = diff.labels
    lines = [f"### overlapscope diff: {code(before)} → {code(after)}", "",
             verdict_sentence(diff, code).replace("|", "\\|"), "",
             "| rank | scope | overlap | exposed comm per step | exposed comm (trace) | GPU step time |",
             "|---:|---|---|---|---|---|"]
    for row in diff.rows:
        lines.append(f"| {row.rank} | {code(row.scope)} | {_overlap(row)} | "
                     f"{_change(row, 'exposed_per_step_ns')} | {_change(row, 'exposed_comm_ns')} | "
                     f"{_change(row, 'step_ns')} |")
    if diff.movers:
        lines += ["", "Where exposed communication moved most (range paths, whole trace):", "",
                  "| rank | range path | exposed before → after | change |", "|---:|---|---|---:|"]
        for m in diff.movers:
            lines.append(f"| {m.rank} | {code(m.path)} | {duration(m.exposed_before_ns)} → "
                         f"{duration(m.exposed_after_ns)} | {signed_duration(m.delta_ns)} |")
    changed = diff.new_groups + diff.gone_groups
    if changed:
        lines += ["", "Race groups that appeared or went away:", "",
                  "| status | rule | first | second | buffers | occurrences before → after |",
                  "|---|---|---|---|---|---|"]
        lines += [_group(g) for g in changed]
    lines += ["", f"<sub>Races: {_verdicts(diff)}. Overlap = hidden comm / comm; definitions in "
                  "overlapscope's docs/diff.md.</sub>"]
    return "\n".join(lines) + "\n"


def _overlap(row: DiffRow) -> str:
    out = f"{_pct(row.before)} → {_pct(row.after)}"
    return out + (f" ({points(row.overlap_delta)})" if row.overlap_delta is not None else "")


def _pct(side: Side | None) -> str:
    return "no such rank" if side is None else pct(side.overlap_pct, "n/a")


def _change(row: DiffRow, name: str) -> str:
    def one(side: Side | None) -> str:
        value = None if side is None else getattr(side, name)
        return "–" if value is None else duration(round(value))

    delta = row.delta(name)
    out = f"{one(row.before)} → {one(row.after)}"
    return out + (f" ({signed_duration(round(delta))})" if delta is not None else "")


def _group(g: GroupChange) -> str:
    return (f"| {'🆕 new' if g.status == 'new' else '✅ gone'} {g.kind} | {code(g.rule)} | {code(g.first)} | "
            f"{code(g.second)} | {code(g.buffer_family)} | {g.before} → {g.after} |")


def _verdicts(diff: Diff) -> str:
    before, after = (v or "unknown" for v in diff.race_verdicts)
    return f"{before} before, {after} after"
