"""`overlapscope diff --html FILE`: a before/after page: the verdict, the per rank and scope table,
the movers, and for each rank the timeline of its representative (median) step before and after,
one above the other, as static SVG (offline, no script: it opens anywhere, also as a CI artifact).
"""

from __future__ import annotations

import html
from typing import Any

from ..diff import Diff, DiffRow
from .diff_verdict import verdict_sentence
from .format import duration, isolate_bidi, pct, points, signed_duration
from .svg import rank_svg

_STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td.name,th{text-align:left}h3{margin-top:28px}
.side{margin:4px 0 16px}.side h4{margin:0}"""


def esc(value: object) -> str:
    return html.escape(isolate_bidi(str(value)), quote=True)


def render_diff_html(diff: Diff, before: Any, after: Any) -> str:
    """The page, from the diff and the two runs' traces (for the timelines)."""
    label_before, label_after = diff.labels
    parts = [f"<!doctype html><html><head><meta charset='utf-8'>"
             f"<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
             f"img-src data:\"><title>overlapscope diff</title><style>{_STYLE}</style></head><body>",
             f"<h2>overlapscope diff: {esc(label_before)} → {esc(label_after)}</h2>",
             f"<p>{esc(verdict_sentence(diff, code=lambda s: s))}</p>", _table(diff.rows)]
    if diff.movers:
        rows = "".join(f"<tr><td>{m.rank}</td><td class='name'>{esc(m.path)}</td><td>{duration(m.exposed_before_ns)}"
                       f"</td><td>{duration(m.exposed_after_ns)}</td><td>{signed_duration(m.delta_ns)}</td></tr>"
                       for m in diff.movers)
        parts.append("<h3>Where exposed communication moved most</h3><table><tr><th>rank</th><th>range path</th>"
                     f"<th>exposed before</th><th>after</th><th>change</th></tr>{rows}</table>")
    regions = list(diff.regions)
    for rank in sorted({info.rank for info in before.ranks} & {info.rank for info in after.ranks}):
        parts.append(f"<h3>Rank {rank}: the representative (median) step</h3>")
        for label, trace in ((label_before, before), (label_after, after)):
            parts.append(f"<div class='side'><h4>{esc(label)}</h4>{rank_svg(trace, rank, regions)}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(rows: list[DiffRow]) -> str:
    body = "".join(
        f"<tr><td>{r.rank}</td><td class='name'>{esc(r.scope)}</td><td>{_pct(r.before)}</td><td>{_pct(r.after)}</td>"
        f"<td>{points(r.overlap_delta)}</td><td>{_ns(r.before, 'exposed_comm_ns')}</td>"
        f"<td>{_ns(r.after, 'exposed_comm_ns')}</td><td>{_ns(r.before, 'step_ns')}</td><td>{_ns(r.after, 'step_ns')}"
        "</td></tr>" for r in rows)
    return ("<table><tr><th>rank</th><th>scope</th><th>overlap before</th><th>after</th><th>change</th>"
            "<th>exposed before</th><th>after</th><th>GPU step before</th><th>after</th></tr>" + body + "</table>")


def _pct(side: Any) -> str:
    return "(no such rank)" if side is None else pct(side.overlap_pct)


def _ns(side: Any, name: str) -> str:
    value = None if side is None else getattr(side, name, None)
    return "-" if value is None else duration(int(value))
