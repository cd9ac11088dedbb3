"""`check_races`: happens-before and accesses per rank, unordered conflicting pairs, the rules."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..collectives import KERNEL_ORDER, kernel_collectives
from ..trace.links import launch_points
from ..trace.et import ExecutionTrace, read_execution_trace
from ..trace.model import Trace
from .accesses import collect_accesses
from .conflicts import Accessors, accessors, conflicting_pairs, happens_before_pairs
from .findings import Access, Finding, RaceReport, RankCoverage, buffer_family
from .hb import HappensBefore, happens_before
from .rules import Joins, Pair, Side, classify, collective_order, collective_order_notes
from .places import op_places, range_places, region_label


def check_races(trace: Trace) -> RaceReport:
    """Every race the run's traces show, what each rank let it check, and why some checks could
    not be made. Pure: reads the Execution Trace files `trace.execution_traces` names, prints nothing."""
    findings: list[Finding] = []
    notes: list[str] = []
    coverage: list[RankCoverage] = []
    collectives = []
    for info in trace.ranks:
        rank = info.rank
        rt = trace.for_rank(rank)
        launch = launch_points(rt)
        hb = happens_before(rt)
        et = _execution_trace(trace, rank)
        acc = collect_accesses(rt, launch, et)
        notes += [f"rank {rank}: {n}" for n in hb.notes + acc.notes]
        regions, steps = op_places(rt, launch)
        checked = left_out = 0
        if len(acc.table):
            found, checked, left_out = _memory_races(rank, rt, hb, acc.table, regions, steps, notes)
            findings += found
            reason = (f"{left_out} conflicting access pair(s) not checked: a wait or synchronize between them could "
                      "not be resolved, so their order is unknown" if left_out else "")
        elif len(rt.gpu_ops):
            notes.append(f"rank {rank}: no memory accesses are known (neither an Execution Trace nor access marks "
                         "give any): only the collective order was checked")
            reason = ("no memory accesses are known: no PyTorch Execution Trace and no overlapscope.instrument "
                      "access marks on this rank")
        else:
            reason = "no GPU work in the trace, and no memory accesses are known"
        colls = _collectives(rank, rt, regions, steps, notes, from_kernels=len(trace.ranks) >= 2)
        collectives.append(colls)
        coverage.append(RankCoverage(rank=rank, accesses_known=len(acc.table), pairs_checked=checked,
                                     pairs_unchecked=left_out, collectives=len(colls), reason=reason))
    colls = pd.concat(collectives, ignore_index=True) if collectives else pd.DataFrame()
    findings += collective_order(colls)
    notes += collective_order_notes(colls)
    findings.sort(key=lambda f: (f.rank, f.second.start_ns, f.rule))
    return RaceReport(findings=findings, notes=notes, unchecked_pairs=sum(c.pairs_unchecked for c in coverage),
                      coverage=coverage)


def _execution_trace(trace: Trace, rank: int) -> ExecutionTrace | None:
    path = trace.execution_traces.get(rank)
    return read_execution_trace(path) if path else None


def _memory_races(rank: int, rt: Trace, hb: HappensBefore, table: pd.DataFrame, regions: np.ndarray,
                  steps: np.ndarray, notes: list[str]) -> tuple[list[Finding], int, int]:
    """The rank's findings, how many conflicting pairs had their order decided, and how many
    unordered pairs were left out as unknown."""
    left_out = 0
    who = accessors(table, hb, rt.ranges)
    pairs = conflicting_pairs(table, who)
    candidates = len(pairs)
    if candidates:
        a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
        pairs = pairs[~happens_before_pairs(who, hb, a, b) & ~happens_before_pairs(who, hb, b, a)]
        pairs = pairs.reset_index(drop=True)
    if len(pairs):
        # a wait or sync we could not resolve lies between the two: their order is unknown, not absent
        a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
        unknown = hb.unresolved_between(who.key[a], who.key[b], np.where(who.is_host[b], -1, who.src_comp[b]))
        if unknown.any():
            left_out = int(unknown.sum())
            notes.append(f"rank {rank}: {int(unknown.sum())} unordered access pair(s) not reported: a wait or "
                         "synchronize between them could not be resolved, so their order is unknown")
            pairs = pairs[~unknown].reset_index(drop=True)
    checked = candidates - left_out
    if not len(pairs):
        return [], checked, left_out
    info = _describe_accesses(rt, table, who, regions, steps)
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    # One finding per (what, stream) pair per step, "what" being a GPU op's region (a label
    # people chose) or else its name, and a host access's mark label: every kernel of a region
    # that races the same writer is one bug with one fix. Marks name buffers better than the
    # Execution Trace's storage ids, so a group shows the buffers its marks name, else its storages.
    what = np.where(info["region"].astype(bool) & ~info["host"], info["region"], info["name"])
    groups = pd.DataFrame({
        "what_a": what[a], "stream_a": info["stream"][a], "what_b": what[b], "stream_b": info["stream"][b],
        "step": info["step"][b], "i": np.arange(a.size),
        # 2: overlapped, 1: inverted (b, issued second, ended before a started), both manifest;
        # 0: latent (a ended before b started). The pair shown for a group is the worst one.
        "manifest": np.where((info["start"][a] < info["end"][b]) & (info["start"][b] < info["end"][a]), 2,
                             np.where(info["end"][b] <= info["start"][a], 1, 0)),
        "mark": (info["source"][a] == "mark") & (info["source"][b] == "mark"),
        "buffer": [x if x == y else f"{x} / {y}" for x, y in zip(info["buffer"][a], info["buffer"][b])],
    })
    key = ["what_a", "stream_a", "what_b", "stream_b", "step"]
    best = groups.sort_values(["manifest", "mark"], ascending=False, kind="stable").drop_duplicates(key)
    named = groups[groups["mark"]].groupby(key, sort=False)["buffer"].agg([_buffers, _family])
    stored = groups[~groups["mark"]].groupby(key, sort=False)["buffer"].agg([_buffers, _family])
    joins = Joins.of(hb.waits, [c[2] for c in hb.components])
    out = []
    for row in best.sort_values("i").itertuples(index=False):
        k = tuple(getattr(row, c) for c in key)
        label, family = (named if k in named.index else stored).loc[k, ["_buffers", "_family"]]
        pair = Pair(rank, _side(info, int(a[row.i])), _side(info, int(b[row.i])), buffers=label, family=family)
        finding = classify(pair, joins)
        if finding is not None:
            out.append(finding)
    return out, checked, left_out


def _family(names: pd.Series) -> str:
    return buffer_family(n for name in set(names) for n in name.split(" / "))


def _buffers(names: pd.Series, limit: int = 3) -> str:
    distinct = sorted(set(names))
    return ", ".join(distinct[:limit]) + (f" and {len(distinct) - limit} more" if len(distinct) > limit else "")


def _describe_accesses(rt: Trace, table: pd.DataFrame, who: Accessors, regions: np.ndarray,
                       steps: np.ndarray) -> dict[str, np.ndarray]:
    """Name, stream, times, region and step of every access row."""
    ops = rt.gpu_ops
    op = table["op"].to_numpy(np.int64)
    n = len(table)
    g = np.flatnonzero(op >= 0)
    h = np.flatnonzero(op < 0)
    out = {
        "name": np.empty(n, object), "stream": np.full(n, -1, np.int64), "start": np.zeros(n, np.int64),
        "end": np.zeros(n, np.int64), "region": np.empty(n, object), "step": np.empty(n, object),
    }
    out["name"][g] = ops["name"].astype(str).to_numpy(object)[op[g]]
    out["stream"][g] = ops["stream"].to_numpy(np.int64)[op[g]]
    out["start"][g] = ops["start"].to_numpy(np.int64)[op[g]]
    out["end"][g] = ops["end"].to_numpy(np.int64)[op[g]]
    out["region"][g] = regions[op[g]]
    out["step"][g] = steps[op[g]]
    if h.size:
        rows = table["host"].to_numpy(np.int64)[h]
        r = rt.ranges.iloc[rows]
        out["name"][h] = [region_label(str(x)) for x in r["name"]]
        out["start"][h] = r["start"].to_numpy(np.int64)
        out["end"][h] = r["end"].to_numpy(np.int64)
        unique_rows, back = np.unique(rows, return_inverse=True)
        reg, stp = range_places(rt, unique_rows)
        out["region"][h] = reg[back]
        out["step"][h] = stp[back]
    out["comp"] = np.where(op >= 0, who.src_comp, -1)
    out["pos"] = np.where(op >= 0, who.src_pos, 0)
    out["key"] = who.key
    out["write"] = table["write"].to_numpy(bool)
    out["host"] = op < 0
    out["buffer"] = table["buffer"].to_numpy(object)
    out["source"] = table["source"].to_numpy(object)
    return out


def _side(info: dict[str, np.ndarray], i: int) -> Side:
    access = Access(name=str(info["name"][i]), stream=int(info["stream"][i]), start_ns=int(info["start"][i]),
                    end_ns=int(info["end"][i]), region=str(info["region"][i] or ""))
    return Side(access=access, write=bool(info["write"][i]), host=bool(info["host"][i]), comp=int(info["comp"][i]),
                pos=int(info["pos"][i]), key=int(info["key"][i]), step=str(info["step"][i] or ""),
                buffer=str(info["buffer"][i]))


def _collectives(rank: int, rt: Trace, regions: np.ndarray, steps: np.ndarray, notes: list[str],
                 from_kernels: bool = True) -> pd.DataFrame:
    """The rank's collective kernels with their NCCL metadata, stream, times, region and step; for a
    rank without collective metadata in a run of several ranks (`from_kernels`), its NCCL kernels
    named by their type (collectives.py), with basis "kernel order (no collective metadata)"."""
    if from_kernels and not len(rt.collectives):
        from_kernels = _kernel_collectives(rank, rt, regions, steps)
        if len(from_kernels):
            return from_kernels
    ops = rt.gpu_ops[["correlation", "name", "stream", "start", "end"]].copy()
    ops["op"] = np.arange(len(ops))
    ops = ops.drop_duplicates("correlation")
    m = rt.collectives.merge(ops, on="correlation", how="inner")
    if len(m) < len(rt.collectives):
        notes.append(f"rank {rank}: {len(rt.collectives) - len(m)} collective record(s) have no kernel in the trace; "
                     "left out of the collective-order check")
    m["rank"] = rank
    m["region"] = regions[m["op"].to_numpy()] if len(m) else []
    m["step"] = steps[m["op"].to_numpy()] if len(m) else []
    for col in ("collective", "process_group", "name"):
        m[col] = m[col].astype(str)
    return m


def _kernel_collectives(rank: int, rt: Trace, regions: np.ndarray, steps: np.ndarray) -> pd.DataFrame:
    m = kernel_collectives(rt, [rank])
    op = m["op"].to_numpy()
    return m.assign(rank=rank, region=regions[op] if len(m) else [], step=steps[op] if len(m) else [],
                    basis=KERNEL_ORDER)
