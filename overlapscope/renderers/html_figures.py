"""Plotly figure specs (plain dicts, drawn by the inlined plotly.js) for the report's charts.

Plotly renders a small HTML subset in every text it draws (labels, hover, ticks), so every
string taken from a trace is passed through `html.escape` first; plotly shows the entities as
the characters themselves. Times on the x axes are microseconds since the report's origin.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from ..history import Trend
from ..overlap import ScopeRow
from .. import report as _report
from ..report import COVERAGE_BINS, RankTimeline, Track
from .format import duration

COLORS = {
    "compute": "#4c78a8", "comm": "#f58518", "memory": "#9d9d9d", "hidden": "#54a24b",
    "exposed": "#e45756", "region": "#b279a2", "step": "#bab0ac",
}
LEGEND = {
    "compute": "compute kernel", "comm": "comm kernel", "memory": "memcpy / memset",
    "hidden": "comm under compute", "exposed": "comm exposed", "region": "region (GPU time)",
    "step": "profiler step (GPU time)",
}
HOVER_NAME_LIMIT = 160
LANE_HEIGHT = 26
BAND = 0.4  # half the height of a lane, in y units


def text(value: object, limit: int = HOVER_NAME_LIMIT) -> str:
    """A trace string made safe for plotly's text rendering, shortened for hover boxes."""
    s = str(value)
    if len(s) > limit:
        s = s[:limit] + f"… ({len(s):,} characters)"
    return html.escape(s, quote=True)


RACE_LABEL_LEVELS = 3  # rows of race labels above a timeline; more labels at one place are counted as "+N"
RACE_LABEL_ROW = 20  # px


def timeline_figure(timeline: RankTimeline, origin_ns: int, view_ns: tuple[int, int] | None = None) -> dict[str, Any]:
    """One rank: a lane per stream, hidden/exposed comm, regions and steps; race findings marked.

    Besides plotly's `data` and `layout`, the spec carries `timeline`: the race marks (the page lays
    out their labels for the current zoom, as links to the race rows) and, for each binned lane, its
    embedded spans (`detail`), which the page draws one by one when the zoomed window holds at most
    DETAIL_LIMIT of them: starts as ns deltas from `t0` (µs since the origin), durations in ns, and
    name codes into the lane's escaped name table."""
    data: list[dict[str, Any]] = []
    detail: list[dict[str, Any]] = []
    in_legend: set[str] = set()
    for y, lane in enumerate(timeline.lanes):
        stacked = np.zeros(COVERAGE_BINS)
        lane_detail: dict[str, Any] = {"lane": y, "tracks": [], "windows": None}  # None: every span is embedded
        for track in lane.tracks:
            show = track.kind not in in_legend
            in_legend.add(track.kind)
            if track.binned:
                if track.detail_windows:
                    lane_detail["tracks"].append(_detail_data(track, len(data), origin_ns))
                    if not track.detail_complete:  # the same windows for every track of a rank (fit_detail)
                        lane_detail["windows"] = [[float(_us(a, origin_ns)), float(_us(b, origin_ns))]
                                                  for a, b in track.detail_windows]
                else:
                    lane_detail["windows"] = []
                data.append(_coverage_trace(track, y, stacked, origin_ns, text(lane.label), show))
                stacked = stacked + track.covered
            else:
                data.append(_spans_trace(track, y, origin_ns, text(lane.label), show))
        if lane_detail["tracks"] and lane_detail["windows"] != []:  # None: detail in any window
            detail.append(lane_detail)
    shapes, races = [], []
    for mark in timeline.races:
        x0, x1 = float(_us(mark.start_ns, origin_ns)), float(_us(mark.end_ns, origin_ns))
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": x0, "x1": x1, "y0": 0, "y1": 1,
                       "fillcolor": "rgba(228,26,28,0.15)", "line": {"color": "#e41a1c", "width": 1.5}})
        races.append({"n": mark.number, "x0": x0, "x1": x1})
    labels = [text(lane.label) for lane in timeline.lanes]
    top = 30 + (RACE_LABEL_ROW * (min(len(races), RACE_LABEL_LEVELS) - 1) if races else 0)
    xaxis: dict[str, Any] = {"title": {"text": "µs since the run's first event"}, "zeroline": False}
    if view_ns is not None:
        xaxis.update(range=[float(_us(view_ns[0], origin_ns)), float(_us(view_ns[1], origin_ns))], autorange=False)
    layout = {
        "height": 90 + LANE_HEIGHT * max(len(labels), 4) + top - 30, "margin": {"l": 10, "r": 10, "t": top, "b": 40},
        "xaxis": xaxis,
        # a fixed, reversed range keeps empty lanes (no exposed comm, a region with no range) in view
        "yaxis": {"tickvals": list(range(len(labels))), "ticktext": labels, "range": [len(labels) - 0.5, -0.5],
                  "autorange": False, "fixedrange": True, "automargin": True, "zeroline": False, "showgrid": False},
        "hovermode": "closest", "shapes": shapes, "annotations": [], "showlegend": True,
        "legend": {"traceorder": "normal"},
    }
    return {"data": data, "layout": layout,
            "timeline": {"rank": timeline.rank, "races": races, "detail": detail, "limit": _report.DETAIL_LIMIT,
                         "levels": RACE_LABEL_LEVELS, "row": RACE_LABEL_ROW}}


def _detail_data(track: Track, trace_index: int, origin_ns: int) -> dict[str, Any]:
    starts, ends = track.starts, track.ends
    deltas = np.diff(starts, prepend=starts[:1]) if starts.size else starts
    codes = track.detail_codes if track.detail_codes is not None else np.zeros(starts.size, np.int64)
    return {"trace": trace_index, "t0": float(_us(starts[0], origin_ns)) if starts.size else 0.0,
            "s": deltas.astype(np.int64), "w": (ends - starts).astype(np.int64), "n": codes.astype(np.int64),
            "names": [text(n) for n in (track.name_table or [""])]}


def _spans_trace(track: Track, y: int, origin_ns: int, lane: str, show: bool) -> dict[str, Any]:
    n = track.count
    x = np.empty(3 * n, dtype=np.float64)
    x[0::3] = _us(track.starts, origin_ns)
    x[1::3] = _us(track.ends, origin_ns)
    x[2::3] = np.nan  # a gap between spans
    durations = [duration(int(d)) for d in track.ends - track.starts]
    names = track.names or [""] * n
    hover: list[str | None] = []
    for name, dur in zip(names, durations, strict=True):
        label = f"{text(name)}<br>{dur}" if name else dur
        hover += [label, label, None]
    return {"type": "scatter", "mode": "lines", "x": x, "y": np.full(3 * n, y), "text": hover,
            "hovertemplate": f"%{{text}}<extra>{lane}</extra>",
            # plotly's line simplification would drop spans narrower than a pixel
            "line": {"color": COLORS[track.kind], "width": 14, "simplify": False},
            "name": LEGEND[track.kind], "legendgroup": track.kind, "showlegend": show, "connectgaps": False}


def _coverage_trace(track: Track, y: int, below: np.ndarray, origin_ns: int, lane: str, show: bool) -> dict[str, Any]:
    """A step-shaped filled band: the bin's covered fraction of the lane's height, stacked on `below`."""
    edges = _us(track.edges, origin_ns)
    bottom = y + BAND - 2 * BAND * below
    top = bottom - 2 * BAND * track.covered
    x = np.concatenate([edges, edges[::-1]])
    ys = np.concatenate([top, top[-1:], bottom[::-1], bottom[:1]])
    pct = [f"{100 * c:.1f} % busy" for c in track.covered]
    hover = pct + [pct[-1]] + [None] * (edges.size)
    return {"type": "scatter", "mode": "lines", "x": x, "y": ys.round(4), "fill": "toself",
            "line": {"color": COLORS[track.kind], "width": 0.5, "shape": "hv"}, "fillcolor": COLORS[track.kind],
            "text": hover, "hovertemplate": f"%{{text}}<extra>{lane}</extra>", "hoveron": "points",
            "name": LEGEND[track.kind], "legendgroup": track.kind, "showlegend": show}


def steps_figure(steps: list[ScopeRow]) -> dict[str, Any]:
    """Overlap per profiler step, one bar series per rank (no bar where overlap is not applicable)."""
    data = []
    for rank in sorted({s.rank for s in steps}):
        rows = [s for s in steps if s.rank == rank]
        data.append({
            "type": "bar", "name": f"rank {rank}", "x": [text(s.region) for s in rows],
            "y": [s.overlap_pct for s in rows],
            "text": [f"hidden {duration(s.overlap_ns)}, exposed {duration(s.exposed_comm_ns)}" for s in rows],
            "hovertemplate": "%{x}: %{y:.1f} %<br>%{text}<extra>rank " + str(rank) + "</extra>", "textposition": "none",
        })
    layout = {"height": 320, "barmode": "group", "margin": {"l": 50, "r": 10, "t": 10, "b": 60},
              "yaxis": {"title": {"text": "comm hidden under compute (%)"}, "range": [0, 100]},
              "xaxis": {"type": "category"}}
    return {"data": data, "layout": layout}


def trend_figure(trend: Trend) -> dict[str, Any]:
    """Pooled overlap of each scope over the recorded runs."""
    data = []
    for scope in trend.scopes():
        points = trend.of(scope)
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": text(scope),
            "x": [f"#{p.run_id}" for p in points], "y": [p.pooled_pct for p in points],
            "text": [text(f"{p.recorded_at} {p.git_commit[:10] if p.git_commit else 'no git commit'}")
                     for p in points],
            "hovertemplate": "run %{x}: %{y:.1f} %<br>%{text}<extra>" + text(scope) + "</extra>",
        })
    layout = {"height": 300, "margin": {"l": 50, "r": 10, "t": 10, "b": 40},
              "yaxis": {"title": {"text": "comm hidden, all ranks (%)"}, "range": [0, 100]},
              "xaxis": {"type": "category", "title": {"text": "recorded run"}}}
    return {"data": data, "layout": layout}


def _us(ns: np.ndarray | int, origin_ns: int) -> np.ndarray | float:
    """ns → µs since origin, subtracting in int64 first so epoch timestamps keep every nanosecond."""
    return (np.asarray(ns, dtype=np.int64) - origin_ns) / 1e3
