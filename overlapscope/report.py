"""What the HTML report shows, computed from a run: the verdict of each region and rank, the exposed
tree, a timeline per rank, the overlap tables, the communication kernels that stay exposed, the race
verdict, groups and findings, the run.json facts and the history trend.

Pure data (numpy arrays, dataclasses); renderers/html.py turns it into a page (and its sentences).

Timelines are on GPU time: region and profiler-step lanes span from the first to the last GPU op
launched inside each host range, not the host range itself (which runs ahead of its kernels). The
page opens on one representative step, the median step by GPU span (`Report.view`).

A lane with more than DETAIL_LIMIT spans cannot be drawn span by span and stay quick to open, so it
is drawn as the fraction of each of COVERAGE_BINS time bins its spans cover; its spans are also
embedded (`Track.detail_windows`), and the page draws them one by one when the zoomed window holds
at most DETAIL_LIMIT of them. Up to DETAIL_BUDGET spans are embedded per page; past that, the spans
of the steps nearest the representative step, as many as fit (`Report.decimation` says which).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import intervals as iv
from .attribution import PATH_SEP, Attribution, attribute
from .history import Trend
from .overlap import Analysis, KernelRow, analyze, compile_regions, exposed_by_kernel
from .races.findings import Finding, FindingGroup, RaceReport
from .trace.links import LaunchPoints, launch_points, steps_of
from .trace.load import MANIFEST_MARK
from .trace.model import NO_ID, Trace

DETAIL_LIMIT = 2_000
COVERAGE_BINS = 1_000
DETAIL_BUDGET = 250_000  # spans of aggregated lanes embedded per page for the zoomed-in detail (~18 bytes each)
TOP_KERNELS = 15
FACT_TEXT_LIMIT = 300
TREE_LIMIT = 300  # exposed-tree nodes shown per rank (the most exposed, with their ancestors)
VIEW_PAD = 0.02  # the opening view: the representative step's GPU span, padded by this fraction each side


@dataclass
class Track:
    """One kind of span in a lane (comm, compute, memory, region, step, hidden, exposed): either its
    spans one by one (starts/ends/names) or the covered fraction of each bin (edges/covered).

    A binned track also keeps spans for the zoomed-in detail, sorted by start: starts/ends, their
    names as `detail_codes` into `name_table`, and the windows (ns) inside which every span of
    the track is kept (`detail_windows`; empty: none kept)."""

    kind: str
    count: int
    starts: np.ndarray | None = None  # ns
    ends: np.ndarray | None = None
    names: list[str] | None = None
    edges: np.ndarray | None = None  # ns, COVERAGE_BINS + 1 bin edges
    covered: np.ndarray | None = None  # fraction of each bin, 0..1
    detail_codes: np.ndarray | None = None
    name_table: list[str] | None = None
    detail_windows: list[tuple[int, int]] = field(default_factory=list)
    detail_complete: bool = False  # every span is kept: detail in any window

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


@dataclass(frozen=True)
class StepWindow:
    """Where a profiler step's GPU work ran: from the first to the last GPU op launched in it."""

    name: str
    start_ns: int
    end_ns: int
    ops: int

    @property
    def span_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass
class RankTimeline:
    rank: int
    start_ns: int
    end_ns: int
    lanes: list[Lane]
    races: list[RaceMark]
    steps: list[StepWindow] = field(default_factory=list)


@dataclass(frozen=True)
class RankVerdict:
    """The numbers of one verdict sentence, for one rank and one scope (a region, or the whole trace).

    `steps`: profiler steps with communication in the scope (the per-step divisor; 0: no steps, the
    sentence gives totals). `path`: the worst place under the scope, as range names below the
    region's own range ("" when none), found by walking the scope's exposed tree from its root to
    the most exposed child while that child holds at least half of its parent's exposed time (the
    first child always). `full_path`: that node's path in `Analysis.exposed_paths` when it is one
    node there ("" when the region matched ranges at several places)."""

    rank: int
    scope: str | None  # the region regex; None: the whole trace
    ranges: int | None  # host ranges the region matched (None: whole trace)
    comm_ns: int
    overlap_pct: float | None
    exposed_comm_ns: int
    steps: int
    path: str = ""
    full_path: str = ""
    path_comm_ns: int = 0
    path_exposed_ns: int = 0

    @property
    def path_hidden_pct(self) -> float | None:
        return None if not self.path_comm_ns else 100.0 * (self.path_comm_ns - self.path_exposed_ns) / self.path_comm_ns


@dataclass(frozen=True)
class TreeNode:
    """A node of a rank's exposed tree (`Attribution.by_path`): the comm launched under a range path."""

    rank: int
    path: str
    depth: int
    name: str
    comm_ns: int
    hidden_ns: int
    exposed_ns: int
    instances: int


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
    verdicts: list[RankVerdict] = field(default_factory=list)
    exposed_tree: list[TreeNode] = field(default_factory=list)
    tree_left_out: dict[int, int] = field(default_factory=dict)  # rank -> nodes not shown (TREE_LIMIT)
    steps: list[StepWindow] = field(default_factory=list)  # run-wide GPU span of each step, in step order
    representative: str | None = None  # the step the timelines open on
    view: tuple[int, int] = (0, 0)  # ns: the timelines' opening x range
    extent: tuple[int, int] = (0, 0)  # ns: the whole run
    race_verdict: str = ""  # RaceReport.verdict: "races" | "none" | "not checked"
    race_reason: str = ""
    race_groups: list[FindingGroup] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # kernel regexes left out of the view and every total


def build_report(trace: Trace, regions: list[str] | tuple[str, ...] = (), races: RaceReport | None = None,
                 trend: Trend | None = None, *, excluded: Sequence[str] = ()) -> Report:
    """Everything the report page shows. Runs the race checker unless `races` is given. `excluded`:
    the kernel regexes the trace was loaded without (--exclude-kernel), shown on the page."""
    if races is None:
        from .races import check_races

        races = check_races(trace)
    attribution = attribute(trace)
    analysis = analyze(trace, regions, attribution=attribution)
    origin = _origin(trace)
    launch = launch_points(trace)
    step_of = steps_of(trace, launch)
    timelines = [rank_timeline(trace, info.rank, regions, races.findings, launch=launch, step_of=step_of)
                 for info in trace.ranks]
    steps = _run_steps(timelines)
    representative = _median_step(steps)
    extent = (min((t.start_ns for t in timelines), default=origin), max((t.end_ns for t in timelines), default=origin))
    view = _padded(representative, extent)
    decimation = fit_detail(timelines, steps, representative)
    tree, left_out = _tree(attribution)
    manifest_excluded = (trace.manifest or {}).get("exclude_kernels") or []
    return Report(
        title=_title(trace), sources=list(dict.fromkeys(info.source for info in trace.ranks)), analysis=analysis,
        origin_ns=origin, timelines=timelines, exposed_kernels=exposed_by_kernel(trace, TOP_KERNELS),
        findings=list(races.findings), race_notes=list(races.notes), facts=manifest_facts(trace.manifest),
        trend=trend, decimation=decimation, verdicts=verdicts(analysis, attribution, regions),
        exposed_tree=tree, tree_left_out=left_out, steps=steps,
        representative=representative.name if representative else None, view=view, extent=extent,
        race_verdict=races.verdict, race_reason=races.reason, race_groups=races.groups,
        excluded=list(dict.fromkeys([*map(str, excluded), *map(str, manifest_excluded)])),
    )


# ---- verdicts -------------------------------------------------------------------------------------


def verdicts(analysis: Analysis, attribution: Attribution, regions: Sequence[str] = ()) -> list[RankVerdict]:
    """One per rank and region (with regions), else one per rank for the whole trace, in rank order."""
    sums = _path_sums(attribution)
    out = []
    if regions:
        patterns = dict(zip(regions, compile_regions(regions)))
        for row in analysis.regions:
            steps = sum(1 for s in analysis.region_steps
                        if s.rank == row.rank and s.region == row.region and s.comm_ns > 0)
            hot = _hot_path(sums.get(row.rank, []), patterns[row.region])
            out.append(RankVerdict(row.rank, row.region, row.ranges, row.comm_ns, row.overlap_pct,
                                   row.exposed_comm_ns, steps, *hot))
    else:
        for row in analysis.ranks:
            steps = sum(1 for s in analysis.steps if s.rank == row.rank and s.comm_ns > 0)
            hot = _hot_path(sums.get(row.rank, []), None)
            out.append(RankVerdict(row.rank, None, None, row.comm_ns, row.overlap_pct, row.exposed_comm_ns,
                                   steps, *hot))
    return out


def _path_sums(attribution: Attribution) -> dict[int, list[tuple[tuple[str, ...], int, int]]]:
    """Per rank: (range path components, comm, exposed) summed over the instances of each distinct path."""
    df = attribution.instances
    if not len(df):
        return {}
    grouped = df.groupby(["rank", "range_path"], observed=True, sort=True)[["comm_ns", "exposed_ns"]].sum()
    out: dict[int, list[tuple[tuple[str, ...], int, int]]] = {}
    for (rank, path), comm, exposed in zip(grouped.index, grouped["comm_ns"].to_numpy(),
                                           grouped["exposed_ns"].to_numpy()):
        parts = attribution.components.get(str(path)) or (tuple(str(path).split(PATH_SEP)) if path else ())
        out.setdefault(int(rank), []).append((parts, int(comm), int(exposed)))
    return out


def _hot_path(rows: list[tuple[tuple[str, ...], int, int]],
              pattern: re.Pattern[str] | None) -> tuple[str, str, int, int]:
    """(path below the scope, full path when one node, comm, exposed) of the scope's worst place."""
    nodes: dict[tuple[str, ...], list[Any]] = {}
    children: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    for parts, comm, exposed in rows:  # distinct paths, not instances
        if pattern is None:
            cut = 0
        else:
            cut = next((i + 1 for i, p in enumerate(parts) if pattern.search(p)), None)
            if cut is None:
                continue
        base, rel = parts[:cut], parts[cut:]
        for d in range(1, len(rel) + 1):
            acc = nodes.setdefault(rel[:d], [0, 0, set()])
            acc[0] += comm
            acc[1] += exposed
            acc[2].add(base + rel[:d])
            children.setdefault(rel[:d - 1], set()).add(rel[:d])
    here: tuple[str, ...] = ()
    while children.get(here):
        best = min(children[here], key=lambda k: (-nodes[k][1], k))
        if nodes[best][1] <= 0 or (here and 2 * nodes[best][1] < nodes[here][1]):
            break
        here = best
    if not here:
        return "", "", 0, 0
    comm, exposed, fulls = nodes[here]
    full = PATH_SEP.join(next(iter(fulls))) if len(fulls) == 1 else ""
    return PATH_SEP.join(here), full, comm, exposed


def _tree(attribution: Attribution) -> tuple[list[TreeNode], dict[int, int]]:
    """The exposed tree of every rank, depth first; past TREE_LIMIT nodes a rank keeps its most exposed
    nodes and their ancestors."""
    tree = attribution.by_path()
    nodes = [TreeNode(int(r.rank), str(r.path), int(r.depth), str(r.name), int(r.comm_ns), int(r.hidden_ns),
                      int(r.exposed_ns), int(r.instances)) for r in tree.itertuples(index=False)]
    out, left_out = [], {}
    for rank in dict.fromkeys(n.rank for n in nodes):
        mine = [n for n in nodes if n.rank == rank]
        if len(mine) > TREE_LIMIT:
            keep_paths = {n.path for n in sorted(mine, key=lambda n: -n.exposed_ns)[:TREE_LIMIT]}
            parts = {n.path: attribution.components.get(n.path) for n in mine}
            for p in list(keep_paths):
                comps = parts.get(p) or ()
                keep_paths |= {PATH_SEP.join(comps[:d]) for d in range(len(comps))}
            left_out[rank] = sum(n.path not in keep_paths for n in mine)
            mine = [n for n in mine if n.path in keep_paths]
        out += mine
    return out, left_out


# ---- timelines ------------------------------------------------------------------------------------


def rank_timeline(trace: Trace, rank: int, regions: list[str] | tuple[str, ...] = (),
                  findings: list[Finding] = (), *, launch: LaunchPoints | None = None,
                  step_of: pd.Categorical | None = None) -> RankTimeline:
    """Lanes of one rank: one per stream, hidden and exposed comm, one per region and one of the
    profiler steps, both on GPU time (each range from the first to the last GPU op launched in it)."""
    launch = launch_points(trace) if launch is None else launch
    step_of = steps_of(trace, launch) if step_of is None else step_of
    on_rank = trace.gpu_ops["rank"].to_numpy() == rank
    ops = trace.gpu_ops[on_rank]
    idx = np.flatnonzero(on_rank)
    ranges = trace.ranges[(trace.ranges["rank"].to_numpy() == rank)
                          & (trace.ranges["source"] != "gpu_user_annotation").to_numpy()]
    starts, ends = ops["start"].to_numpy(), ops["end"].to_numpy()
    op_class = ops["op_class"].astype(str).to_numpy()
    comm = iv.union(starts[op_class == "comm"], ends[op_class == "comm"])
    compute = iv.union(starts[op_class == "compute"], ends[op_class == "compute"])
    steps = _rank_steps(step_of, idx, starts, ends)
    region_spans = []
    for r in regions:
        matched = ranges[_matches(ranges["name"], r)]
        region_spans.append((f"region /{r}/", *gpu_spans(matched, launch, idx, starts, ends)))
    lo, hi = _extent([starts, ends])
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
    for label, s, e, n in region_spans:
        lanes.append(Lane(label, [_track("region", s, e, pd.Series(n, dtype=object), edges)]))
    if steps:
        lanes.append(Lane("profiler steps", [_track(
            "step", np.array([s.start_ns for s in steps], np.int64), np.array([s.end_ns for s in steps], np.int64),
            pd.Series([s.name for s in steps], dtype=object), edges)]))
    marks = [RaceMark(i + 1, *race_span(f)) for i, f in enumerate(findings) if f.rank == rank]
    return RankTimeline(rank, lo, hi, lanes, marks, steps)


def gpu_spans(ranges: pd.DataFrame, launch: LaunchPoints, idx: np.ndarray, starts: np.ndarray,
              ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """For each host range of one rank: the first start and the last end of the GPU ops (`idx`, rows of
    trace.gpu_ops, with their `starts`/`ends`) launched inside it on its thread (start <= launch < end).
    Ranges that launched nothing are left out. One pass per thread, none per range or op."""
    out_s, out_e, out_n = [], [], []
    if len(ranges) and idx.size:
        pid, tid, when = launch.pid[idx], launch.tid[idx], launch.time[idx]
        for (p, t), group in ranges.groupby(["pid", "tid"], sort=False, observed=True):
            on = np.flatnonzero((pid == p) & (tid == t) & (tid != NO_ID))
            if not on.size:
                continue
            on = on[np.argsort(when[on], kind="stable")]
            at = when[on]
            lo = np.searchsorted(at, group["start"].to_numpy(np.int64), side="left")
            hi = np.searchsorted(at, group["end"].to_numpy(np.int64), side="left")
            pairs = np.stack([lo, hi], axis=1).ravel()
            first = np.minimum.reduceat(np.append(starts[on], 0), pairs)[0::2]
            last = np.maximum.reduceat(np.append(ends[on], 0), pairs)[0::2]
            some = hi > lo
            out_s.append(first[some])
            out_e.append(last[some])
            out_n += group["name"].astype(str).to_numpy()[some].tolist()
    if not out_s:
        return np.empty(0, np.int64), np.empty(0, np.int64), []
    s, e = np.concatenate(out_s).astype(np.int64), np.concatenate(out_e).astype(np.int64)
    order = np.argsort(s, kind="stable")
    return s[order], e[order], [out_n[i] for i in order]


def _rank_steps(step_of: pd.Categorical, idx: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[StepWindow]:
    codes = np.asarray(step_of.codes)[idx]
    some = codes >= 0
    if not some.any():
        return []
    frame = pd.DataFrame({"code": codes[some], "start": starts[some], "end": ends[some]})
    agg = frame.groupby("code", sort=True).agg(start=("start", "min"), end=("end", "max"), ops=("start", "size"))
    cats = list(step_of.categories)
    out = [StepWindow(str(cats[c]), int(r.start), int(r.end), int(r.ops)) for c, r in zip(agg.index, agg.itertuples())]
    return sorted(out, key=lambda s: _step_key(s.name))


def _run_steps(timelines: list[RankTimeline]) -> list[StepWindow]:
    """Each step over all ranks: from its first GPU op on any rank to its last."""
    merged: dict[str, list[int]] = {}
    for t in timelines:
        for s in t.steps:
            m = merged.setdefault(s.name, [s.start_ns, s.end_ns, 0])
            m[0], m[1], m[2] = min(m[0], s.start_ns), max(m[1], s.end_ns), m[2] + s.ops
    return sorted((StepWindow(n, a, b, k) for n, (a, b, k) in merged.items()), key=lambda s: _step_key(s.name))


def _median_step(steps: list[StepWindow]) -> StepWindow | None:
    """The median step by GPU span (the lower median; ties: the earlier step)."""
    if not steps:
        return None
    ranked = sorted(range(len(steps)), key=lambda i: (steps[i].span_ns, i))
    return steps[ranked[(len(steps) - 1) // 2]]


def _padded(step: StepWindow | None, extent: tuple[int, int]) -> tuple[int, int]:
    lo, hi = (step.start_ns, step.end_ns) if step else extent
    pad = int((hi - lo) * VIEW_PAD)
    return lo - pad, hi + pad


def _step_key(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else -1, name)


def race_span(f: Finding) -> tuple[int, int]:
    """From the first of the two racing accesses' starts to the last of their ends (ns)."""
    return min(f.first.start_ns, f.second.start_ns), max(f.first.end_ns, f.second.end_ns)


def _track(kind: str, starts: np.ndarray, ends: np.ndarray, names: pd.Series | None, edges: np.ndarray) -> Track:
    if starts.size > DETAIL_LIMIT:
        order = np.argsort(starts, kind="stable")
        s, e = starts[order], ends[order]
        codes, table = None, None
        if names is not None:
            cat = pd.Categorical(names.to_numpy()[order] if not isinstance(names.dtype, pd.CategoricalDtype)
                                 else names.iloc[order]).remove_unused_categories()
            codes, table = np.asarray(cat.codes, dtype=np.int64), [str(c) for c in cat.categories]
        return Track(kind, int(starts.size), starts=s, ends=e, edges=edges, covered=iv.coverage(starts, ends, edges),
                     detail_codes=codes, name_table=table, detail_windows=[(int(s[0]), int(e.max()))],
                     detail_complete=True)
    labels = None if names is None else names.astype(str).tolist()
    return Track(kind, int(starts.size), starts=starts, ends=ends, names=labels)


def fit_detail(timelines: list[RankTimeline], steps: list[StepWindow], representative: StepWindow | None,
               budget: int | None = None) -> list[str]:
    """Keep at most `budget` (DETAIL_BUDGET) spans of the binned tracks for the zoomed-in detail: all
    of them when they fit, else per rank the spans of whole windows (the steps nearest the
    representative one, or tenths of the run without steps) while they fit. The notes for the page."""
    budget = DETAIL_BUDGET if budget is None else budget
    binned = [(t, lane, tr) for t in timelines for lane in t.lanes for tr in lane.tracks if tr.binned]
    total = sum(tr.count for _, _, tr in binned)
    notes = []
    for t, lane, tr in binned:
        notes.append(f"rank {t.rank}, {lane.label}: {tr.count:,} {tr.kind} spans drawn as the covered fraction of "
                     f"{COVERAGE_BINS:,} bins of {(tr.edges[-1] - tr.edges[0]) / COVERAGE_BINS / 1e3:,.2f} µs "
                     f"(more than {DETAIL_LIMIT:,} spans in the lane)")
    if total <= budget:
        return notes
    per_rank = budget // max(len(timelines), 1)
    for t in timelines:
        tracks = [tr for lane in t.lanes for tr in lane.tracks if tr.binned]
        if not tracks:
            continue
        windows = _candidate_windows(steps, representative, t)
        kept: list[tuple[int, int]] = []
        used = 0
        for lo, hi in windows:
            n = sum(int(np.searchsorted(tr.starts, hi) - np.searchsorted(tr.starts, lo)) for tr in tracks)
            if used + n > per_rank:
                continue
            kept.append((lo, hi))
            used += n
        for tr in tracks:
            keep = np.zeros(tr.starts.size, bool)
            for lo, hi in kept:
                keep[np.searchsorted(tr.starts, lo):np.searchsorted(tr.starts, hi)] = True
            tr.starts, tr.ends = tr.starts[keep], tr.ends[keep]
            tr.detail_codes = None if tr.detail_codes is None else tr.detail_codes[keep]
            tr.detail_windows = sorted(kept)
            tr.detail_complete = False
        shown = ", ".join(_window_name(w, steps) for w in sorted(kept)) or "none"
        notes.append(f"rank {t.rank}: the page holds span-by-span detail of its aggregated lanes only in these "
                     f"windows (at most {per_rank:,} spans per rank): {shown}; elsewhere zooming shows the bins")
    return notes


def _candidate_windows(steps: list[StepWindow], representative: StepWindow | None,
                       t: RankTimeline) -> list[tuple[int, int]]:
    if steps:
        mine = {s.name: s for s in t.steps}
        at = next((i for i, s in enumerate(steps) if representative and s.name == representative.name), 0)
        order = sorted(range(len(steps)), key=lambda i: (abs(i - at), i))
        return [(mine[steps[i].name].start_ns, mine[steps[i].name].end_ns + 1) for i in order
                if steps[i].name in mine]
    edges = np.linspace(t.start_ns, t.end_ns + 1, 11).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _window_name(window: tuple[int, int], steps: list[StepWindow]) -> str:
    return next((s.name for s in steps if s.start_ns <= window[0] <= s.end_ns), f"{window[0]}–{window[1]} ns")


# ---- facts and helpers ----------------------------------------------------------------------------


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
