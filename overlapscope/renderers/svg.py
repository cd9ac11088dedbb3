"""A static, self-contained SVG of one rank's timeline: what a notebook, nbconvert HTML and GitHub
can show without a kernel and without JavaScript (the report's interactive figure needs both).

The same lanes as the report (`report.rank_timeline`): one per stream with its compute, comm and
memory spans, then "comm hidden" and "comm exposed", then the region and profiler-step lanes (on
GPU time), race findings as red bands; an x axis in µs since `origin_ns`; a legend.

A span `[s, e)` inside the window `[lo, hi)` is a rectangle from `x(s)` to `x(e)`, where
`x(t) = LABEL_W + (t - lo) * (width - LABEL_W - RIGHT) / (hi - lo)`; spans are clipped to the
window and drawn at least MIN_SPAN_PX wide. A binned track (more than `report.DETAIL_LIMIT` spans)
is drawn span by span when its embedded detail covers the window and holds at most DETAIL_LIMIT
spans there, else as bars: each bin's covered fraction of the lane's height, stacked per lane.

Every string from a trace or a user (kernel, range and lane names) goes through `format.plain`
(control characters and bidirectional overrides out), characters XML cannot hold are replaced, and
the rest is escaped (`xml.sax.saxutils.escape`); nothing is ever a script, a link or an event
handler. No dependency beyond numpy.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence
from xml.sax.saxutils import escape

import numpy as np

from ..report import DETAIL_LIMIT, VIEW_PAD, RankTimeline, StepWindow, Track, _median_step
from .format import duration, plain
from .html_figures import COLORS, LEGEND

LABEL_W = 190  # px: the lane label column; the plot starts here
RIGHT = 16  # px: right margin
TITLE_H = 24  # px above the first lane
LANE_H = 24  # px per lane
BAND_H = 16  # px: the height of a span's bar inside its lane
AXIS_H = 40  # px: ticks, tick labels and the axis title
LEGEND_ROW = 18  # px
FONT = 11  # px
CHAR_W = 6.2  # px: a rough width of one character at FONT, for laying out the legend
MIN_SPAN_PX = 0.5
LABEL_CHARS = 30  # lane labels longer than this are shortened (full text in the tooltip)
NAME_LIMIT = 160  # span names in tooltips
TICKS = 8  # about this many x ticks
RACE_COLOR = "#e41a1c"
RACE_LABEL_PX = 60  # race marks closer than this share one label ("race 5 +1")
_ATTR = {'"': "&quot;", "'": "&apos;"}
# characters XML 1.0 cannot hold at all (plain() already replaced the C0/C1 controls)
_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")


def esc(value: object, limit: int | None = None) -> str:
    """A trace or user string as SVG text or attribute content: inert, valid XML."""
    s = _NOT_XML.sub("?", plain(value))
    if limit is not None and len(s) > limit:
        s = s[:limit] + f"… ({len(s):,} characters)"
    return escape(s, _ATTR)


def timeline_svg(timeline: RankTimeline, origin_ns: int, width: int = 960, start_ns: int | None = None,
                 end_ns: int | None = None, *, title: str | None = None, origin_label: str = "origin") -> str:
    """One rank's timeline as an SVG document (a string). The window `[start_ns, end_ns)` defaults to
    the timeline's extent; x is in µs since `origin_ns` (`origin_label` names it on the axis)."""
    width = int(width)
    if width < LABEL_W + RIGHT + 100:
        raise ValueError(f"width {width} px leaves no room for the plot (at least {LABEL_W + RIGHT + 100})")
    lo = int(timeline.start_ns if start_ns is None else start_ns)
    hi = int(timeline.end_ns if end_ns is None else end_ns)
    hi = max(hi, lo + 1)
    x0, plot_w = LABEL_W, width - LABEL_W - RIGHT
    scale = plot_w / (hi - lo)

    def xs(ns: np.ndarray | int) -> np.ndarray:
        return x0 + (np.asarray(ns, dtype=np.int64) - lo) * scale  # int64 difference first: epoch ns stay exact

    body: list[str] = []
    kinds: list[str] = []
    notes: list[str] = []
    lanes_bottom = TITLE_H + LANE_H * len(timeline.lanes)
    for i, lane in enumerate(timeline.lanes):
        top = TITLE_H + i * LANE_H
        bar_y = top + (LANE_H - BAND_H) / 2
        if i % 2:
            body.append(f'<rect x="0" y="{_n(top)}" width="{width}" height="{LANE_H}" fill="#f4f4f4"/>')
        label = esc(lane.label)
        short = esc(lane.label, LABEL_CHARS) if len(plain(lane.label)) > LABEL_CHARS else label
        body.append(f'<text x="{x0 - 6}" y="{_n(top + LANE_H / 2 + FONT * 0.35)}" text-anchor="end" '
                    f'data-lane="{i}"><title>{label}</title>{short}</text>')
        stacked: np.ndarray | None = None
        for track in lane.tracks:
            spans = _spans_in(track, lo, hi)
            if spans is None:  # bars of the covered fraction per bin
                part, stacked = _coverage(track, lo, hi, xs, bar_y, stacked)
                if part:
                    notes.append(f"{plain(lane.label)}: {track.count:,} {LEGEND[track.kind]} spans drawn as the "
                                 f"busy fraction of bins of {duration(_bin_ns(track))}")
            else:
                part = _rects(*spans, lo, hi, xs, bar_y)
            if part:
                body.append(f'<g fill="{COLORS[track.kind]}" data-lane="{i}" data-kind="{track.kind}">'
                            + "".join(part) + "</g>")
                if track.kind not in kinds:
                    kinds.append(track.kind)
    races = [m for m in timeline.races if m.end_ns >= lo and m.start_ns < hi]
    labels: list[list[Any]] = []  # [x, first number, how many more]: marks closer than RACE_LABEL_PX share one
    for mark in sorted(races, key=lambda m: (m.start_ns, m.number)):
        a, b = xs(max(mark.start_ns, lo)), xs(min(max(mark.end_ns, mark.start_ns), hi))
        body.append(f'<rect x="{_n(a)}" y="{TITLE_H}" width="{_n(max(b - a, MIN_SPAN_PX))}" '
                    f'height="{lanes_bottom - TITLE_H}" fill="{RACE_COLOR}" fill-opacity="0.15" '
                    f'stroke="{RACE_COLOR}" stroke-width="1" data-race="{mark.number}">'
                    f'<title>race finding {mark.number}: {duration(mark.end_ns - mark.start_ns)}</title></rect>')
        if labels and a - labels[-1][0] < RACE_LABEL_PX:
            labels[-1][2] += 1
        else:
            labels.append([a, mark.number, 0])
    for a, number, more in labels:
        body.append(f'<text x="{_n(a)}" y="{TITLE_H - 3}" fill="{RACE_COLOR}" font-size="{FONT - 1}">'
                    f'race {number}{f" +{more}" if more else ""}</text>')
    axis, axis_h = _axis(lo, hi, origin_ns, xs, lanes_bottom, width, origin_label)
    legend_items = [(COLORS[k], LEGEND[k]) for k in COLORS if k in kinds] + ([(RACE_COLOR, "race finding")]
                                                                             if races else [])
    legend, legend_h = _legend(legend_items, notes, lanes_bottom + axis_h, width)
    height = lanes_bottom + axis_h + legend_h + 6
    head = esc(title if title is not None else f"rank {timeline.rank}")
    return "".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{_n(height)}" '
        f'viewBox="0 0 {width} {_n(height)}" font-family="sans-serif" font-size="{FONT}" role="img" '
        f'data-rank="{int(timeline.rank)}">',
        f"<title>{head}</title>",
        f'<rect x="0" y="0" width="{width}" height="{_n(height)}" fill="#ffffff"/>',
        f'<text x="4" y="{FONT + 3}" font-weight="bold">{head}</text>',
        *body, *axis, *legend, "</svg>",
    ])


def _spans_in(track: Track, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, list[str] | None] | None:
    """The track's spans that touch [lo, hi) with their names; None: draw its bins instead."""
    if track.starts is None or track.ends is None:
        return None
    if track.binned:
        covered = track.detail_complete or any(a <= lo and hi <= b for a, b in track.detail_windows)
        if not covered:
            return None
    starts, ends = np.asarray(track.starts, np.int64), np.asarray(track.ends, np.int64)
    on = (starts < hi) & ((ends > lo) | ((ends == starts) & (starts >= lo)))
    idx = np.flatnonzero(on)
    if track.binned and idx.size > DETAIL_LIMIT:
        return None
    if track.binned:
        table = track.name_table or []
        names = ([str(table[c]) for c in np.asarray(track.detail_codes)[idx]]
                 if track.detail_codes is not None and table else None)
    else:
        names = None if track.names is None else [track.names[j] for j in idx]
    return starts[idx], ends[idx], names


def _rects(starts: np.ndarray, ends: np.ndarray, names: list[str] | None, lo: int, hi: int, xs: Any,
           bar_y: float) -> list[str]:
    """One rectangle per span, clipped to [lo, hi), with its name and duration as the tooltip."""
    if not starts.size:
        return []
    left, right = xs(np.maximum(starts, lo)), xs(np.minimum(ends, hi))
    out = []
    for j in range(starts.size):
        a = float(left[j])
        tip = duration(int(ends[j] - starts[j]))
        if names is not None and names[j]:
            tip = f"{esc(names[j], NAME_LIMIT)} · {tip}"
        out.append(f'<rect x="{_n(a)}" y="{_n(bar_y)}" width="{_n(max(float(right[j]) - a, MIN_SPAN_PX))}" '
                   f'height="{BAND_H}"><title>{tip}</title></rect>')
    return out


def _coverage(track: Track, lo: int, hi: int, xs: Any, bar_y: float,
              stacked: np.ndarray | None) -> tuple[list[str], np.ndarray | None]:
    """Bars of each bin's covered fraction, stacked on what the lane's earlier binned tracks drew."""
    if track.edges is None or track.covered is None:
        return [], stacked
    edges = np.asarray(track.edges, np.int64)
    covered = np.asarray(track.covered, np.float64)
    below = np.zeros(covered.size) if stacked is None or stacked.size != covered.size else stacked
    out = []
    for j in np.flatnonzero((covered > 0) & (edges[1:] > lo) & (edges[:-1] < hi)):
        a, b = float(xs(max(int(edges[j]), lo))), float(xs(min(int(edges[j + 1]), hi)))
        h = BAND_H * float(covered[j])
        y = bar_y + BAND_H * (1 - float(below[j])) - h
        out.append(f'<rect x="{_n(a)}" y="{_n(y)}" width="{_n(max(b - a, MIN_SPAN_PX))}" height="{_n(h)}">'
                   f"<title>{100 * covered[j]:.1f} % busy</title></rect>")
    return out, below + covered


def _bin_ns(track: Track) -> int:
    edges = np.asarray(track.edges, np.int64)
    return int(edges[-1] - edges[0]) // max(edges.size - 1, 1)


def _axis(lo: int, hi: int, origin_ns: int, xs: Any, y: int, width: int, origin_label: str) -> tuple[list[str], int]:
    """The x axis under the lanes: µs since origin_ns, about TICKS ticks at 1/2/5 × 10^k µs."""
    out = [f'<line x1="{LABEL_W}" y1="{y}" x2="{width - RIGHT}" y2="{y}" stroke="#333333" stroke-width="1"/>']
    a_us, b_us = (lo - origin_ns) / 1e3, (hi - origin_ns) / 1e3
    raw = (b_us - a_us) / TICKS
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    k = math.ceil(a_us / step - 1e-9)
    while k * step <= b_us + 1e-12:
        at_ns = origin_ns + round(k * step * 1e3)
        if at_ns >= lo:
            x = float(xs(at_ns))
            out.append(f'<line x1="{_n(x)}" y1="{y}" x2="{_n(x)}" y2="{y + 4}" stroke="#333333" stroke-width="1"/>')
            out.append(f'<text x="{_n(x)}" y="{y + 5 + FONT}" text-anchor="middle">{k * step:,.{decimals}f}</text>')
        k += 1
    out.append(f'<text x="{_n(LABEL_W + (width - RIGHT - LABEL_W) / 2)}" y="{y + 10 + 2 * FONT}" '
               f'text-anchor="middle">µs since {esc(origin_label)}</text>')
    return out, AXIS_H


def _legend(items: Sequence[tuple[str, str]], notes: Sequence[str], y: int, width: int) -> tuple[list[str], int]:
    out, x, row = [], 4.0, 0
    for color, label in items:
        w = 14 + CHAR_W * len(label) + 14
        if x + w > width and x > 4:
            x, row = 4.0, row + 1
        top = y + row * LEGEND_ROW
        out.append(f'<rect x="{_n(x)}" y="{top + 3}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{_n(x + 14)}" y="{top + 12}">{escape(label)}</text>')
        x += w
    rows = row + 1 if items else 0
    for note in notes:
        out.append(f'<text x="4" y="{y + rows * LEGEND_ROW + 12}" fill="#555555" font-size="{FONT - 1}">'
                   f"{esc(note)}</text>")
        rows += 1
    return out, rows * LEGEND_ROW


def _n(v: float) -> str:
    """A coordinate: at most two decimals, no trailing zeros."""
    s = f"{float(v):.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


# ---- from a trace ---------------------------------------------------------------------------------


def step_window(timeline: RankTimeline, step: str | None = None) -> StepWindow | None:
    """The profiler step named `step` on this rank (ValueError when it has none of that name), else
    the median step by GPU span, as the report opens on (None: the rank has no profiler steps)."""
    if step is None:
        return _median_step(timeline.steps)
    found = next((s for s in timeline.steps if s.name == step), None)
    if found is None:
        names = ", ".join(s.name for s in timeline.steps) or "none"
        raise ValueError(f"rank {timeline.rank} has no profiler step {step!r} (its steps: {names})")
    return found


def rank_svg(trace: Any, rank: int, regions: Sequence[str] = (), step: str | None = None, *,
             races: Any = None, width: int = 960) -> str:
    """`overlapscope.timeline_svg`: the timeline of `rank` with the region lanes of `regions`,
    windowed to the profiler step `step` (default: the median step; the whole trace without steps),
    padded like the report's opening view; x in µs since the start of that step's GPU work (or the
    rank's first GPU op). `races`: a RaceReport whose findings on this rank are marked."""
    from ..overlap import compile_regions
    from ..report import rank_timeline

    if all(info.rank != rank for info in trace.ranks):
        raise ValueError(f"no rank {rank} in this trace (ranks: {', '.join(str(i.rank) for i in trace.ranks)})")
    regions = list(regions)
    compile_regions(regions)  # a bad regex is BadInput, as in analyze
    findings = list(races.findings) if races is not None else []
    timeline = rank_timeline(trace, rank, regions, findings)
    chosen = step_window(timeline, step)
    if chosen is None:
        return timeline_svg(timeline, timeline.start_ns, width, title=f"rank {rank} · whole trace",
                            origin_label=f"rank {rank}'s first GPU op")
    pad = int(chosen.span_ns * VIEW_PAD)
    which = "" if step is not None else f" (median of {len(timeline.steps)} steps by GPU span)"
    return timeline_svg(timeline, chosen.start_ns, width, chosen.start_ns - pad, chosen.end_ns + pad,
                        title=f"rank {rank} · {chosen.name}{which}, {duration(chosen.span_ns)} of GPU work",
                        origin_label=f"the start of {chosen.name}'s GPU work")
