"""Stragglers: collectives matched across ranks, and the comm kernels that mostly waited for a late peer.

A collective is matched across ranks by its communicator and its sequence number: Kineto's NCCL kernel
args "Process Group Name" and "Seq"; where a trace has no Seq, the order in which the rank ran that
group's collectives (0, 1, 2, ... by kernel start). Nsight Systems exports name no communicator, so all
of a run's NCCL calls count as one group, matched by order. Point-to-point transfers (send/recv) do not
start together on every rank and are left out; so is a match whose ranks disagree on the collective.

A collective cannot finish before its last participant starts it, so on a rank the time from the
kernel's start to the latest peer's start is waiting. A kernel is reported as *waiting* when that gap
exceeds `threshold_ns` and covers more than half of the kernel. Overlap *excluding waiting* measures
again with each waiting kernel trimmed to start at its latest peer's start, so that a straggler does not
masquerade as poorly hidden communication.

A rank whose trace has no collective metadata at all (PyTorch 2.1-era Kineto: no "Collective name",
no "Seq") falls back to its NCCL kernels (collectives.py): the collective type from the kernel name,
the stream as the group ("stream 84"), matched by the order in which the stream ran them. `Skew.basis`
names what the matching rested on: "seq", "order" or "kernel order (no collective metadata)" (several
joined with " + "); `Skew.note` says why, when nothing could be matched.

Ranks' times are compared directly: ranks on one host share a clock; across hosts the clocks must be
synchronised (NTP/PTP) for the gaps to mean anything.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .collectives import KERNEL_ORDER, NOTHING_MATCHED, ORDER, SEQ, describe_basis, kernel_collectives, ranks_text
from .overlap import Analysis, analyze
from .trace.model import NO_ID, Trace

DEFAULT_THRESHOLD_NS = 50_000
_POINT_TO_POINT = re.compile(r"send|recv", re.IGNORECASE)
_KEY = ["process_group", "seq"]
_WAITING_COLUMNS = ["rank", "process_group", "seq", "collective", "kernel", "correlation", "start", "end",
                    "wait", "late_rank", "late_start"]


@dataclass
class Skew:
    """How the run's collectives lined up across ranks."""

    threshold_ns: int
    matched: int  # collectives seen on two or more ranks, with one name
    unmatched: int  # seen on one rank only (its peers' traces missing, or outside their window)
    inconsistent: int  # ranks disagree on what the collective was: not used
    waiting: pd.DataFrame  # one row per waiting kernel, _WAITING_COLUMNS
    excluding_wait: Analysis | None = field(default=None)  # the overlap table with that waiting trimmed
    basis: str = ""  # "seq" | "order" | "kernel order (no collective metadata)", several joined by " + "; "" none
    note: str = ""  # "no collective could be matched across ranks: ..." when none was; else ""

    def to_dict(self) -> dict[str, Any]:
        rows = self.waiting.rename(columns={"start": "start_ns", "end": "end_ns", "wait": "wait_ns",
                                            "late_start": "late_start_ns"})
        return {
            "threshold_ns": self.threshold_ns,
            "collectives_matched": self.matched,
            "collectives_unmatched": self.unmatched,
            "collectives_inconsistent": self.inconsistent,
            "basis": self.basis,
            "note": self.note,
            "waiting": [dict(zip(rows.columns, values)) for values in
                        zip(*(rows[c].tolist() for c in rows.columns))],
            "excluding_wait": None if self.excluding_wait is None else self.excluding_wait.to_dict(),
        }


def skew_of(trace: Trace, regions: list[str] | tuple[str, ...] = (),
            threshold_ns: int = DEFAULT_THRESHOLD_NS) -> Skew:
    """Waiting kernels of a loaded run, and its overlap table with that waiting excluded."""
    skew = find_waiting(collective_summary(trace), threshold_ns)
    skew.excluding_wait = analyze(exclude_waiting(trace, skew.waiting), regions)
    return skew


def collective_summary(trace: Trace) -> pd.DataFrame:
    """One row per collective kernel: rank, process_group, seq (or order), collective, kernel name,
    correlation, start, end, basis. Small, plain columns: what a task sends back for matching.
    Ranks without collective metadata contribute their NCCL kernels (collectives.kernel_collectives)."""
    ops = trace.gpu_ops
    kernels = ops.loc[(ops["kind"] == "kernel").to_numpy(), ["rank", "correlation", "name", "start", "end"]]
    coll = trace.collectives[["rank", "correlation", "process_group", "seq", "collective"]]
    rows = coll.merge(kernels.drop_duplicates(["rank", "correlation"]), on=["rank", "correlation"], how="inner")
    fallback = kernel_collectives(trace)
    rows = pd.DataFrame({
        "rank": np.concatenate([rows["rank"].to_numpy(np.int64), fallback["rank"].to_numpy(np.int64)]),
        "process_group": np.concatenate([rows["process_group"].astype(str).to_numpy(dtype=object),
                                         fallback["process_group"].to_numpy(dtype=object)]),
        "seq": np.concatenate([rows["seq"].to_numpy(np.int64), fallback["seq"].to_numpy(np.int64)]),
        "collective": np.concatenate([rows["collective"].astype(str).to_numpy(dtype=object),
                                      fallback["collective"].to_numpy(dtype=object)]),
        "kernel": np.concatenate([rows["name"].astype(str).to_numpy(dtype=object),
                                  fallback["name"].to_numpy(dtype=object)]),
        "correlation": np.concatenate([rows["correlation"].to_numpy(np.int64),
                                       fallback["correlation"].to_numpy(np.int64)]),
        "start": np.concatenate([rows["start"].to_numpy(np.int64), fallback["start"].to_numpy(np.int64)]),
        "end": np.concatenate([rows["end"].to_numpy(np.int64), fallback["end"].to_numpy(np.int64)]),
        "from_kernels": np.concatenate([np.zeros(len(rows), bool), np.ones(len(fallback), bool)]),
    })
    rows = rows[~rows["collective"].str.contains(_POINT_TO_POINT)]
    rows = rows.sort_values(["rank", "start", "correlation"], kind="stable", ignore_index=True)
    # a group whose kernels lack Seq on this rank is numbered by order, all of it (no mixing of the two)
    by_group = rows.groupby(["rank", "process_group"], sort=False)
    lacks_seq = (rows["seq"] == NO_ID).groupby([rows["rank"], rows["process_group"]], sort=False).transform("any")
    lacks_seq = lacks_seq.to_numpy(bool)
    rows["seq"] = np.where(lacks_seq, by_group.cumcount().to_numpy(), rows["seq"].to_numpy())
    basis = np.where(rows.pop("from_kernels").to_numpy(bool), KERNEL_ORDER, np.where(lacks_seq, ORDER, SEQ))
    rows["basis"] = basis.astype(object)
    return rows


def find_waiting(summary: pd.DataFrame, threshold_ns: int = DEFAULT_THRESHOLD_NS) -> Skew:
    """Match the collectives of all ranks (`collective_summary` rows, concatenated) and find the
    kernels that waited for a late peer."""
    rows = summary.sort_values([*_KEY, "rank", "start"], kind="stable", ignore_index=True)
    groups = rows.groupby(_KEY, sort=False)
    ranks = groups["rank"].nunique()
    names = groups["collective"].nunique()
    good = (ranks >= 2) & (names == 1)
    counts = dict(matched=int(good.sum()), unmatched=int((ranks < 2).sum()),
                  inconsistent=int(((ranks >= 2) & (names > 1)).sum()))
    matched = rows.merge(good[good].index.to_frame(index=False), on=_KEY)
    # the latest start of each collective, and whose it was (the first such rank on a tie)
    latest = matched.loc[matched.groupby(_KEY, sort=False)["start"].idxmax(), [*_KEY, "rank", "start"]]
    matched = matched.merge(latest.rename(columns={"rank": "late_rank", "start": "late_start"}), on=_KEY)
    start, end, late = (matched[c].to_numpy() for c in ("start", "end", "late_start"))
    gap = late - start
    wait = np.clip(np.minimum(gap, end - start), 0, None)
    is_waiting = (gap > threshold_ns) & (2 * wait > end - start)
    waiting = matched[is_waiting].assign(wait=wait[is_waiting])
    waiting = waiting.sort_values(["wait", "rank", "start"], ascending=[False, True, True], kind="stable")
    bases = rows["basis"] if "basis" in rows else pd.Series([SEQ] * len(rows), dtype=object)
    return Skew(threshold_ns, waiting=waiting[_WAITING_COLUMNS].reset_index(drop=True),
                basis=describe_basis(set(bases.tolist())), note=_nothing_matched(rows, bases, **counts), **counts)


def _nothing_matched(rows: pd.DataFrame, bases: pd.Series, matched: int, unmatched: int, inconsistent: int) -> str:
    """Why no collective could be matched across ranks ("" when some were)."""
    if matched:
        return ""
    if not len(rows):
        return (f"{NOTHING_MATCHED}: no rank has collectives to match (neither collective metadata nor NCCL "
                "kernels whose names say the collective; point-to-point send/recv is not matched)")
    ranks = sorted(set(rows["rank"].tolist()))
    if len(ranks) == 1:
        return (f"{NOTHING_MATCHED}: only rank {ranks[0]} has collectives (the other ranks' traces are missing or "
                "hold none)")
    parts = []
    if unmatched:
        parts.append(f"{unmatched} collective(s) seen on one rank only")
    if inconsistent:
        parts.append(f"{inconsistent} where the ranks disagree on the collective at the same place in the order")
    from_kernels = (bases == KERNEL_ORDER).to_numpy()
    by_kernels = sorted(set(rows["rank"].to_numpy()[from_kernels].tolist()))
    by_metadata = sorted(set(rows["rank"].to_numpy()[~from_kernels].tolist()))
    if by_kernels and by_metadata:
        parts.append(f"rank(s) {ranks_text(by_metadata)} have collective metadata and rank(s) "
                     f"{ranks_text(by_kernels)} do not, so their collectives cannot be paired")
    elif by_kernels:
        parts.append("no collective metadata: NCCL kernels were paired by stream and kernel order")
    return f"{NOTHING_MATCHED}: " + "; ".join(parts)


def exclude_waiting(trace: Trace, waiting: pd.DataFrame) -> Trace:
    """The same run with each waiting kernel starting at its latest peer's start (at most its end)."""
    if waiting.empty:
        return trace
    ops = trace.gpu_ops
    trims = waiting[["rank", "correlation", "late_start"]].drop_duplicates(["rank", "correlation"])
    is_kernel = (ops["kind"] == "kernel").to_numpy()
    kernels = pd.DataFrame({"row": np.flatnonzero(is_kernel), "rank": ops["rank"].to_numpy()[is_kernel],
                            "correlation": ops["correlation"].to_numpy()[is_kernel]})
    # an inner join keeps late_start int64 (a left join's NaN would make it float and lose nanoseconds)
    hit = kernels.merge(trims, on=["rank", "correlation"], how="inner")
    rows, late = hit["row"].to_numpy(), hit["late_start"].to_numpy(dtype=np.int64)
    start = ops["start"].to_numpy().copy()
    start[rows] = np.minimum(np.maximum(start[rows], late), ops["end"].to_numpy()[rows])
    return dataclasses.replace(trace, gpu_ops=ops.assign(start=start))
