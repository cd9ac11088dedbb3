"""The report as one self-contained HTML page: plotly.js inlined once, no network request.

Traces are untrusted input. Every string from a trace (kernel, range, region and file names,
run.json values) reaches the page through `esc` (html.escape) when it is markup, and through
`script_json` (JSON with <, >, &, U+2028 and U+2029 escaped) when it is data inside a <script>;
the Content-Security-Policy forbids every fetch, so even a missed string could not load anything.
"""

from __future__ import annotations

import html
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from ..overlap import Analysis, RankRow, ScopeRow
from ..races.findings import Access, FindingGroup
from ..report import COVERAGE_BINS, DETAIL_LIMIT, VIEW_PAD, RankVerdict, Report, TreeNode, race_span
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
        _verdicts(report),
        _exposed_tree(report),
        _timelines(report, figures),
        _summary(report),
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
        ("verdict", "Verdict"), ("exposed", "Exposed tree"), ("timelines", "Timelines"), ("summary", "Summary"),
        ("steps", "Profiler steps"), ("races", "Races"),
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
    out += _families(a)
    out.append("</section>")
    return "".join(out)


def _families(a: Analysis) -> list[str]:
    """Communication per family, and the kernels counted as compute that look like communication."""
    out = []
    if a.families:
        rows = "".join(f'<tr><td class="num">{f.rank}</td><td class="name">{esc(f.family)}</td><td>{esc(f.op_class)}</td>'
                       f'<td class="num">{f.kernels:,}</td><td class="num">{duration(f.time_ns)}</td></tr>'
                       for f in a.families)
        out.append('<h3>Communication per family</h3><p><em>fused</em>: communication inside a compute kernel, '
                   "counted neither as communication nor as compute; <em>memory</em>: peer copies not counted "
                   '(--copy-comm counts them).</p><table id="families-table"><thead><tr><th>rank</th><th>family</th>'
                   f"<th>class</th><th>kernels</th><th>time</th></tr></thead><tbody>{rows}</tbody></table>")
    if a.suspects:
        rows = "".join(f'<tr><td class="num">{s.rank}</td><td class="name" title="{esc(_cut(s.kernel, TITLE_LIMIT))}">'
                       f'{esc(_cut(s.kernel, TABLE_NAME_LIMIT))}</td><td class="num">{s.kernels:,}</td>'
                       f'<td class="num">{duration(s.time_ns)}</td><td><code>{esc(s.comm_pattern)}</code></td></tr>'
                       for s in a.suspects)
        out.append("<h3>Counted as compute, but named like communication</h3><p>If they are communication, count "
                   'them with <code>--comm-pattern</code>.</p><table id="suspects-table"><thead><tr><th>rank</th>'
                   "<th>kernel</th><th>launches</th><th>time</th><th>--comm-pattern</th></tr></thead>"
                   f"<tbody>{rows}</tbody></table>")
    return out


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
    view, full = _us_pair(report.view, report.origin_ns), _us_pair(report.extent, report.origin_ns)
    out = [f'<section id="timelines" data-view="{view}" data-full="{full}"><h2>Timelines</h2>',
           "<p>One lane per CUDA stream, then the communication hidden under compute and the communication left "
           "exposed, then the regions and the profiler steps <em>on GPU time</em>: each range from the first to the "
           "last GPU op launched inside it. Drag to zoom: every rank's timeline follows; double-click shows the whole "
           "run. Race findings are marked in red; click a <em>race N</em> label to go to its row.</p>",
           _step_selector(report)]
    if report.decimation:
        notes = "".join(f"<li>{esc(n)}</li>" for n in report.decimation)
        out.append(f'<div class="note" id="decimation"><strong>Aggregated lanes.</strong> Lanes with more than '
                   f"{DETAIL_LIMIT:,} spans are drawn as the covered fraction of each of {COVERAGE_BINS:,} time bins; "
                   f"zoom into a window that holds at most {DETAIL_LIMIT:,} of their spans and they are drawn one by "
                   f"one:<ul>{notes}</ul></div>")
    for t in report.timelines:
        target = f"timeline-rank-{t.rank}"
        out.append(f'<h3 id="rank-{t.rank}">Rank {t.rank}</h3>'
                   + _plot(figures, target, timeline_figure(t, report.origin_ns, report.view), "timeline"))
    out.append("</section>")
    return "".join(out)


def _step_selector(report: Report) -> str:
    """A <select> of the profiler steps (their GPU span over all ranks) and the whole run; the page
    re-ranges every timeline to the chosen one."""
    full = _us_pair(report.extent, report.origin_ns)
    options = ['<option value="" disabled hidden>zoomed</option>']
    for s in report.steps:
        pad = int(s.span_ns * VIEW_PAD)
        value = _us_pair((s.start_ns - pad, s.end_ns + pad), report.origin_ns)
        median = s.name == report.representative
        options.append(f'<option value="{value}"{" selected" if median else ""}>{esc(_cut(s.name, 120))}, '
                       f'{duration(s.span_ns)}{" (median)" if median else ""}</option>')
    options.append(f'<option value="{full}"{"" if report.representative else " selected"}>whole run</option>')
    if report.representative:
        why = (f"The timelines open on <b>{esc(_cut(report.representative, 120))}</b>, the median of the "
               f"{len(report.steps)} profiler steps by GPU span (first to last GPU op launched in the step, all ranks).")
    else:
        why = "No profiler steps in the trace: the timelines open on the whole run."
    return (f'<div class="timeline-controls"><label>Show <select id="step-select">{"".join(options)}</select>'
            f"</label> <span>{why}</span></div>")


def _us_pair(ns: tuple[int, int], origin_ns: int) -> str:
    return ",".join(repr((t - origin_ns) / 1e3) for t in ns)


def _verdicts(report: Report) -> str:
    out = ['<section id="verdict"><h2>Verdict</h2><ul id="verdicts">']
    for ranks, scope, values, segments in verdict_sentences(report.verdicts):
        sentence = "".join(f"<code>{esc(t)}</code>" if code else esc(t) for t, code in segments)
        data = esc(orjson.dumps(values).decode())
        out.append(f'<li class="verdict" data-ranks="{",".join(map(str, ranks))}" '
                   f'data-scope="{esc("" if scope is None else scope)}" data-values="{data}">'
                   f'<span class="who">{esc(rank_label(ranks))}:</span> {sentence}</li>')
    out.append("</ul>")
    if report.excluded:
        shown = ", ".join(f"<code>{esc(x)}</code>" for x in report.excluded)
        out.append(f'<p id="excluded">Kernels left out of the timelines and of every total above and below '
                   f"(<code>--exclude-kernel</code>, the config's or run.json's <code>exclude_kernels</code>): "
                   f"{shown}.</p>")
    else:
        out.append('<p id="excluded">No kernel left out (<code>--exclude-kernel</code> not given).</p>')
    out.append("</section>")
    return "".join(out)


def verdict_segments(v: RankVerdict) -> list[tuple[str, bool]]:
    """The sentence of one rank and scope, as (text, is_code) pieces: trace strings are code pieces."""
    where = [("of the communication launched in ", False), (v.scope, True)] if v.scope is not None else [
        ("of the communication", False)]
    if v.scope is not None and v.ranges == 0:
        return [("no host range matches ", False), (v.scope, True), (": nothing to measure", False)]
    if v.overlap_pct is None:
        if v.scope is None:
            return [("no communication kernels: overlap is not applicable", False)]
        return [("no communication was launched in ", False), (v.scope, True),
                (": overlap is not applicable", False)]
    out = [(f"{pct(v.overlap_pct)} ", False), *where, (" is hidden; ", False)]
    per, unit = (v.steps, " per step") if v.steps else (1, "")
    if v.exposed_comm_ns == 0:
        return out + [("nothing stays exposed", False)]
    out.append((f"{duration(round(v.exposed_comm_ns / per))}{unit} stays exposed", False))
    if v.path and v.path_exposed_ns:
        out += [(f", {duration(round(v.path_exposed_ns / per))} of it in ", False), (v.path, True),
                (f" ({pct(v.path_hidden_pct)} hidden)", False)]
    return out


def verdict_text(segments: list[tuple[str, bool]]) -> str:
    """The sentence as plain text, code pieces in backticks."""
    return "".join(f"`{t}`" if code else t for t, code in segments)


def verdict_sentences(verdicts: list[RankVerdict]) -> list[tuple[tuple[int, ...], str | None, list[dict], list]]:
    """One sentence per scope and group of ranks whose sentences read the same (equal after rounding):
    (ranks, scope, each rank's numbers, the pieces)."""
    groups: dict[tuple[str | None, str], list[RankVerdict]] = {}
    for v in verdicts:
        groups.setdefault((v.scope, verdict_text(verdict_segments(v))), []).append(v)
    return [(tuple(v.rank for v in vs), scope, [asdict(v) for v in vs], verdict_segments(vs[0]))
            for (scope, _), vs in groups.items()]


def rank_label(ranks: tuple[int, ...]) -> str:
    """"rank 3", "ranks 0-3", "ranks 0-1, 5"."""
    ranks = tuple(sorted(ranks))
    runs: list[list[int]] = []
    for r in ranks:
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"rank {text}" if len(ranks) == 1 else f"ranks {text}"


def _exposed_tree(report: Report) -> str:
    out = ['<section id="exposed"><h2>Where the exposed communication is</h2>',
           "<p>The host ranges around the launch of every communication kernel, outermost first (like a profiler's "
           "call tree): per node the communication launched under it, how much of it no compute hid, and how much "
           "was hidden. Sums of kernel instances: two comm kernels that overlap each other both count, so a node "
           "can exceed the union-based totals of the summary.</p>"]
    if not report.exposed_tree:
        out.append("<p>No communication kernels in the trace.</p></section>")
        return "".join(out)
    ranks = list(dict.fromkeys(n.rank for n in report.exposed_tree))
    for i, rank in enumerate(ranks):
        nodes = [n for n in report.exposed_tree if n.rank == rank]
        left = report.tree_left_out.get(rank, 0)
        more = f'<p class="note">{left:,} nodes with less exposed time are not shown.</p>' if left else ""
        out.append(f'<details class="tree-rank" data-rank="{rank}"{" open" if i == 0 else ""}>'
                   f"<summary><b>rank {rank}</b></summary>{_tree_html(nodes)}{more}</details>")
    out.append("</section>")
    return "".join(out)


def _tree_html(nodes: list[TreeNode]) -> str:
    out: list[str] = []
    depths: list[int] = []  # depths of the open <details>
    for i, n in enumerate(nodes):
        while depths and depths[-1] >= n.depth:
            depths.pop()
            out.append("</div></details>")
        row = _tree_row(n)
        if i + 1 < len(nodes) and nodes[i + 1].depth > n.depth:
            out.append(f'<details class="node"{" open" if n.depth <= 1 else ""}><summary>{row}</summary>'
                       '<div class="kids">')
            depths.append(n.depth)
        else:
            out.append(f'<div class="leaf">{row}</div>')
    out += ["</div></details>"] * len(depths)
    return f'<div class="tree">{"".join(out)}</div>'


def _tree_row(n: TreeNode) -> str:
    name = "all communication" if n.depth == 0 else n.name
    hidden = pct(100.0 * n.hidden_ns / n.comm_ns if n.comm_ns else None)
    return (f'<span class="tree-node" data-rank="{n.rank}" data-path="{esc(n.path)}" data-comm="{n.comm_ns}" '
            f'data-exposed="{n.exposed_ns}" data-hidden="{n.hidden_ns}" title="{esc(_cut(n.path, TITLE_LIMIT))}">'
            f'<span class="tn name">{esc(_cut(name, TABLE_NAME_LIMIT))}</span> '
            f'<span class="tv"><b>{duration(n.exposed_ns)} exposed</b> of {duration(n.comm_ns)} comm, {hidden} hidden, '
            f"{n.instances:,} kernel{'s' if n.instances != 1 else ''}</span></span>")


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


RACE_VERDICTS = {"races": "Races found", "none": "No race among the checked accesses", "not checked": "Not checked"}


def _races(report: Report) -> str:
    verdict = report.race_verdict or ("races" if report.findings else "not checked")
    reason = report.race_reason or ("" if report.findings else "the race checker's verdict was not given")
    out = ['<section id="races"><h2>Races</h2>',
           f'<p id="race-verdict" class="race-verdict" data-verdict="{esc(verdict)}"><strong>'
           f"{esc(RACE_VERDICTS.get(verdict, verdict))}</strong>: {esc(reason)}</p>"]
    if report.race_groups:
        out.append("<h3>Groups (one root cause each)</h3>" + _race_groups(report.race_groups))
    if report.findings:
        rows = []
        for n, f in enumerate(report.findings, start=1):
            x0, x1 = ((t - report.origin_ns) / 1e3 for t in race_span(f))
            link = (f'<a class="to-timeline" href="#rank-{f.rank}" data-plot="timeline-rank-{f.rank}" '
                    f'data-x0="{x0!r}" data-x1="{x1!r}">show on timeline</a>')
            rows.append(f'<tr id="race-{n}"><td class="num">{n}</td><td>{esc(f.rule)}</td><td>{esc(f.kind)}</td>'
                        f'<td class="num">{f.rank}</td><td class="name">{esc(_cut(f.buffer, TABLE_NAME_LIMIT))}</td>'
                        f"<td>{_access(f.first, report.origin_ns)}</td><td>{_access(f.second, report.origin_ns)}</td>"
                        f'<td class="hint">{esc(f.hint)}</td><td>{link}</td></tr>')
        out.append("<h3>Every occurrence</h3>"
                   '<table id="races-table"><thead><tr><th>#</th><th>rule</th><th>kind</th><th>rank</th><th>buffer</th>'
                   "<th>first access</th><th>second access</th><th>fix</th><th></th></tr></thead>"
                   f"<tbody>{''.join(rows)}</tbody></table>")
    if report.race_notes:
        notes = "".join(f"<li>{esc(n)}</li>" for n in report.race_notes)
        out.append(f'<details class="note"><summary>What the race checker could not check '
                   f"({len(report.race_notes)})</summary><ul>{notes}</ul></details>")
    out.append("</section>")
    return "".join(out)


def _race_groups(groups: list[FindingGroup]) -> str:
    def side(s) -> str:
        where = "host" if s.stream < 0 else f"stream {s.stream}"
        return f'<span class="name">{esc(_cut(s.what, TABLE_NAME_LIMIT))}</span><br>{where}' if s.what else where

    rows = "".join(
        f'<tr id="race-group-{g.id}" data-group="{g.id}"><td class="num">{g.id}</td><td>{esc(g.rule)}</td>'
        f"<td>{esc(g.kind)}</td><td class=\"num\">{g.count:,} ({g.manifest:,} manifest, {g.count - g.manifest:,} latent)</td>"
        f"<td>{side(g.first)}</td><td>{side(g.second)}</td>"
        f'<td class="name">{esc(_cut(g.buffer_family, TABLE_NAME_LIMIT))}</td>'
        f"<td>{esc(', '.join(map(str, g.ranks)))}</td><td class=\"name\">{esc(_cut(', '.join(g.steps), 200))}</td>"
        f'<td class="hint">{esc(g.hint)}</td><td><a href="#race-{g.worst_position + 1}">race {g.worst_position + 1}</a></td></tr>'
        for g in groups)
    return ('<table id="race-groups-table"><thead><tr><th>group</th><th>rule</th><th>kind</th><th>occurrences</th>'
            "<th>first</th><th>second</th><th>buffers</th><th>ranks</th><th>steps</th><th>fix</th><th>worst</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>")


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
        "<li><b>comm</b>: kernels of a communication family (NCCL/RCCL, PyTorch symmetric memory, DeepEP, NVSHMEM, "
        "mori, custom all-reduces of vLLM/SGLang/TensorRT-LLM/aiter, MSCCL++, userbuffers) or of a configured "
        "pattern; <b>fused</b>: communication inside a compute kernel, counted as neither; <b>compute</b>: every "
        "other kernel; memcpy and memset are neither (peer copies are comm with --copy-comm).</li>"
        "<li><b>Overlap</b> of a scope on a rank: C = union of the scope's comm kernels, K = union of all compute "
        "kernels of the rank (every stream, any scope); overlap = |C ∩ K| / |C|, <b>comm hidden</b> = |C ∩ K|, "
        "<b>comm exposed</b> = |C \\ K|. With |C| = 0 it is not applicable (n/a), never 0 or 100.</li>"
        "<li><b>Region</b>: host ranges (NVTX, ROCTx, record_function) whose name matches the regex; a kernel belongs "
        "to it when the host call that launched it starts inside one of them <em>on the same thread</em>. A "
        "<b>profiler step</b> is a window of the whole process: a launch from any of its threads belongs to it.</li>"
        "<li><b>Races</b>: <em>manifest</em> when the two accesses overlapped in time or ran against the order the "
        "host issued them; <em>latent</em> when they ran in issue order without overlapping; <em>not checked</em> "
        "when no memory access is known.</li>"
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
#verdicts { font-size: 1.05rem; line-height: 1.5; } #verdicts .who { font-weight: 600; }
#verdicts code, .tree code { background: #f4f4f4; padding: 0 .2rem; }
.timeline-controls { position: sticky; top: 0; z-index: 5; background: #fff; padding: .4rem 0; font-size: .9rem;
                     border-bottom: 1px solid #eee; }
.tree { font-size: .9rem; } .tree .kids { margin-left: 1.3rem; border-left: 1px dotted #ccc; padding-left: .3rem; }
.tree .leaf { margin-left: 1.05rem; } .tree .tv { color: #555; } .tree-node .tn { font-family: ui-monospace, monospace; }
.race-verdict { font-size: 1.05rem; }
.race-verdict[data-verdict="races"] strong { color: #c00; }
.race-verdict[data-verdict="not checked"] strong { color: #a60; }
ul.files { font-size: .85rem; }
"""

_MAIN_JS = """
"use strict";
(function () {
  var specs = {}, drawn = {}, timelines = {};
  var config = {displaylogo: false, responsive: true};
  var section = document.getElementById("timelines");
  var select = document.getElementById("step-select");
  function pair(text) { return text ? text.split(",").map(parseFloat) : null; }
  var full = section ? pair(section.getAttribute("data-full")) : null;
  var view = section ? pair(section.getAttribute("data-view")) : null;  // every timeline's x range (µs)
  document.querySelectorAll("script.figure").forEach(function (node) {
    specs[node.getAttribute("data-for")] = node;
  });

  function draw(id) {
    if (!drawn[id]) {
      var spec = JSON.parse(specs[id].textContent), gd = document.getElementById(id);
      if (spec.timeline) {
        timelines[id] = spec;
        drawn[id] = render(id).then(function () { hook(id, gd); return gd; });
      } else {
        drawn[id] = Plotly.newPlot(gd, spec.data, spec.layout, config);
      }
    }
    return drawn[id];
  }

  // ---- a timeline in the current view: binned lanes in detail when few spans are in view ----
  function lowerBound(a, x) {
    var lo = 0, hi = a.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (a[mid] < x) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function decode(track) {
    if (track.starts) return;
    var n = track.s.length, s = new Float64Array(n), e = new Float64Array(n), acc = 0, widest = 0;
    for (var i = 0; i < n; i++) {
      acc += track.s[i];
      s[i] = track.t0 + acc / 1e3;
      e[i] = s[i] + track.w[i] / 1e3;
      if (track.w[i] > widest) widest = track.w[i];
    }
    track.starts = s; track.ends = e; track.widest = widest / 1e3;
  }
  function inView(track, r) {
    decode(track);
    return [lowerBound(track.starts, r[0] - track.widest), lowerBound(track.starts, r[1])];
  }
  function duration(ns) {
    var a = Math.abs(ns);
    if (a < 1e3) return ns + " ns";
    if (a < 1e6) return (ns / 1e3).toFixed(1) + " \\u00b5s";
    if (a < 1e9) return (ns / 1e6).toFixed(2) + " ms";
    return (ns / 1e9).toFixed(3) + " s";
  }
  function detailOf(lane, r, limit) {
    if (lane.windows && !lane.windows.some(function (w) { return w[0] <= r[0] && r[1] <= w[1]; })) return false;
    var count = 0;
    lane.tracks.forEach(function (t) { var b = inView(t, r); count += b[1] - b[0]; });
    return count <= limit;
  }
  function spansTrace(track, base, lane, r) {
    var b = inView(track, r), x = [], y = [], text = [];
    for (var i = b[0]; i < b[1]; i++) {
      if (track.ends[i] < r[0]) continue;
      var name = track.names[track.n[i]], label = name ? name + "<br>" + duration(track.w[i]) : duration(track.w[i]);
      x.push(track.starts[i], track.ends[i], null);
      y.push(lane.lane, lane.lane, null);
      text.push(label, label, null);
    }
    return {type: "scatter", mode: "lines", x: x, y: y, text: text, hovertemplate: base.hovertemplate,
            line: {color: base.line.color, width: 14, simplify: false}, name: base.name,
            legendgroup: base.legendgroup, showlegend: base.showlegend, connectgaps: false, meta: "detail"};
  }
  function raceLabels(spec, r, gd) {
    var t = spec.timeline, width = Math.max((gd.clientWidth || 1000) - 120, 100), right = [], out = [];
    var last = null;
    spec.numbers = [];
    t.races.filter(function (m) { return m.x1 >= r[0] && m.x0 <= r[1]; })
      .sort(function (a, b) { return a.x0 - b.x0 || a.n - b.n; })
      .forEach(function (m) {
        var x = Math.max(m.x0, r[0]), px = (x - r[0]) / (r[1] - r[0]) * width, text = "race " + m.n;
        var level = -1;
        for (var k = 0; k < t.levels; k++) { if (!(right[k] > px)) { level = k; break; } }
        if (level < 0) {  // no free row here: counted on the last label of the top row
          if (last) { last.more += 1; last.text = "race " + last.n + " +" + last.more; right[t.levels - 1] += 8; }
          return;
        }
        right[level] = px + 7 * text.length + 14;
        var label = {x: x, y: 1, xref: "x", yref: "paper", xanchor: "left", yanchor: "bottom",
                     yshift: level * t.row, showarrow: false, text: text, font: {color: "#e41a1c"},
                     bgcolor: "rgba(255,255,255,0.9)", captureevents: true,
                     hovertext: "race " + m.n + ": go to its row", n: m.n, more: 0};
        if (level === t.levels - 1) last = label;
        out.push(label);
      });
    return out.map(function (a) {
      spec.numbers.push(a.n);
      return {x: a.x, y: a.y, xref: a.xref, yref: a.yref, xanchor: a.xanchor, yanchor: a.yanchor, yshift: a.yshift,
              showarrow: false, text: a.text, font: a.font, bgcolor: a.bgcolor, captureevents: true,
              hovertext: a.hovertext};
    });
  }
  function render(id) {
    var spec = timelines[id], gd = document.getElementById(id), r = view.slice();
    var data = spec.data.map(function (trace, i) {
      var shown = gd.data && gd.data[i] && gd.data[i].visible;  // keep legend clicks
      return shown === undefined ? trace : Object.assign({}, trace, {visible: shown});
    });
    spec.timeline.detail.forEach(function (lane) {
      if (!detailOf(lane, r, spec.timeline.limit)) return;
      lane.tracks.forEach(function (track) {
        var trace = spansTrace(track, spec.data[track.trace], lane, r);
        if (data[track.trace].visible !== undefined) trace.visible = data[track.trace].visible;
        data[track.trace] = trace;
      });
    });
    var layout = Object.assign({}, spec.layout, {
      xaxis: Object.assign({}, spec.layout.xaxis, {range: r, autorange: false}),
      annotations: raceLabels(spec, r, gd)});
    return Plotly.react(gd, data, layout, config);
  }

  // ---- one view for every timeline: zoom, step selector, race links ----
  var pending = null;
  function setView(r) {
    view = [+r[0], +r[1]];
    if (select) {
      var match = Array.prototype.find.call(select.options, function (o) {
        var v = pair(o.value); return v && Math.abs(v[0] - view[0]) < 1e-6 && Math.abs(v[1] - view[1]) < 1e-6;
      });
      select.value = match ? match.value : "";
    }
    if (pending) return pending;
    // after the event that changed it: plotly is still inside its own relayout
    pending = new Promise(function (done) { setTimeout(done, 0); }).then(function () {
      pending = null;
      return Promise.all(Object.keys(timelines).map(render));
    });
    return pending;
  }
  function goToRace(n) {
    var row = document.getElementById("race-" + n);
    if (!row) return;
    location.hash = "race-" + n;
    row.scrollIntoView({block: "center"});
  }
  function hook(id, gd) {
    gd.on("plotly_relayout", function (ev) {
      if ("xaxis.range[0]" in ev) setView([ev["xaxis.range[0]"], ev["xaxis.range[1]"]]);
      else if (ev["xaxis.range"]) setView(ev["xaxis.range"]);
      else if (ev["xaxis.autorange"]) setView(full);
    });
    gd.on("plotly_clickannotation", function (ev) {
      var n = (timelines[id].numbers || [])[ev.index];
      if (n) goToRace(n);
    });
  }
  if (select) select.addEventListener("change", function () { if (select.value) setView(pair(select.value)); });

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
      setView([x0 - pad, x1 + pad]);
      draw(id);
    });
  });
  window.overlapscope = {setView: setView, view: function () { return view.slice(); }, draw: draw};
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
