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

    def to_dict(self) -> dict[str, Any]:
        rows = self.waiting.rename(columns={"start": "start_ns", "end": "end_ns", "wait": "wait_ns",
                                            "late_start": "late_start_ns"})
        return {
            "threshold_ns": self.threshold_ns,
            "collectives_matched": self.matched,
            "collectives_unmatched": self.unmatched,
            "collectives_inconsistent": self.inconsistent,
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
    correlation, start, end. Small, plain columns: what a task sends back for matching."""
    ops = trace.gpu_ops
    kernels = ops.loc[(ops["kind"] == "kernel").to_numpy(), ["rank", "correlation", "name", "start", "end"]]
    coll = trace.collectives[["rank", "correlation", "process_group", "seq", "collective"]]
    rows = coll.merge(kernels.drop_duplicates(["rank", "correlation"]), on=["rank", "correlation"], how="inner")
    rows = pd.DataFrame({
        "rank": rows["rank"].to_numpy(),
        "process_group": rows["process_group"].astype(str).to_numpy(dtype=object),
        "seq": rows["seq"].to_numpy(),
        "collective": rows["collective"].astype(str).to_numpy(dtype=object),
        "kernel": rows["name"].astype(str).to_numpy(dtype=object),
        "correlation": rows["correlation"].to_numpy(),
        "start": rows["start"].to_numpy(),
        "end": rows["end"].to_numpy(),
    })
    rows = rows[~rows["collective"].str.contains(_POINT_TO_POINT)]
    rows = rows.sort_values(["rank", "start", "correlation"], kind="stable", ignore_index=True)
    # a group whose kernels lack Seq on this rank is numbered by order, all of it (no mixing of the two)
    by_group = rows.groupby(["rank", "process_group"], sort=False)
    lacks_seq = (rows["seq"] == NO_ID).groupby([rows["rank"], rows["process_group"]], sort=False).transform("any")
    rows["seq"] = np.where(lacks_seq.to_numpy(), by_group.cumcount().to_numpy(), rows["seq"].to_numpy())
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
    return Skew(threshold_ns, waiting=waiting[_WAITING_COLUMNS].reset_index(drop=True), **counts)


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
