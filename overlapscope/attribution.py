"""Where the exposed communication is: every communication kernel instance, attributed.

For each GPU op of class *comm* (one row per kernel instance) `attribute` gives:

- ``rank``, ``stream``, ``start_ns``, ``end_ns``, ``kernel`` (its name);
- ``comm_ns``: the instance's own duration, ``end_ns - start_ns``;
- ``hidden_ns``: the part of ``[start_ns, end_ns)`` covered by K, the union of ALL compute ops of
  the rank (every stream, any scope: DESIGN.md, "Overlap"); ``exposed_ns = comm_ns - hidden_ns``;
- ``step``: the ``ProfilerStep#N`` range whose window holds the launching call. A step is a window
  of the whole process: a launch by any thread of the same process (pid) inside it belongs to it.
  "" when no step holds the launch, or the op has no launch event;
- ``range_path``: the host ranges (NVTX or ``record_function`` / user annotations; not ``cpu_op``,
  not profiler steps, not Kineto's GPU copies of annotations) that enclose the launching call on
  the launching thread, outermost to innermost, joined with " > "
  (``tbo/block > tbo/l3/mb1/combine_outputs``). Ranges a communication library opens around its
  own calls (`trace.where.LIBRARY_RANGE`: ``nccl:all_reduce``, ``ncclAllReduce``, ``c10d::...``,
  ``record_param_comms``) are left out, so the path names the user's code. "" when no range
  encloses the launch, or the op has no launch event. A range encloses a launch when
  ``start <= t < end``; ranges that overlap without nesting are all listed, by start.
  `overlapscope.instrument` access marks appear as ``osacc:<label>`` (without their buffers and
  addresses, which differ between ranks and runs).

Per-instance numbers are about that instance alone. Two communication instances can overlap each
other (two streams), so the sums of ``comm_ns`` / ``exposed_ns`` over instances (and the tree of
`Attribution.by_path`, which adds them up) can exceed a scope's ``comm_ns`` / ``exposed_comm_ns`` in
`overlapscope.overlap`, which measure the *union* of the scope's communication. On a rank whose
communication never overlaps itself they are equal.

Columnar: the covered length of each instance is a difference of the prefix-measure of the compute
union at its two ends (binary search); the enclosing ranges of every launch are found level by level
with a sparse table over range ends. No Python loop runs over kernels or ranges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import intervals as iv
from .trace.links import launch_points, steps_of
from .trace.model import NO_ID, Trace
from .trace.where import LIBRARY_RANGE, REGION_SOURCES

PATH_SEP = " > "
INSTANCE_COLUMNS = ("rank", "step", "range_path", "kernel", "stream", "start_ns", "end_ns", "comm_ns",
                    "hidden_ns", "exposed_ns")
# keys of each instance in `Attribution.to_dict` (and `analyze --json`'s "exposed")
JSON_INSTANCE_KEYS = ("rank", "step", "range_path", "kernel", "stream", "start_ns", "end_ns", "comm_ns",
                      "exposed_ns")
PATH_COLUMNS = ("rank", "path", "depth", "name", "comm_ns", "hidden_ns", "exposed_ns", "instances",
                "self_exposed_ns")
JSON_PATH_KEYS = ("rank", "path", "depth", "comm_ns", "exposed_ns", "instances")
_SUMS = ("comm_ns", "hidden_ns", "exposed_ns")
# `overlapscope.instrument` access marks ("osacc:<label>|on=...|r=<buf>@<addr>+<n>|w=..."): in a path
# they keep only "osacc:<label>", so paths do not differ by buffer address between ranks and runs
_ACCESS_MARK = re.compile(r"^(osacc:[^|]*)\|.*$", re.DOTALL)
# the collective of a communication kernel, from its name (NCCL/RCCL, DeepEP, custom all-reduces)
_FAMILY = re.compile(r"all_?reduce|all_?gather|reduce_?scatter|all_?to_?all|broadcast|send_?recv|"
                     r"dispatch|combine|reduce|send|recv", re.IGNORECASE)
_CUSTOM_ALL_REDUCE = re.compile(r"cross_device_reduce|quick_?reduce", re.IGNORECASE)


@dataclass
class Attribution:
    """The communication kernel instances of a run, one row each (columns `INSTANCE_COLUMNS`)."""

    instances: pd.DataFrame
    # range_path -> its components (names may themselves contain " > ")
    components: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def worst(self, top: int = 20) -> pd.DataFrame:
        """The `top` instances by exposed time, largest first (ties: earlier start, lower rank)."""
        df = self.instances
        order = np.lexsort((df["stream"].to_numpy(), df["rank"].to_numpy(), df["start_ns"].to_numpy(),
                            -df["exposed_ns"].to_numpy()))
        return df.iloc[order[:max(int(top), 0)]].reset_index(drop=True)

    def by_path(self) -> pd.DataFrame:
        """The exposed tree, like a profiler's call tree: per rank a root (path "", depth 0: all
        instances) and one node per prefix of every range path, each inclusive of its descendants
        (``self_exposed_ns``: only the instances whose path ends at the node). Rows in depth-first
        order, children by exposed time, largest first."""
        df = self.instances
        if len(df) == 0:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c not in ("path", "name") else object)
                                 for c in PATH_COLUMNS})
        grouped = df.groupby(["rank", "range_path"], observed=True, sort=False)
        sums = grouped[list(_SUMS)].sum()
        counts = grouped.size()
        nodes: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        # loops over distinct (rank, path) pairs and their prefixes, not over instances
        for (rank, path), row, n in zip(sums.index, sums.itertuples(index=False), counts.to_numpy()):
            parts = self._components_of(str(path))
            for d in range(len(parts) + 1):
                acc = nodes.setdefault((int(rank), parts[:d]), [0, 0, 0, 0, 0])
                acc[0] += int(row.comm_ns)
                acc[1] += int(row.hidden_ns)
                acc[2] += int(row.exposed_ns)
                acc[3] += int(n)
                if d == len(parts):
                    acc[4] += int(row.exposed_ns)

        def sort_key(key: tuple[int, tuple[str, ...]]) -> tuple:
            rank, parts = key
            return (rank, [(-nodes[(rank, parts[:d])][2], parts[d - 1]) for d in range(1, len(parts) + 1)])

        rows = [(rank, PATH_SEP.join(parts), len(parts), parts[-1] if parts else "", *nodes[(rank, parts)])
                for rank, parts in sorted(nodes, key=sort_key)]
        out = pd.DataFrame(rows, columns=list(PATH_COLUMNS))
        return out.astype({c: "int64" for c in PATH_COLUMNS if c not in ("path", "name")})

    def by_kernel(self) -> pd.DataFrame:
        """Per rank and kernel name: its collective family (from the name), total comm, hidden and
        exposed time and instance count, most exposed first."""
        out = self._grouped(["rank", "kernel"])
        names = out["kernel"].astype(str)
        out.insert(1, "family", [_family(n) for n in names])
        return out

    def by_step(self) -> pd.DataFrame:
        """Per rank and profiler step ("" for instances outside every step): totals over its
        instances, in step order."""
        out = self._grouped(["rank", "step"])
        number = out["step"].astype(str).str.extract(r"(\d+)$")[0].astype(float).fillna(-1)
        order = np.lexsort((out["step"].astype(str).to_numpy(), number.to_numpy(), out["rank"].to_numpy()))
        return out.iloc[order].reset_index(drop=True)

    def to_dict(self, top: int = 20) -> dict:
        """JSON-able: the `top` worst instances and the exposed tree (plain ints and strs)."""
        worst = self.worst(top)
        instances = [{k: _plain(v) for k, v in zip(JSON_INSTANCE_KEYS, row)}
                     for row in worst[list(JSON_INSTANCE_KEYS)].itertuples(index=False)]
        tree = self.by_path()
        paths = [{k: _plain(v) for k, v in zip(JSON_PATH_KEYS, row)}
                 for row in tree[list(JSON_PATH_KEYS)].itertuples(index=False)]
        return {"instances": instances, "paths": paths}

    def _grouped(self, keys: list[str]) -> pd.DataFrame:
        df = self.instances
        grouped = df.groupby(keys, observed=True, sort=False)
        out = grouped[list(_SUMS)].sum()
        out["instances"] = grouped.size()
        out = out.reset_index()
        for k in keys:
            if isinstance(out[k].dtype, pd.CategoricalDtype):
                out[k] = out[k].astype(str)
        order = np.lexsort((out[keys[-1]].astype(str).to_numpy(), -out["exposed_ns"].to_numpy(),
                            out["rank"].to_numpy()))
        return out.iloc[order].reset_index(drop=True)

    def _components_of(self, path: str) -> tuple[str, ...]:
        if path in self.components:
            return self.components[path]
        return tuple(path.split(PATH_SEP)) if path else ()


def attribute(trace: Trace, exclude: np.ndarray | None = None) -> Attribution:
    """Every communication kernel instance of a classified trace, with its step, range path,
    hidden and exposed time (see the module docstring for each column's definition).

    `exclude`: a boolean mask over ``trace.gpu_ops`` of ops to drop entirely, as if absent: they
    are neither communication instances nor compute that hides any (``--exclude-kernel``)."""
    ops = trace.gpu_ops
    n = len(ops)
    keep = np.ones(n, dtype=bool)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != (n,):
            raise ValueError(f"exclude: a mask over gpu_ops needs {n} values, got {exclude.shape}")
        keep = ~exclude
    op_class = ops["op_class"]
    is_comm = keep & (op_class == "comm").to_numpy()
    is_compute = keep & (op_class == "compute").to_numpy()
    idx = np.flatnonzero(is_comm)

    rank_all = ops["rank"].to_numpy().astype(np.int64)
    start_all, end_all = ops["start"].to_numpy(), ops["end"].to_numpy()
    rank, start = rank_all[idx], start_all[idx]
    end = np.maximum(end_all[idx], start)
    hidden = _hidden(rank_all, start_all, end_all, is_compute, rank, start, end)

    launch = launch_points(trace)
    l_pid, l_tid, l_time, launched = launch.pid[idx], launch.tid[idx], launch.time[idx], launch.launched[idx]
    steps = steps_of(trace, launch)
    step = _categorical(np.asarray(steps.codes)[idx], steps.categories)
    path, components = _range_paths(trace.ranges, rank, l_pid, l_tid, l_time, launched)

    names = ops["name"]
    kernel = pd.Categorical.from_codes(names.cat.codes.to_numpy()[idx], names.cat.categories)
    df = pd.DataFrame({
        "rank": rank,
        "step": step,
        "range_path": path,
        "kernel": kernel,
        "stream": ops["stream"].to_numpy()[idx].astype(np.int64),
        "start_ns": start,
        "end_ns": end,
        "comm_ns": end - start,
        "hidden_ns": hidden,
        "exposed_ns": end - start - hidden,
    })
    order = np.lexsort((df["stream"].to_numpy(), start, rank))
    df = df.iloc[order].reset_index(drop=True)
    for c in ("step", "range_path", "kernel"):
        df[c] = df[c].cat.remove_unused_categories()
    return Attribution(df, components)


def _hidden(rank_all: np.ndarray, start_all: np.ndarray, end_all: np.ndarray, is_compute: np.ndarray,
            rank: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """For each instance [start, end) of `rank`: its length covered by the union of the rank's
    compute ops. One union per rank; per instance two binary searches on the union's prefix sums."""
    hidden = np.zeros(rank.size, dtype=np.int64)
    if rank.size == 0:
        return hidden
    c_idx = np.flatnonzero(is_compute)
    c_rank = rank_all[c_idx]
    c_order = np.argsort(c_rank, kind="stable")
    c_idx, c_rank = c_idx[c_order], c_rank[c_order]
    i_order = np.argsort(rank, kind="stable")
    i_rank = rank[i_order]
    for r in np.unique(rank):  # loop over ranks
        lo, hi = np.searchsorted(c_rank, [r, r + 1])
        mine = c_idx[lo:hi]
        k = iv.union(start_all[mine], end_all[mine])
        if k[0].size == 0:
            continue
        a, b = np.searchsorted(i_rank, [r, r + 1])
        inst = i_order[a:b]
        hidden[inst] = iv.covered_before(k, end[inst]) - iv.covered_before(k, start[inst])
    return hidden


def _range_paths(ranges: pd.DataFrame, rank: np.ndarray, pid: np.ndarray, tid: np.ndarray, time: np.ndarray,
                 launched: np.ndarray) -> tuple[pd.Categorical, dict[str, tuple[str, ...]]]:
    """The enclosing user ranges of each launch on its thread, as a path (see `attribute`)."""
    user = ranges[ranges["source"].isin(REGION_SOURCES).to_numpy()]
    categories = user["name"].cat.categories
    name_codes = user["name"].cat.codes.to_numpy()
    library = pd.Series(categories, dtype=object).astype(str).str.contains(LIBRARY_RANGE, regex=True).to_numpy()
    user_ok = (name_codes >= 0) & ~library[np.maximum(name_codes, 0)] if len(categories) else name_codes >= 0
    user, name_codes = user[user_ok], name_codes[user_ok]
    empty = (pd.Categorical.from_codes(np.zeros(rank.size, dtype=np.int64), [""]), {"": ()})
    at = np.flatnonzero(launched)
    if len(user) == 0 or at.size == 0:
        return empty
    r_keys, p_keys = _keys((user["rank"].to_numpy(), user["pid"].to_numpy(), user["tid"].to_numpy()),
                           (rank[at], pid[at], tid[at]))
    finder = _Enclosing(r_keys, user["start"].to_numpy(), user["end"].to_numpy())
    sorted_names = name_codes[finder.order]
    # levels[d][i]: name code of the d-th enclosing range of launch at[i], innermost first (-1: none)
    levels: list[np.ndarray] = []
    active = np.arange(at.size)
    hi = finder.position(p_keys, time[at])
    t = time[at]
    while active.size:
        found = finder.enclosing(p_keys[active], t[active], hi)
        hit = found >= 0
        level = np.full(at.size, -1, dtype=np.int64)
        level[active[hit]] = sorted_names[found[hit]]
        if not hit.any():
            break
        levels.append(level)
        active, hi = active[hit], found[hit]
    if not levels:
        return empty
    # outermost first: shift each launch's chain so its outermost range is in column 0
    inner_first = np.stack(levels, axis=1)
    depth = (inner_first >= 0).sum(axis=1)
    width = inner_first.shape[1]
    col = np.arange(width)
    src = depth[:, None] - 1 - col[None, :]
    outer_first = np.where(src >= 0, np.take_along_axis(inner_first, np.maximum(src, 0), axis=1), -1)
    distinct, inverse = np.unique(outer_first, axis=0, return_inverse=True)
    components: dict[str, tuple[str, ...]] = {}
    labels: list[str] = []
    shown = [_ACCESS_MARK.sub(r"\1", str(c)) for c in categories]
    for row in distinct:  # one per distinct path
        parts = tuple(shown[c] for c in row if c >= 0)
        label = PATH_SEP.join(parts)
        components[label] = parts
        labels.append(label)
    path_codes = np.full(rank.size, -1, dtype=np.int64)
    path_codes[at] = inverse.reshape(-1)
    if "" not in components:
        components[""] = ()
        labels.append("")
    path_codes[path_codes < 0] = labels.index("")
    # two distinct code rows can only give one label when a name is empty; merge them
    uniq_labels, label_codes = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    return pd.Categorical.from_codes(label_codes[path_codes], list(uniq_labels)), components


class _Enclosing:
    """Ranges grouped by an int key, sorted by (key, start, -end). For a point t of group g it
    answers which ranges contain it (start <= t < end), latest-opened first, with a sparse table
    of the maximum end over power-of-two runs: each query is a descent of log2(n) vector steps."""

    def __init__(self, keys: np.ndarray, starts: np.ndarray, ends: np.ndarray):
        keys = np.asarray(keys, dtype=np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        ends = np.asarray(ends, dtype=np.int64)
        self.order = np.lexsort((-ends, starts, keys))
        self.keys, self.starts, self.ends = keys[self.order], starts[self.order], ends[self.order]
        self.table = [self.ends]
        width = 1
        while 2 * width <= self.ends.size:
            prev = self.table[-1]
            self.table.append(np.maximum(prev[:-width], prev[width:]))
            width *= 2

    def position(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        """For each point: one past the last range of its group starting at or before t."""
        lo, hi = self.bounds(keys)
        out = lo.copy()
        has = hi > lo
        if not has.any():
            return out
        # lay the groups' time axes end to end (group g's starts mapped into its own window), so
        # one binary search over all ranges counts the starts at or before t within the group
        first = np.flatnonzero(np.r_[True, self.keys[1:] != self.keys[:-1]])
        last = np.r_[first[1:], self.keys.size] - 1
        base, top = self.starts[first], self.starts[last]
        offset = np.r_[0, np.cumsum(top - base + 2)[:-1]]
        group = np.searchsorted(first, np.arange(self.keys.size), side="right") - 1
        axis = self.starts - base[group] + offset[group] + 1
        g = np.searchsorted(first, lo[has], side="right") - 1
        tt = np.clip(t[has], base[g] - 1, top[g])
        out[has] = np.searchsorted(axis, tt - base[g] + offset[g] + 1, side="right")
        return out

    def bounds(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.searchsorted(self.keys, keys, side="left"), np.searchsorted(self.keys, keys, side="right")

    def enclosing(self, keys: np.ndarray, t: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """For each point: the last position q < hi of its group with ends[q] > t (-1: none). With
        hi from `position`, that is the latest-opened range containing t; with hi = a previous
        answer, the next one out."""
        lo, _ = self.bounds(keys)
        pos = np.asarray(hi, dtype=np.int64).copy()
        for j in range(len(self.table) - 1, -1, -1):
            w = 1 << j
            cand = pos - w
            ok = cand >= lo
            ok[ok] = self.table[j][cand[ok]] <= t[ok]
            pos[ok] = cand[ok]
        q = pos - 1
        found = q >= lo
        found[found] = self.ends[q[found]] > t[found]
        return np.where(found, q, -1)

    def innermost(self, keys: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.enclosing(keys, t, self.position(keys, t))


def _keys(*parts: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """One int64 per distinct tuple of columns, consistent across all the parts given."""
    sizes = [len(p[0]) for p in parts]
    cols = [np.concatenate([np.asarray(p[i], dtype=np.int64) for p in parts]) for i in range(len(parts[0]))]
    if sum(sizes) == 0:
        return [np.empty(0, dtype=np.int64) for _ in parts]
    frame = pd.DataFrame({str(i): c for i, c in enumerate(cols)})
    codes = frame.groupby(list(frame.columns), sort=True).ngroup().to_numpy().astype(np.int64)
    return np.split(codes, np.cumsum(sizes)[:-1])


def _categorical(codes: np.ndarray, categories: pd.Index) -> pd.Categorical:
    """Names by code, "" where the code is -1."""
    cats = [str(c) for c in categories]
    if "" not in cats:
        cats.append("")
    codes = np.where(codes >= 0, codes, cats.index(""))
    uniq, remap = np.unique(np.asarray(cats, dtype=object), return_inverse=True)
    return pd.Categorical.from_codes(remap[codes], list(uniq))


def _family(kernel: str) -> str:
    if _CUSTOM_ALL_REDUCE.search(kernel):
        return "allreduce"
    m = _FAMILY.search(kernel)
    return m.group(0).lower().replace("_", "") if m else kernel


def _plain(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v if isinstance(v, (int, float, str)) or v is None else str(v)
