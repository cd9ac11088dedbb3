"""The static timeline SVG (renderers/svg.py) and the public API that draws it (overlapscope.timeline_svg).

The hand-built timeline is drawn 1206 px wide: the plot runs from x = 190 (LABEL_W) to 1190 (RIGHT =
16), 1000 px, so over the window [1000, 11000) ns one px is 10 ns and x(t) = 190 + (t - 1000) / 10.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import overlapscope
from overlapscope import report as rp
from overlapscope.renderers import svg
from run_builders import HOSTILE, LONG_NAME, hostile_run, no_gpu_run, tbo_run

NS = "{http://www.w3.org/2000/svg}"
WIDTH = 1206
LANES = ["stream 7", "stream 20", "comm hidden", "comm exposed", "region /tbo/", "profiler steps"]


def spans(starts, ends, kind, names=None):
    return rp.Track(kind, len(starts), starts=np.array(starts, np.int64), ends=np.array(ends, np.int64),
                    names=names)


def hand_timeline(races=()):
    """Compute [1000, 3000) and [6000, 8500) on stream 7, an all-reduce [2000, 7000) on stream 20:
    hidden [2000, 3000) and [6000, 7000), exposed [3000, 6000)."""
    return rp.RankTimeline(3, 1000, 11_000, [
        rp.Lane("stream 7", [spans([1000, 6000], [3000, 8500], "compute", ["gemm", "attn"])]),
        rp.Lane("stream 20", [spans([2000], [7000], "comm", ["ncclAllReduce"])]),
        rp.Lane("comm hidden", [spans([2000, 6000], [3000, 7000], "hidden")]),
        rp.Lane("comm exposed", [spans([3000], [6000], "exposed")]),
        rp.Lane("region /tbo/", [spans([1000], [8500], "region", ["tbo/mb0"])]),
        rp.Lane("profiler steps", [spans([1000, 9000], [8500, 11_000], "step", ["ProfilerStep#0", "ProfilerStep#1"])]),
    ], list(races))


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text)  # well-formed XML
    assert root.tag == NS + "svg"
    return root


def lane_labels(root: ET.Element) -> list[str]:
    texts = [t for t in root.iter(NS + "text") if t.get("data-lane") is not None]
    return [t.find(NS + "title").text for t in sorted(texts, key=lambda t: int(t.get("data-lane")))]


def rects(root: ET.Element, lane: int, kind: str) -> list[tuple[float, float, float, float]]:
    out = []
    for g in root.iter(NS + "g"):
        if g.get("data-lane") == str(lane) and g.get("data-kind") == kind:
            out += [tuple(float(r.get(k)) for k in ("x", "y", "width", "height")) for r in g.iter(NS + "rect")]
    return out


def xw(rs):
    return [(x, w) for x, _, w, _ in rs]


def test_lanes_and_span_positions():
    root = parse(svg.timeline_svg(hand_timeline(), origin_ns=1000, width=WIDTH))
    assert lane_labels(root) == LANES
    assert xw(rects(root, 0, "compute")) == [(190, 200), (690, 250)]
    assert xw(rects(root, 1, "comm")) == [(290, 500)]
    assert xw(rects(root, 2, "hidden")) == [(290, 100), (690, 100)]
    assert xw(rects(root, 3, "exposed")) == [(390, 300)]
    assert xw(rects(root, 5, "step")) == [(190, 750), (990, 200)]
    # lane i's bar: y = 24 (title) + 24 i + 4, 16 high
    assert {(y, h) for _, y, _, h in rects(root, 3, "exposed")} == {(24 + 3 * 24 + 4, 16)}
    titles = [t.text for t in root.iter(NS + "title")]
    assert "gemm · 2.0 µs" in titles and "ncclAllReduce · 5.0 µs" in titles
    legend = [t.text for t in root.iter(NS + "text") if t.get("data-lane") is None]
    assert {svg.LEGEND[k] for k in ("compute", "comm", "hidden", "exposed", "region", "step")} <= set(legend)
    assert svg.LEGEND["memory"] not in legend  # only what is drawn
    assert "µs since origin" in legend
    # ticks at 1/2/5 × 10^k µs: 10 µs shown, 8 ticks wanted -> every 2 µs from 0
    assert [t for t in legend if re.fullmatch(r"[\d,.]+", t or "")] == ["0", "2", "4", "6", "8", "10"]


def test_window_clips_and_drops_spans():
    # [5000, 7000): 2000 ns over 1000 px, x(t) = 190 + (t - 5000) / 2
    root = parse(svg.timeline_svg(hand_timeline(), origin_ns=5000, width=WIDTH, start_ns=5000, end_ns=7000))
    assert xw(rects(root, 0, "compute")) == [(690, 500)]  # [6000, 8500) clipped at 7000; [1000, 3000) outside
    assert xw(rects(root, 1, "comm")) == [(190, 1000)]  # [2000, 7000) clipped both sides
    assert xw(rects(root, 2, "hidden")) == [(690, 500)]
    assert xw(rects(root, 3, "exposed")) == [(190, 500)]
    assert rects(root, 5, "step") == [(190, 28 + 5 * 24, 1000, 16)]
    # the tooltip keeps the whole span's duration
    assert "attn · 2.5 µs" in [t.text for t in root.iter(NS + "title")]


def test_race_marks_share_labels_when_close():
    marks = [rp.RaceMark(1, 2000, 2100), rp.RaceMark(2, 2050, 2300), rp.RaceMark(3, 8000, 8100)]
    root = parse(svg.timeline_svg(hand_timeline(marks), origin_ns=1000, width=WIDTH))
    bands = [r for r in root.iter(NS + "rect") if r.get("data-race")]
    assert [(r.get("data-race"), float(r.get("x"))) for r in bands] == [("1", 290), ("2", 295), ("3", 890)]
    labels = [t.text for t in root.iter(NS + "text") if re.fullmatch(r"race \d+( \+\d+)?", t.text or "")]
    assert labels == ["race 1 +1", "race 3"]


def test_binned_tracks_are_coverage_bars():
    edges = np.array([1000, 3500, 6000, 8500, 11_000], np.int64)
    binned = rp.Track("compute", 50_000, edges=edges, covered=np.array([0.5, 0.0, 1.0, 0.25]))
    on_top = rp.Track("memory", 10_000, edges=edges, covered=np.array([0.25, 0.5, 0.0, 0.0]))
    timeline = rp.RankTimeline(0, 1000, 11_000, [rp.Lane("stream 7", [binned, on_top])], [])
    root = parse(svg.timeline_svg(timeline, origin_ns=1000, width=WIDTH))
    bottom = 24 + 4 + 16  # lane 0's bar bottom
    # each bin's covered fraction of the 16 px bar, from the bottom; empty bins are not drawn
    assert rects(root, 0, "compute") == [(190, bottom - 8, 250, 8), (690, bottom - 16, 250, 16),
                                         (940, bottom - 4, 250, 4)]
    # the second track stacks on the first
    assert rects(root, 0, "memory") == [(190, bottom - 8 - 4, 250, 4), (440, bottom - 8, 250, 8)]
    notes = [t.text for t in root.iter(NS + "text") if "busy fraction" in (t.text or "")]
    assert notes == [f"stream 7: 50,000 {svg.LEGEND['compute']} spans drawn as the busy fraction of bins of 2.5 µs",
                     f"stream 7: 10,000 {svg.LEGEND['memory']} spans drawn as the busy fraction of bins of 2.5 µs"]


def test_binned_track_with_detail_draws_spans_when_zoomed_in():
    n = rp.DETAIL_LIMIT + 500
    starts = np.arange(n, dtype=np.int64) * 100
    edges = np.linspace(0, int(starts[-1]) + 50, rp.COVERAGE_BINS + 1).astype(np.int64)
    import pandas as pd

    track = rp._track("compute", starts, starts + 50, pd.Series([f"k{i % 3}" for i in range(n)]), edges)
    assert track.binned and track.detail_complete
    timeline = rp.RankTimeline(0, 0, int(starts[-1]) + 50, [rp.Lane("stream 7", [track])], [])
    whole = parse(svg.timeline_svg(timeline, 0, width=WIDTH))
    assert len(rects(whole, 0, "compute")) == rp.COVERAGE_BINS  # every bin is half busy
    # [1000, 2000): spans 10..19, one px per ns
    zoomed = parse(svg.timeline_svg(timeline, 0, width=WIDTH, start_ns=1000, end_ns=2000))
    assert xw(rects(zoomed, 0, "compute")) == [(190 + 100 * i, 50) for i in range(10)]
    assert "k1 · 50 ns" in [t.text for t in zoomed.iter(NS + "title")]


def test_hostile_names_stay_inert(tmp_path):
    trace = overlapscope.load([hostile_run(tmp_path / "hostile")])
    nasty = ["\x1b[31m\x00evil\u202e\ud800", HOSTILE[2]]
    timeline = rp.rank_timeline(trace, 0, [re.escape(HOSTILE[2])])
    timeline.lanes.append(rp.Lane(nasty[0], [spans([timeline.start_ns], [timeline.end_ns], "region", nasty)]))
    text = svg.timeline_svg(timeline, timeline.start_ns, title=HOSTILE[0])
    root = parse(text)
    for el in root.iter():
        assert el.tag.split("}")[1] not in {"script", "foreignObject", "a", "image", "use", "iframe"}
        assert not [k for k in el.attrib if k.lower().startswith("on") or "href" in k.lower()]
    for raw in ("<script", "<img", "<svg onload", "<h1>", "\x1b", "\x00", "\u202e"):
        assert raw not in text
    titles = [t.text for t in root.iter(NS + "title")]
    joined = "\n".join(titles)
    for name in HOSTILE[:4]:
        assert name in joined  # shown as written, never as markup
    assert f"region /{re.escape(HOSTILE[2])}/" in lane_labels(root)
    assert "?[31m?evil?" in joined
    long = next(t for t in titles if t.startswith("void very_long_template_kernel<"))
    assert long.endswith(f"… ({len(LONG_NAME):,} characters) · 1.0 µs")


# ---- the public API -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tbo_trace(tmp_path_factory):
    return overlapscope.load([tbo_run(tmp_path_factory.mktemp("tbo"), overlapped=True, steps=3)])


def test_public_timeline_svg_opens_on_the_median_step(tbo_trace):
    root = parse(overlapscope.timeline_svg(tbo_trace, 0, ["tbo"]))
    assert lane_labels(root) == ["stream 7", "stream 20", "comm hidden", "comm exposed", "region /tbo/",
                                 "profiler steps"]
    # the three steps have the same GPU span: the median is the lower one, the earlier of equals
    assert root.find(NS + "title").text.startswith("rank 0 · ProfilerStep#1 (median of 3 steps by GPU span)")
    # windowed: step 1's one all-reduce, one hidden span, nothing exposed
    assert len(rects(root, 1, "comm")) == 1 and len(rects(root, 2, "hidden")) == 1
    assert rects(root, 3, "exposed") == []


def test_public_timeline_svg_named_step_and_errors(tbo_trace):
    root = parse(overlapscope.timeline_svg(tbo_trace, 1, step="ProfilerStep#2"))
    assert root.find(NS + "title").text.startswith("rank 1 · ProfilerStep#2, ")
    assert "region /tbo/" not in lane_labels(root)
    with pytest.raises(ValueError, match=r"no profiler step 'ProfilerStep#9' \(its steps: ProfilerStep#0, "):
        overlapscope.timeline_svg(tbo_trace, 0, step="ProfilerStep#9")
    with pytest.raises(ValueError, match="no rank 5"):
        overlapscope.timeline_svg(tbo_trace, 5)
    with pytest.raises(overlapscope.BadInput):
        overlapscope.timeline_svg(tbo_trace, 0, ["("])


def test_public_timeline_svg_without_steps_or_gpu_ops(tmp_path):
    trace = overlapscope.load([no_gpu_run(tmp_path / "none")])
    root = parse(overlapscope.timeline_svg(trace, 0, ["tbo"]))
    assert root.find(NS + "title").text == "rank 0 · whole trace"


def test_public_names():
    for name in overlapscope.__all__:
        assert getattr(overlapscope, name) is not None, name
    assert set(overlapscope.__all__) <= set(dir(overlapscope))
    from overlapscope.attribution import attribute
    from overlapscope.races import check_races

    assert overlapscope.check_races is check_races and overlapscope.attribute is attribute
    assert overlapscope.format_ns(1_234_567) == "1.23 ms" and overlapscope.format_ns(850) == "850 ns"
    assert overlapscope.format_ns(float("nan")) == overlapscope.format_ns(None) == "n/a"
    assert overlapscope.format_pct(87.64) == "87.6 %"
    assert overlapscope.format_pct(float("nan")) == overlapscope.format_pct(None) == "n/a"
    with pytest.raises(AttributeError):
        overlapscope.no_such_name  # noqa: B018


def test_import_stays_light():
    code = ("import sys, overlapscope; overlapscope.format_pct(1.0); overlapscope.format_ns(1)\n"
            "print(','.join(m for m in ('pandas', 'numpy', 'plotly') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
