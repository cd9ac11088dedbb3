"""The collectives of a run, as matching them across ranks sees them (skew.py, races/rules.py).

A rank's collectives come from the collective metadata its trace carries: Kineto's NCCL kernel args
("Collective name", "Process Group Name", "Seq", sizes; PyTorch records them on `record_param_comms`
and the kernels it launches) or Nsight Systems' NCCL NVTX ranges. Those are used as read.

Older traces carry none: PyTorch 2.1-era Kineto has `record_param_comms` without "Collective name"
and NCCL kernels with no args but stream and correlation. A rank whose trace has no collective
metadata at all falls back to its NCCL kernels themselves (`kernel_collectives`):

- the collective type comes from the kernel name: ``ncclKernel_AllReduce_RING_LL_Sum_float``,
  ``ncclDevKernel_AllGather_RING_LL``, ``ncclDevKernel_SendRecv``, and NCCL 2.7's
  ``ncclAllReduceRingLLKernel_sum_f32``; a kernel whose name names no type (RCCL's
  ``ncclDevKernel_Generic_4``) is left out;
- the group is the CUDA stream the kernel ran on (NCCL runs each communicator on its own stream,
  and ranks running one program create their streams in one order, so the ids agree): process group
  ``"stream 84"``;
- the sequence number is unknown (NO_ID): the matchers number each group's kernels by the order in
  which they ran, and a position where ranks ran different collective types is inconsistent, not
  matched (NCCL itself matches a communicator's calls by their order, whatever they are).

This basis is named wherever it was used: `KERNEL_ORDER`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .trace.model import NO_ID, Trace

SEQ = "seq"  # matched by NCCL sequence numbers ("Seq")
ORDER = "order"  # collective metadata without Seq: matched by each group's order
KERNEL_ORDER = "kernel order (no collective metadata)"  # no metadata: NCCL kernels by name, stream and order
NOTHING_MATCHED = "no collective could be matched across ranks"

_TYPES = r"AllReduce|AllGather|ReduceScatter|AllToAll|Broadcast|Reduce|SendRecv|Send|Recv"
# ncclKernel_AllReduce_..., ncclDevKernel_SendRecv(...), ncclDevKernel_AllGather_RING_LL;
# NCCL <= 2.7: ncclAllReduceRingLLKernel_sum_f32, ncclSendRecvKernel_copy_i8
_KERNEL_TYPE = re.compile(rf"^(?:void\s+)?nccl(?:Dev)?Kernel_({_TYPES})(?![a-z])"
                          rf"|^(?:void\s+)?nccl({_TYPES})(?:Ring|Tree|CollNet|Kernel)")
_KERNEL_COLUMNS = ["rank", "op", "correlation", "collective", "process_group", "seq", "in_nelems", "name", "stream",
                   "start", "end"]


def kernel_type(name: str) -> str:
    """The collective type an NCCL kernel's name says ("AllReduce", "SendRecv", ...), or ""."""
    m = _KERNEL_TYPE.match(name)
    return "" if m is None else (m.group(1) or m.group(2))


def ranks_without_metadata(trace: Trace) -> list[int]:
    """Ranks with GPU work whose trace has no collective metadata at all."""
    have = set(np.unique(trace.collectives["rank"].to_numpy()).tolist())
    return [r for r in np.unique(trace.gpu_ops["rank"].to_numpy()).tolist() if r not in have]


def kernel_collectives(trace: Trace, ranks: list[int] | None = None) -> pd.DataFrame:
    """The NCCL kernels of `ranks` (default: those without collective metadata) whose names say
    a collective type, as collectives: rank, op (row in trace.gpu_ops), correlation, collective (the
    type), process_group ("stream N"), seq (NO_ID: by order), in_nelems (NO_ID), name, stream, start,
    end; in the order they ran on each rank."""
    ranks = ranks_without_metadata(trace) if ranks is None else ranks
    ops = trace.gpu_ops
    if not ranks or not len(ops):
        return pd.DataFrame({c: pd.Series([], dtype=object if c in ("collective", "process_group", "name")
                                          else np.int64) for c in _KERNEL_COLUMNS})
    names = ops["name"]
    categories = names.cat.categories if isinstance(names.dtype, pd.CategoricalDtype) else None
    if categories is not None:  # one regex per distinct name
        types = np.array([kernel_type(str(c)) for c in categories] + [""], dtype=object)
        codes = names.cat.codes.to_numpy()
        kind = types[np.where(codes < 0, len(categories), codes)]
    else:
        kind = np.array([kernel_type(str(n)) for n in names], dtype=object)
    keep = (kind != "") & (ops["kind"] == "kernel").to_numpy() & ops["rank"].isin(ranks).to_numpy()
    rows = np.flatnonzero(keep)
    stream = ops["stream"].to_numpy(np.int64)[rows]
    out = pd.DataFrame({
        "rank": ops["rank"].to_numpy()[rows].astype(np.int64),
        "op": rows.astype(np.int64),
        "correlation": ops["correlation"].to_numpy(np.int64)[rows],
        "collective": kind[rows],
        "process_group": np.array([f"stream {s}" for s in stream], dtype=object),
        "seq": np.full(rows.size, NO_ID, np.int64),
        "in_nelems": np.full(rows.size, NO_ID, np.int64),
        "name": names.astype(str).to_numpy(dtype=object)[rows],
        "stream": stream,
        "start": ops["start"].to_numpy(np.int64)[rows],
        "end": ops["end"].to_numpy(np.int64)[rows],
    })
    return out.sort_values(["rank", "start", "op"], kind="stable", ignore_index=True)


def describe_basis(bases: list[str] | set[str]) -> str:
    """One run's basis: "seq", "order", KERNEL_ORDER, several joined with " + ", or "" (none)."""
    order = [SEQ, ORDER, KERNEL_ORDER]
    found = sorted(set(bases), key=lambda b: (order.index(b) if b in order else len(order), b))
    return " + ".join(found)


def ranks_text(ranks: list[int]) -> str:
    """0-7, or 0, 2, 5."""
    ranks = sorted(ranks)
    if len(ranks) > 2 and ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"{ranks[0]}-{ranks[-1]}"
    return ", ".join(map(str, ranks))
