"""What the HTML report shows, computed from a run: the overlap tables, a timeline per rank, the
communication kernels that stay exposed, the race findings, the run.json facts and the history trend.

Pure data (numpy arrays, dataclasses); renderers/html.py turns it into a page. A lane with more
than DETAIL_LIMIT spans cannot be drawn span by span and stay quick to open, so it is drawn as the
fraction of each of COVERAGE_BINS time bins its spans cover; `Report.decimation` says which.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import intervals as iv
from .history import Trend
from .overlap import Analysis, KernelRow, analyze, exposed_by_kernel
from .races.findings import Finding, RaceReport
from .trace.load import MANIFEST_MARK
from .trace.model import Trace

DETAIL_LIMIT = 2_000
COVERAGE_BINS = 1_000
TOP_KERNELS = 15
FACT_TEXT_LIMIT = 300


@dataclass
class Track:
    """One kind of span in a lane (comm, compute, memory, region, step, hidden, exposed): either its
    spans one by one (starts/ends/names) or the covered fraction of each bin (edges/covered)."""

    kind: str
    count: int
    starts: np.ndarray | None = None  # ns
    ends: np.ndarray | None = None
    names: list[str] | None = None
    edges: np.ndarray | None = None  # ns, COVERAGE_BINS + 1 bin edges
    covered: np.ndarray | None = None  # fraction of each bin, 0..1

    @property
    def binned(self) -> bool:
        return self.edges is not None


@dataclass
class Lane:
    label: str
    tracks: list[Track]


@dataclass(frozen=True)
class RaceMark:
    number: int  # 1-based position in Report.findings, the anchor `race-N`
    start_ns: int
    end_ns: int


@dataclass
class RankTimeline:
    rank: int
    start_ns: int
    end_ns: int
    lanes: list[Lane]
    races: list[RaceMark]


@dataclass
class Report:
    title: str
    sources: list[str]
    analysis: Analysis
    origin_ns: int  # time zero of every timeline: the run's first GPU op or range
    timelines: list[RankTimeline]
    exposed_kernels: list[KernelRow]
    findings: list[Finding]
    race_notes: list[str]
    facts: list[tuple[str, str]]
    trend: Trend | None = None
    decimation: list[str] = field(default_factory=list)
    path: Path | None = None  # where the page was written


def build_report(trace: Trace, regions: list[str] | tuple[str, ...] = (), races: RaceReport | None = None,
                 trend: Trend | None = None) -> Report:
    """Everything the report page shows. Runs the race checker unless `races` is given."""
    if races is None:
        from .races import check_races

        races = check_races(trace)
    analysis = analyze(trace, regions)
    origin = _origin(trace)
    timelines, decimation = [], []
    for info in trace.ranks:
        timeline = rank_timeline(trace, info.rank, regions, races.findings)
        timelines.append(timeline)
        decimation += _decimation_notes(timeline)
    return Report(
        title=_title(trace), sources=list(dict.fromkeys(info.source for info in trace.ranks)), analysis=analysis,
        origin_ns=origin, timelines=timelines, exposed_kernels=exposed_by_kernel(trace, TOP_KERNELS),
        findings=list(races.findings), race_notes=list(races.notes), facts=manifest_facts(trace.manifest),
        trend=trend, decimation=decimation,
    )


def rank_timeline(trace: Trace, rank: int, regions: list[str] | tuple[str, ...] = (),
                  findings: list[Finding] = ()) -> RankTimeline:
    """Lanes of one rank: one per stream, hidden and exposed comm, one per region, the profiler steps."""
    ops = trace.gpu_ops[trace.gpu_ops["rank"].to_numpy() == rank]
    ranges = trace.ranges[(trace.ranges["rank"].to_numpy() == rank)
                          & (trace.ranges["source"] != "gpu_user_annotation").to_numpy()]
    starts, ends = ops["start"].to_numpy(), ops["end"].to_numpy()
    op_class = ops["op_class"].astype(str).to_numpy()
    comm = iv.union(starts[op_class == "comm"], ends[op_class == "comm"])
    compute = iv.union(starts[op_class == "compute"], ends[op_class == "compute"])
    shown_ranges = [(f"region /{r}/", "region", ranges[_matches(ranges["name"], r)]) for r in regions]
    shown_ranges.append(("profiler steps", "step", ranges[(ranges["source"] == "profiler_step").to_numpy()]))
    lo, hi = _extent([starts, ends] + [rr[side].to_numpy() for _, _, rr in shown_ranges for side in ("start", "end")])
    # integer bin edges: float64 cannot hold epoch nanoseconds exactly
    edges = lo + np.arange(COVERAGE_BINS + 1, dtype=np.int64) * max(hi - lo, COVERAGE_BINS) // COVERAGE_BINS

    lanes = []
    streams = ops["stream"].to_numpy()
    names = ops["name"]
    for stream in np.unique(streams):
        on = streams == stream
        tracks = [_track(cls, starts[on & (op_class == cls)], ends[on & (op_class == cls)],
                         names[on & (op_class == cls)], edges)
                  for cls in ("compute", "comm", "memory") if (on & (op_class == cls)).any()]
        lanes.append(Lane(f"stream {int(stream)}", tracks))
    hidden, exposed = iv.intersection(comm, compute), iv.difference(comm, compute)
    lanes.append(Lane("comm hidden", [_track("hidden", *hidden, None, edges)]))
    lanes.append(Lane("comm exposed", [_track("exposed", *exposed, None, edges)]))
    for label, kind, rr in shown_ranges:
        if len(rr) or kind == "region":
            lanes.append(Lane(label, [_track(kind, rr["start"].to_numpy(), rr["end"].to_numpy(), rr["name"], edges)]))
    marks = [RaceMark(i + 1, *race_span(f)) for i, f in enumerate(findings) if f.rank == rank]
    return RankTimeline(rank, lo, hi, lanes, marks)


def race_span(f: Finding) -> tuple[int, int]:
    """From the first of the two racing accesses' starts to the last of their ends (ns)."""
    return min(f.first.start_ns, f.second.start_ns), max(f.first.end_ns, f.second.end_ns)


def _track(kind: str, starts: np.ndarray, ends: np.ndarray, names: pd.Series | None, edges: np.ndarray) -> Track:
    if starts.size > DETAIL_LIMIT:
        return Track(kind, int(starts.size), edges=edges, covered=iv.coverage(starts, ends, edges))
    labels = None if names is None else names.astype(str).tolist()
    return Track(kind, int(starts.size), starts=starts, ends=ends, names=labels)


def manifest_facts(manifest: dict[str, Any] | None) -> list[tuple[str, str]]:
    """run.json as (key, text) pairs: nested tables flattened one level, long values shortened."""
    facts: list[tuple[str, str]] = []
    for key, value in (manifest or {}).items():
        if key == MANIFEST_MARK:
            continue
        if isinstance(value, dict) and value:
            facts += [(f"{key}.{k}", _fact_text(v)) for k, v in value.items()]
        else:
            facts.append((str(key), _fact_text(value)))
    return facts


def _fact_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= FACT_TEXT_LIMIT else text[:FACT_TEXT_LIMIT] + f" … ({len(text):,} characters)"


def _decimation_notes(timeline: RankTimeline) -> list[str]:
    notes = []
    for lane in timeline.lanes:
        for track in lane.tracks:
            if track.binned:
                bin_us = (track.edges[-1] - track.edges[0]) / COVERAGE_BINS / 1e3
                notes.append(f"rank {timeline.rank}, {lane.label}: {track.count:,} {track.kind} spans drawn as the "
                             f"covered fraction of {COVERAGE_BINS:,} bins of {bin_us:,.2f} µs "
                             f"(more than {DETAIL_LIMIT:,} spans in the lane)")
    return notes


def _extent(times: list[np.ndarray]) -> tuple[int, int]:
    present = [t for t in times if t.size]
    if not present:
        return 0, COVERAGE_BINS
    return int(min(t.min() for t in present)), int(max(t.max() for t in present))


def _origin(trace: Trace) -> int:
    times = [f["start"].to_numpy() for f in (trace.gpu_ops, trace.ranges) if len(f)]
    return int(min(t.min() for t in times)) if times else 0


def _matches(names: pd.Series, regex: str) -> np.ndarray:
    """re.search over each distinct name once (the regex was validated by analyze)."""
    pattern = re.compile(regex)
    hit = {c: bool(pattern.search(str(c))) for c in names.cat.categories}
    return names.map(hit).fillna(False).to_numpy(dtype=bool)


def _title(trace: Trace) -> str:
    m = trace.manifest or {}
    if m.get("model"):
        return " / ".join(str(m[k]) for k in ("model", "variant") if m.get(k))
    parents = {Path(info.source).parent.name for info in trace.ranks}
    return parents.pop() if len(parents) == 1 and "" not in parents else "trace"
