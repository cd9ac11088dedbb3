"""The report as one self-contained HTML page: plotly.js inlined once, no network request.

Traces are untrusted input. Every string from a trace (kernel, range, region and file names,
run.json values) reaches the page through `esc` (html.escape) when it is markup, and through
`script_json` (JSON with <, >, &, U+2028 and U+2029 escaped) when it is data inside a <script>;
the Content-Security-Policy forbids every fetch, so even a missed string could not load anything.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import orjson

from ..overlap import RankRow, ScopeRow
from ..races.findings import Access
from ..report import COVERAGE_BINS, DETAIL_LIMIT, Report, race_span
from .format import duration, isolate_bidi, pct
from .html_figures import steps_figure, timeline_figure, trend_figure

TABLE_NAME_LIMIT = 300
TITLE_LIMIT = 2_000
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
       "font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")

_SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                   0x2028: "\\u2028", 0x2029: "\\u2029"}


def esc(value: object) -> str:
    """Markup-safe text; bidirectional overrides removed so no trace name reorders the page."""
    return html.escape(isolate_bidi(str(value)), quote=True)


def script_json(data: Any) -> str:
    """JSON that cannot end its <script> element or be read as markup: <, >, & (and the two line
    separators JavaScript once treated as newlines) only ever appear as \\u escapes. In JSON these
    characters can only occur inside strings, so escaping every occurrence keeps the data exact."""
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode().translate(_SCRIPT_ESCAPES)


def write_html(report: Report, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render_html(report), encoding="utf-8")
    return path


def render_html(report: Report) -> str:
    figures: list[tuple[str, dict[str, Any]]] = []
    body = [
        _header(report),
        _summary(report),
        _timelines(report, figures),
        _steps(report, figures),
        _races(report),
        _facts(report),
        _history(report, figures),
        _definitions(),
    ]
    data = "\n".join(f'<script type="application/json" class="figure" data-for="{esc(target)}">'
                     f"{script_json(spec)}</script>" for target, spec in figures)
    return _PAGE.format(title=esc(f"overlapscope: {report.title}"), csp=esc(CSP), style=_STYLE,
                        body="\n".join(body), plotly=_plotly_js(), figures=data, main=_MAIN_JS)


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    # plotly.min.js holds no "</script"; should a release ever do, "<\/" means the same in JS
    return get_plotlyjs().replace("</script", "<\\/script")


def _header(report: Report) -> str:
    files = "".join(f"<li><code>{esc(s)}</code></li>" for s in report.sources)
    nav = " · ".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("summary", "Summary"), ("timelines", "Timelines"), ("steps", "Profiler steps"), ("races", "Races"),
        ("run", "Run facts"), ("history", "History"), ("definitions", "Definitions")))
    return (f"<header><h1>overlapscope report: {esc(report.title)}</h1>"
            f"<details><summary>{len(report.sources)} trace file(s)</summary><ul class=\"files\">{files}</ul></details>"
            f"<nav>{nav}</nav></header>")


def _cell(field: str, value: int | float | None, shown: str) -> str:
    raw = "null" if value is None else repr(value)
    return f'<td class="num" data-field="{field}" data-value="{esc(raw)}">{esc(shown)}</td>'


def _summary(report: Report) -> str:
    a = report.analysis
    rank_rows = "".join(_rank_row(r) for r in a.ranks)
    out = [
        '<section id="summary"><h2>Summary</h2>',
        "<p>How much of each rank's communication ran while compute ran on the same GPU (any stream). "
        "<em>n/a</em>: no communication in the scope, so overlap is not applicable.</p>",
        '<table class="summary" id="ranks-table"><thead><tr><th>rank</th><th>device</th><th>comm</th><th>compute</th>'
        "<th>comm hidden</th><th>overlap</th><th>comm exposed</th><th>file</th></tr></thead>"
        f"<tbody>{rank_rows}</tbody></table>",
    ]
    if a.regions:
        rows = "".join(_scope_row(r, "region") for r in a.regions)
        out.append('<h3>Per region</h3><table class="summary" id="regions-table"><thead><tr><th>rank</th>'
                   "<th>region</th><th>ranges</th><th>comm</th><th>comm hidden</th><th>overlap</th>"
                   f"<th>comm exposed</th></tr></thead><tbody>{rows}</tbody></table>")
    if report.exposed_kernels:
        rows = "".join(
            f"<tr><td class=\"name\" title=\"{esc(_cut(k.name, TITLE_LIMIT))}\">{esc(_cut(k.name, TABLE_NAME_LIMIT))}</td>"
            f"<td class=\"num\">{k.ranks}</td><td class=\"num\">{k.count:,}</td><td class=\"num\">{duration(k.total_ns)}</td>"
            f"<td class=\"num\">{duration(k.exposed_ns)}</td>"
            f"<td class=\"num\">{pct(k.exposed_pct)}</td></tr>"
            for k in report.exposed_kernels)
        out.append("<h3>Communication kernels that stay exposed</h3><p>Per kernel name over all ranks, each kernel "
                   "against its own rank's compute. Concurrent comm kernels each count their own time, so the sums "
                   "can exceed the per-rank totals above.</p>"
                   '<table id="kernels-table"><thead><tr><th>kernel</th><th>ranks</th><th>launches</th><th>time</th>'
                   f"<th>exposed</th><th>exposed share</th></tr></thead><tbody>{rows}</tbody></table>")
    out.append("</section>")
    return "".join(out)


def _rank_row(r: RankRow) -> str:
    return (f'<tr data-rank="{r.rank}"><td class="num">{r.rank}</td><td class="num">{"-" if r.device is None else r.device}</td>'
            + _cell("comm_ns", r.comm_ns, duration(r.comm_ns)) + _cell("compute_ns", r.compute_ns, duration(r.compute_ns))
            + _cell("overlap_ns", r.overlap_ns, duration(r.overlap_ns)) + _cell("overlap_pct", r.overlap_pct, pct(r.overlap_pct))
            + _cell("exposed_comm_ns", r.exposed_comm_ns, duration(r.exposed_comm_ns))
            + f'<td class="name">{esc(Path(r.source).name)}</td></tr>')


def _scope_row(r: ScopeRow, kind: str) -> str:
    shown_pct = "no such range" if r.ranges == 0 else pct(r.overlap_pct)
    return (f'<tr data-rank="{r.rank}" data-{kind}="{esc(r.region)}"><td class="num">{r.rank}</td>'
            f'<td class="name">{esc(r.region)}</td><td class="num">{r.ranges}</td>'
            + _cell("comm_ns", r.comm_ns, duration(r.comm_ns)) + _cell("overlap_ns", r.overlap_ns, duration(r.overlap_ns))
            + _cell("overlap_pct", r.overlap_pct, shown_pct)
            + _cell("exposed_comm_ns", r.exposed_comm_ns, duration(r.exposed_comm_ns)) + "</tr>")


def _timelines(report: Report, figures: list[tuple[str, dict[str, Any]]]) -> str:
    out = ['<section id="timelines"><h2>Timelines</h2>',
           "<p>One lane per CUDA stream, then the communication hidden under compute and the communication left "
           "exposed, then the region and profiler-step host ranges. Drag to zoom, double-click to reset. "
           "Race findings are marked in red and link to their row below.</p>"]
    if report.decimation:
        notes = "".join(f"<li>{esc(n)}</li>" for n in report.decimation)
        out.append(f'<div class="note" id="decimation"><strong>Aggregated lanes.</strong> Lanes with more than '
                   f"{DETAIL_LIMIT:,} spans are drawn as the covered fraction of each of {COVERAGE_BINS:,} time bins, "
                   f"not span by span (zoom does not refine them):<ul>{notes}</ul></div>")
    for t in report.timelines:
        target = f"timeline-rank-{t.rank}"
        out.append(f'<h3 id="rank-{t.rank}">Rank {t.rank}</h3>'
                   + _plot(figures, target, timeline_figure(t, report.origin_ns), "timeline"))
    out.append("</section>")
    return "".join(out)


def _plot(figures: list[tuple[str, dict[str, Any]]], target: str, spec: dict[str, Any], kind: str = "") -> str:
    """The chart's empty div, sized as the chart will be (the page does not jump when charts are drawn
    lazily); the spec goes to the page's data blocks."""
    figures.append((target, spec))
    classes = f"plot {kind}".strip()
    return f'<div class="{classes}" id="{target}" style="height: {int(spec["layout"]["height"])}px"></div>'


def _steps(report: Report, figures: list[tuple[str, dict[str, Any]]]) -> str:
    steps = report.analysis.steps
    if not steps:
        return '<section id="steps"><h2>Profiler steps</h2><p>No <code>ProfilerStep#N</code> ranges in the trace.</p></section>'
    ranks = sorted({s.rank for s in steps})
    by_step: dict[str, dict[int, ScopeRow]] = {}
    for s in steps:
        by_step.setdefault(s.region, {})[s.rank] = s
    head = "".join(f"<th>rank {r}</th>" for r in ranks)
    rows = "".join(
        f'<tr data-step="{esc(name)}"><td class="name">{esc(name)}</td>'
        + "".join(_cell("overlap_pct", cells[r].overlap_pct, pct(cells[r].overlap_pct)) if r in cells else "<td>-</td>"
                  for r in ranks) + "</tr>"
        for name, cells in by_step.items())
    return ('<section id="steps"><h2>Profiler steps</h2><p>Overlap of the communication launched inside each '
            f"profiler step.</p>{_plot(figures, 'steps-plot', steps_figure(steps))}"
            f'<table id="steps-table"><thead><tr><th>step</th>{head}</tr></thead><tbody>{rows}</tbody></table></section>')


def _races(report: Report) -> str:
    out = ['<section id="races"><h2>Race findings</h2>']
    if not report.findings:
        out.append("<p>No race found.</p>")
    else:
        rows = []
        for n, f in enumerate(report.findings, start=1):
            x0, x1 = ((t - report.origin_ns) / 1e3 for t in race_span(f))
            link = (f'<a class="to-timeline" href="#rank-{f.rank}" data-plot="timeline-rank-{f.rank}" '
                    f'data-x0="{x0!r}" data-x1="{x1!r}">show on timeline</a>')
            rows.append(f'<tr id="race-{n}"><td class="num">{n}</td><td>{esc(f.rule)}</td><td>{esc(f.kind)}</td>'
                        f'<td class="num">{f.rank}</td><td class="name">{esc(_cut(f.buffer, TABLE_NAME_LIMIT))}</td>'
                        f"<td>{_access(f.first, report.origin_ns)}</td><td>{_access(f.second, report.origin_ns)}</td>"
                        f'<td class="hint">{esc(f.hint)}</td><td>{link}</td></tr>')
        out.append('<table id="races-table"><thead><tr><th>#</th><th>rule</th><th>kind</th><th>rank</th><th>buffer</th>'
                   "<th>first access</th><th>second access</th><th>fix</th><th></th></tr></thead>"
                   f"<tbody>{''.join(rows)}</tbody></table>")
    if report.race_notes:
        notes = "".join(f"<li>{esc(n)}</li>" for n in report.race_notes)
        out.append(f'<details class="note"><summary>What the race checker could not check '
                   f"({len(report.race_notes)})</summary><ul>{notes}</ul></details>")
    out.append("</section>")
    return "".join(out)


def _access(a: Access, origin_ns: int) -> str:
    where = "host" if a.stream < 0 else f"stream {a.stream}"
    region = f"<br>in {esc(_cut(a.region, TABLE_NAME_LIMIT))}" if a.region else ""
    return (f'<span class="name" title="{esc(_cut(a.name, TITLE_LIMIT))}">{esc(_cut(a.name, TABLE_NAME_LIMIT))}</span>'
            f"<br>{where}, {(a.start_ns - origin_ns) / 1e3:,.3f}–{(a.end_ns - origin_ns) / 1e3:,.3f} µs{region}")


def _facts(report: Report) -> str:
    if not report.facts:
        return '<section id="run"><h2>Run facts</h2><p>No run.json in this run.</p></section>'
    rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td class="name">{esc(v)}</td></tr>' for k, v in report.facts)
    return f'<section id="run"><h2>Run facts (run.json)</h2><table id="facts-table"><tbody>{rows}</tbody></table></section>'


def _history(report: Report, figures: list[tuple[str, dict[str, Any]]]) -> str:
    trend = report.trend
    if trend is None:
        return ('<section id="history"><h2>History</h2><p>Give <code>--db FILE</code> (a database written by '
                "<code>analyze --db</code> or <code>gate --db</code>) to draw the trend.</p></section>")
    if not trend.points:
        return '<section id="history"><h2>History</h2><p>The history database holds no run yet.</p></section>'
    rows = "".join(
        f"<tr><td>{esc(p.scope)}</td><td class=\"num\">#{p.run_id}</td><td>{esc(p.recorded_at)}</td>"
        f"<td><code>{esc((p.git_commit or '-')[:12])}</code></td><td class=\"num\">{pct(p.pooled_pct)}</td>"
        f"<td class=\"num\">{pct(p.worst_rank_pct)}</td><td class=\"num\">{duration(p.exposed_comm_ns)}</td></tr>"
        for scope in trend.scopes() for p in trend.of(scope)[-1:])
    return ('<section id="history"><h2>History</h2><p>Overlap over all ranks (hidden comm / comm) of each recorded '
            f"run.</p>{_plot(figures, 'history-plot', trend_figure(trend))}<h3>Latest run per scope</h3>"
            '<table id="history-table"><thead><tr><th>scope</th><th>run</th><th>recorded</th><th>commit</th>'
            f"<th>overlap, all ranks</th><th>worst rank</th><th>comm exposed</th></tr></thead><tbody>{rows}</tbody>"
            "</table></section>")


def _definitions() -> str:
    return (
        '<section id="definitions"><h2>Definitions</h2><ul>'
        "<li><b>comm</b>: NCCL/RCCL and custom all-reduce, DeepEP, NVSHMEM kernels (and configured patterns); "
        "<b>compute</b>: every other kernel; memcpy and memset are neither.</li>"
        "<li><b>Overlap</b> of a scope on a rank: C = union of the scope's comm kernels, K = union of all compute "
        "kernels of the rank (every stream, any scope); overlap = |C ∩ K| / |C|, <b>comm hidden</b> = |C ∩ K|, "
        "<b>comm exposed</b> = |C \\ K|. With |C| = 0 it is not applicable (n/a), never 0 or 100.</li>"
        "<li><b>Region</b>: host ranges (NVTX, record_function) whose name matches the regex; a kernel belongs to it "
        "when the host call that launched it starts inside one of them on the same thread.</li>"
        "<li>Times are exact nanoseconds; the timelines show microseconds since the run's first event.</li>"
        "</ul></section>")


def _cut(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[:limit] + f"… ({len(s):,} characters)"


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1400px;
       padding: 0 1.5rem 3rem; color: #222; }
h1 { font-size: 1.5rem; overflow-wrap: anywhere; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
nav a { margin: 0 .2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; vertical-align: top; text-align: left; }
thead th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.name, code { overflow-wrap: anywhere; word-break: break-word; }
td.name { max-width: 40rem; }
.note { background: #fff8e1; border: 1px solid #f0d98c; padding: .4rem .8rem; margin: .6rem 0; font-size: .9rem; }
.plot { width: 100%; }
tr:target { outline: 3px solid #e41a1c; }
ul.files { font-size: .85rem; }
"""

_MAIN_JS = """
"use strict";
(function () {
  var specs = {}, drawn = {};
  document.querySelectorAll("script.figure").forEach(function (node) {
    specs[node.getAttribute("data-for")] = node;
  });
  function draw(id) {
    if (!drawn[id]) {
      var spec = JSON.parse(specs[id].textContent);
      drawn[id] = Plotly.newPlot(document.getElementById(id), spec.data, spec.layout,
                                 {displaylogo: false, responsive: true});
    }
    return drawn[id];
  }
  // Charts are drawn as they come near the viewport, so a run with many ranks opens at once.
  if ("IntersectionObserver" in window) {
    var near = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) { near.unobserve(entry.target); draw(entry.target.id); }
      });
    }, {rootMargin: "300px"});
    Object.keys(specs).forEach(function (id) { near.observe(document.getElementById(id)); });
  } else {
    Object.keys(specs).forEach(draw);
  }
  document.querySelectorAll("a.to-timeline").forEach(function (link) {
    link.addEventListener("click", function () {
      var id = link.getAttribute("data-plot");
      var x0 = parseFloat(link.getAttribute("data-x0")), x1 = parseFloat(link.getAttribute("data-x1"));
      var pad = Math.max(x1 - x0, 1);
      draw(id).then(function () {
        return Plotly.relayout(document.getElementById(id), {"xaxis.range": [x0 - pad, x1 + pad]});
      });
    });
  });
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
<script>{plotly}</script>
{figures}
<script>{main}</script>
</body>
</html>
"""
