"""Who touched which memory, on one rank: one row per (accessor, byte range, read/write).

Sources:
- the PyTorch Execution Trace: each ET node is linked to its Kineto op (ET `rf_id` = the cpu_op's
  "Record function id", or its "External id" in PyTorch 2.0/2.1 traces, whichever links more
  ops with the same name), and a GPU op takes the tensors of the innermost linked op that
  encloses its launch on the launching thread. Collectives' own buffers come the same way,
  from `record_param_comms` / `c10d::*` nodes;
- `overlapscope.instrument` access marks (ranges named `osacc:...`): on="gpu" gives the marked
  buffers to every GPU op launched inside the range on the same thread; on="host" makes the
  range itself an access, during its time span, by something outside stream order.

Memory spaces: marks name device addresses (one space per process); the ET names storages
(space = storage id, offsets in bytes from the storage's start). Ranges only overlap within one
space.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..instrument import ACCESS_PREFIX, AccessMark, parse_access_mark
from ..trace.links import LaunchPoints
from ..trace.et import ExecutionTrace
from ..trace.model import NO_ID, Trace
from ..trace.where import innermost_per_thread, thread_keys

ADDRESS_SPACE = -1  # the space of raw device addresses; ET storages use their storage id
HOST_SOURCES = ("nvtx", "user_annotation")
ACCESS_COLUMNS = ("op", "host", "space", "lo", "hi", "write", "buffer", "source")


@dataclass
class Accesses:
    """op: gpu_ops row (-1 for a host access); host: ranges row of an on="host" mark (-1 for a
    GPU access); [lo, hi) bytes in `space`; buffer: a name for people."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({"op": np.empty(0, np.int64), "host": np.empty(0, np.int64),
                         "space": np.empty(0, np.int64), "lo": np.empty(0, np.int64),
                         "hi": np.empty(0, np.int64), "write": np.empty(0, bool),
                         "buffer": np.empty(0, object), "source": np.empty(0, object)})


def collect_accesses(trace: Trace, launch: LaunchPoints, et: ExecutionTrace | None) -> Accesses:
    """All accesses of one rank (`trace` holds that rank only)."""
    notes: list[str] = []
    marked, inside_host_marks = mark_accesses(trace, launch, notes)
    parts = [marked]
    if et is not None:
        from_et = et_accesses(trace, launch, et, notes)
        # an on="host" mark says what its range touches; the GPU ops launched inside it carry
        # out that host-side access (a copy standing in for the NIC), not accesses of their own
        parts.append(from_et[~np.isin(from_et["op"].to_numpy(), inside_host_marks)])
    table = pd.concat([p for p in parts if len(p)] or [empty_table()], ignore_index=True)
    # an op that reads and writes the same span (in-place) is one write
    table = (table.groupby(["op", "host", "space", "lo", "hi", "buffer", "source"], sort=False, observed=True)["write"]
             .any().reset_index())
    return Accesses(table=table[list(ACCESS_COLUMNS)], notes=notes)


def access_marks(trace: Trace) -> tuple[pd.DataFrame, dict[str, AccessMark], int]:
    """Host ranges that are access marks, the parsed mark of each distinct name, and how many
    mark-like names could not be read."""
    ranges = trace.ranges
    names = ranges["name"].astype(str)
    host = ranges["source"].isin(HOST_SOURCES).to_numpy()
    is_mark = host & names.str.startswith(ACCESS_PREFIX).to_numpy()
    marks = ranges[is_mark]
    parsed = {name: parse_access_mark(name) for name in pd.unique(names[is_mark])}
    bad = sum(1 for m in parsed.values() if m is None)
    good = {k: v for k, v in parsed.items() if v is not None}
    return marks[marks["name"].astype(str).isin(list(good))], good, bad


def mark_accesses(trace: Trace, launch: LaunchPoints, notes: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The accesses access marks declare, and the GPU ops launched inside on="host" marks."""
    marks, parsed, bad = access_marks(trace)
    if bad:
        notes.append(f"{bad} access mark name(s) could not be read exactly; their accesses were ignored")
    if not len(marks):
        return empty_table(), np.empty(0, np.int64)
    # what each distinct mark name touches: (name, buffer, lo, hi, write) rows
    touched = pd.DataFrame([(name, a.buffer, a.address, a.end, a.write)
                            for name, m in parsed.items() for a in m.accesses],
                           columns=["name", "buffer", "lo", "hi", "write"])
    names = marks["name"].astype(str).to_numpy()
    on_host = np.array([parsed[nm].on == "host" for nm in names], dtype=bool)
    rows = np.asarray(marks.index, dtype=np.int64)

    # on="host": the range itself; on="gpu": the ops launched inside it on its thread
    owners = [pd.DataFrame({"name": names[on_host], "op": -1, "host": rows[on_host]})]
    mark_key, op_key = thread_keys((marks["pid"].to_numpy(), marks["tid"].to_numpy()), (launch.pid, launch.tid))
    launched = launch.tid != NO_ID
    starts, ends = marks["start"].to_numpy(np.int64), marks["end"].to_numpy(np.int64)
    inside_host: list[np.ndarray] = []
    for k in np.unique(mark_key):
        mine = np.flatnonzero(mark_key == k)
        ops = np.flatnonzero(launched & (op_key == k))
        if not ops.size:
            continue
        ops = ops[np.argsort(launch.time[ops], kind="stable")]
        lo = np.searchsorted(launch.time[ops], starts[mine], side="left")
        hi = np.searchsorted(launch.time[ops], ends[mine], side="left")
        count = hi - lo
        which = np.repeat(mine, count)
        offset = np.arange(which.size) - np.repeat(np.cumsum(count) - count, count)
        inside = ops[np.repeat(lo, count) + offset]
        host_mark = on_host[which]
        inside_host.append(inside[host_mark])
        owners.append(pd.DataFrame({"name": names[which[~host_mark]], "op": inside[~host_mark], "host": -1}))
    owner = pd.concat(owners, ignore_index=True)
    out = owner.merge(touched, on="name", how="inner")
    table = pd.DataFrame({"op": out["op"].to_numpy(np.int64), "host": out["host"].to_numpy(np.int64),
                          "space": np.full(len(out), ADDRESS_SPACE, np.int64), "lo": out["lo"].to_numpy(np.int64),
                          "hi": out["hi"].to_numpy(np.int64), "write": out["write"].to_numpy(bool),
                          "buffer": out["buffer"].to_numpy(object), "source": np.full(len(out), "mark", object)})
    return table, np.unique(np.concatenate(inside_host)) if inside_host else np.empty(0, np.int64)


def et_accesses(trace: Trace, launch: LaunchPoints, et: ExecutionTrace, notes: list[str]) -> pd.DataFrame:
    notes.extend(et.problems)
    device_tensors = et.tensors[et.tensors["device"].astype(str).str.startswith(("cuda", "hip"))]
    linked = _link_et_nodes(trace, et)
    if linked is None:
        notes.append(f"no Execution Trace node of {et.source} matches a Kineto op (by rf_id and name): "
                     "is it from the same run? Its accesses were omitted")
        return empty_table()
    wanted = set(device_tensors["node_id"].tolist())
    missing = sorted(wanted - set(linked["node_id"].tolist()))
    if missing:
        notes.append(f"{len(missing)} Execution Trace node(s) that touch GPU tensors have no matching Kineto op; "
                     f"their accesses were omitted (node ids {', '.join(map(str, missing[:5]))}"
                     f"{', ...' if len(missing) > 5 else ''})")
    range_key, op_key = thread_keys((linked["pid"].to_numpy(), linked["tid"].to_numpy()), (launch.pid, launch.tid))
    launched = launch.tid != NO_ID
    found = innermost_per_thread(range_key, linked["start"].to_numpy(np.int64), linked["end"].to_numpy(np.int64),
                                 np.where(launched, op_key, -1), launch.time)
    ops = np.flatnonzero(found >= 0)
    op_nodes = pd.DataFrame({"op": ops, "node_id": linked["node_id"].to_numpy()[found[ops]]})
    rows = op_nodes.merge(device_tensors, on="node_id", how="inner")
    return pd.DataFrame({
        "op": rows["op"].to_numpy(np.int64),
        "host": np.full(len(rows), -1, np.int64),
        "space": rows["storage_id"].to_numpy(np.int64),
        "lo": rows["byte_lo"].to_numpy(np.int64),
        "hi": rows["byte_hi"].to_numpy(np.int64),
        "write": rows["write"].to_numpy(bool),
        "buffer": ("storage " + rows["storage_id"].astype(str)).to_numpy(object),
        "source": np.full(len(rows), "et", object),
    })


def _link_et_nodes(trace: Trace, et: ExecutionTrace) -> pd.DataFrame | None:
    """Kineto ranges (cpu_op / user_annotation) with the ET node they record: pid, tid, start,
    end, node_id. Links by "Record function id", else by "External id" (PyTorch 2.0/2.1, where
    it equals rf_id); a link counts only when both sides carry the same op name and the id is
    unique on both sides."""
    ranges = trace.ranges[trace.ranges["source"].isin(("cpu_op", "user_annotation"))]
    nodes = et.nodes.drop_duplicates("rf_id", keep=False)
    best = None
    for column in ("record_function_id", "external_id"):
        cand = ranges[ranges[column] != NO_ID].drop_duplicates(column, keep=False)
        m = cand.merge(nodes, left_on=column, right_on="rf_id", how="inner", suffixes=("", "_et"))
        m = m[m["name"].astype(str).to_numpy() == m["name_et"].astype(str).to_numpy()]
        if best is None or len(m) > len(best):
            best = m
    if best is None or not len(best):
        return None
    return best[["pid", "tid", "start", "end", "node_id"]].reset_index(drop=True)
