"""Pairs of accesses to overlapping memory, at least one a write, with no happens-before path.

Memory is cut into elementary segments (between every access's boundaries, per space), so two
accesses overlap iff they share a segment. Within a segment, accesses are taken in an order
consistent with happens-before (launch time; a host access at its start). For each access b and
each other agent A (a stream, or a host thread), only A's latest earlier access is checked: a
write is checked against A's latest access of any kind, a read against A's latest write. If that
one is ordered before b, all of A's earlier ones are too (program order), so nothing is lost but
repeats. Everything is vectorised: a pass per agent, not per access.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .hb import HappensBefore


@dataclass
class Accessors:
    """Per access row: who made it, when, and what it knows (built by `accessors`)."""

    agent: np.ndarray  # stream or thread component; threads without CUDA calls get ids past the clock
    key: np.ndarray  # order consistent with HB
    tiebreak: np.ndarray
    src_comp: np.ndarray  # as the earlier side: component (-1: nothing can learn of it) ...
    src_pos: np.ndarray  # ... and position
    is_host: np.ndarray
    row: np.ndarray  # op row (GPU) or index into host_clock (host)
    host_clock: np.ndarray  # (host accesses, components): what the host knew at each host access's start


def accessors(table: pd.DataFrame, hb: HappensBefore, ranges: pd.DataFrame) -> Accessors:
    op = table["op"].to_numpy(np.int64)
    host = table["host"].to_numpy(np.int64)
    is_host = op < 0
    n = len(table)
    agent = np.zeros(n, np.int64)
    key = np.zeros(n, np.int64)
    tiebreak = np.zeros(n, np.int64)
    src_comp = np.full(n, -1, np.int64)
    src_pos = np.zeros(n, np.int64)
    row = np.zeros(n, np.int64)
    g = np.flatnonzero(~is_host)
    agent[g] = hb.op_comp[op[g]]
    key[g] = hb.op_key[op[g]]
    tiebreak[g] = hb.op_pos[op[g]]
    src_comp[g] = hb.op_comp[op[g]]
    src_pos[g] = hb.op_pos[op[g]]
    row[g] = op[g]
    h = np.flatnonzero(is_host)
    host_clock = np.zeros((h.size, len(hb.components)), dtype=hb.op_clock.dtype)
    if h.size:
        r = ranges.iloc[host[h]]
        pid, tid = r["pid"].to_numpy(np.int64), r["tid"].to_numpy(np.int64)
        start, end = r["start"].to_numpy(np.int64), r["end"].to_numpy(np.int64)
        comp = np.array([hb.thread_of(p, t) for p, t in zip(pid, tid)], dtype=np.int64)
        # threads that make no CUDA calls still order their own ranges: give each its own agent
        uncounted = {pt: len(hb.components) + i for i, pt in enumerate(sorted(set(zip(pid[comp < 0], tid[comp < 0]))))}
        agent[h] = [c if c >= 0 else uncounted[(p, t)] for c, p, t in zip(comp, pid, tid)]
        key[h] = start
        tiebreak[h] = end
        src_comp[h] = comp
        src_pos[h] = hb.instant_source(comp, end)
        row[h] = np.arange(h.size)
        host_clock = hb.instant_clock(comp, start)
    return Accessors(agent, key, tiebreak, src_comp, src_pos, is_host, row, host_clock)


def happens_before_pairs(who: Accessors, hb: HappensBefore, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether access a happens before access b (vectorised over pairs)."""
    comp = who.src_comp[a]
    known = comp >= 0
    seen = np.zeros(a.size, np.int64)
    if len(hb.components):
        safe = np.where(known, comp, 0)
        on_gpu = ~who.is_host[b]
        g, h = np.flatnonzero(on_gpu), np.flatnonzero(~on_gpu)
        seen[g] = hb.op_clock[who.row[b[g]], safe[g]]
        seen[h] = who.host_clock[who.row[b[h]], safe[h]]
    return known & (seen >= who.src_pos[a])


def unordered_conflicts(table: pd.DataFrame, who: Accessors, hb: HappensBefore) -> pd.DataFrame:
    """Columns a, b: access rows with overlapping memory, at least one a write, neither ordered
    before the other; a comes first in launch order."""
    pairs = conflicting_pairs(table, who)
    if not len(pairs):
        return pairs
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    unordered = ~happens_before_pairs(who, hb, a, b) & ~happens_before_pairs(who, hb, b, a)
    return pairs[unordered].reset_index(drop=True)


def conflicting_pairs(table: pd.DataFrame, who: Accessors) -> pd.DataFrame:
    """Columns a, b: the pairs whose order the checker decides: access rows with overlapping memory,
    at least one a write, by different agents, b with each other agent's latest earlier
    conflicting access (a first in launch order). Ordered or not."""
    empty = pd.DataFrame({"a": np.empty(0, np.int64), "b": np.empty(0, np.int64)})
    lo, hi = table["lo"].to_numpy(np.int64), table["hi"].to_numpy(np.int64)
    space = table["space"].to_numpy(np.int64)
    valid = np.flatnonzero(hi > lo)
    if valid.size < 2:
        return empty
    acc, seg, seg_space = _segments(space[valid], lo[valid], hi[valid])
    acc = valid[acc]
    write = table["write"].to_numpy(bool)
    order = np.lexsort((who.tiebreak[acc], who.key[acc], seg, seg_space))
    acc, seg, seg_space = acc[order], seg[order], seg_space[order]
    m = acc.size
    idx = np.arange(m)
    new_group = np.ones(m, bool)
    new_group[1:] = (seg[1:] != seg[:-1]) | (seg_space[1:] != seg_space[:-1])
    group_start = np.maximum.accumulate(np.where(new_group, idx, 0))
    agent, w = who.agent[acc], write[acc]
    pairs_a, pairs_b = [], []
    for A in np.unique(agent):
        mine = agent == A
        last_any = _prior(np.where(mine, idx, -1))
        last_write = _prior(np.where(mine & w, idx, -1))
        cand = np.where(w, last_any, last_write)
        ok = (~mine) & (cand >= group_start) & (cand >= 0)
        pairs_a.append(acc[cand[ok]])
        pairs_b.append(acc[ok])
    if not pairs_a:
        return empty
    pairs = pd.DataFrame({"a": np.concatenate(pairs_a), "b": np.concatenate(pairs_b)})
    return pairs.drop_duplicates(ignore_index=True)


def _prior(marked: np.ndarray) -> np.ndarray:
    """For each position, the largest marked index strictly before it (-1 when none)."""
    running = np.maximum.accumulate(marked)
    return np.concatenate([[-1], running[:-1]])


def _segments(space: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each space at every boundary; (access index, segment, space) per piece."""
    acc_out, seg_out, space_out = [], [], []
    for sp in np.unique(space):
        idx = np.flatnonzero(space == sp)
        bounds = np.unique(np.concatenate([lo[idx], hi[idx]]))
        first = np.searchsorted(bounds, lo[idx])
        count = np.searchsorted(bounds, hi[idx]) - first
        rep = np.repeat(np.arange(idx.size), count)
        within = np.arange(rep.size) - np.repeat(np.cumsum(count) - count, count)
        acc_out.append(idx[rep])
        seg_out.append(first[rep] + within)
        space_out.append(np.full(rep.size, sp, np.int64))
    return np.concatenate(acc_out), np.concatenate(seg_out), np.concatenate(space_out)
