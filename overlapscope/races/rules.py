"""The rules: each turns evidence into a `Finding` with a concrete fix, or declines.

An unordered conflicting pair (see conflicts.py) is offered to `host_consumer`, then
`wrong_join`, then `cross_stream`; the first that accepts it names the finding.
`collective_order` works on the NCCL metadata of all ranks at once (or, for ranks whose traces have
none, on their NCCL kernels named by type and ordered per stream: `collective_order_notes` says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..collectives import KERNEL_ORDER, NOTHING_MATCHED, ranks_text
from .findings import DIVERGED, IN_ORDER, INVERTED, Access, Finding, kind_of, timing


@dataclass(frozen=True)
class Side:
    """One access of a pair, with what the rules need beyond `Access`."""

    access: Access
    write: bool
    host: bool  # a host-side access (instrument.accesses(on="host")), not a GPU op
    comp: int  # the stream's component in the clocks (GPU), -1 for host accesses
    pos: int  # position on its stream
    key: int  # launch time (GPU) or start (host)
    step: str
    buffer: str


@dataclass(frozen=True)
class Pair:
    """Two accesses to overlapping memory, at least one a write, neither ordered before the
    other; `first` comes first in launch order."""

    rank: int
    first: Side
    second: Side
    buffers: str | None = None  # every buffer the pair's group touches, when several pairs were merged
    family: str = ""  # buffer_family of those buffers

    @property
    def timing(self) -> str:
        """"overlapped", "inverted" (the second ran entirely before the first, which was issued
        first) or "in order" (see findings.timing)."""
        return timing(self.first.access, self.second.access)

    @property
    def manifest(self) -> bool:
        """Whether the race bit in the trace: the two overlapped in time, or ran against issue order."""
        return kind_of(self.timing) == "manifest"

    @property
    def buffer(self) -> str:
        if self.buffers:
            return self.buffers
        a, b = self.first.buffer, self.second.buffer
        return a if a == b else f"{a} / {b}"


def _what(side: Side) -> str:
    """How a hint names an access: a host access by its mark's label; a GPU op by its region (a
    label people chose) or else its kernel name."""
    return side.access.name if side.host else side.access.region or side.access.name


def _what_happened(pair: Pair) -> str:
    """The sentence a hint ends with: how the two ran in this trace, and so whether the race bit."""
    a, b = _what(pair.first), _what(pair.second)
    t = pair.timing
    if t == INVERTED:
        return (f". In this trace `{b}` ran entirely before `{a}`, although it was issued after it: it saw {pair.buffer} "
                f"before `{a}` touched it (manifest: the race bit).")
    if t == IN_ORDER:
        return (f". In this trace `{a}` finished before `{b}` started, in issue order: correct by timing luck only "
                "(latent).")
    return f". In this trace `{a}` and `{b}` overlapped in time (manifest: the race bit)."


def _finding(rule: str, pair: Pair, hint: str) -> Finding:
    t = pair.timing
    return Finding(rule=rule, kind=kind_of(t), rank=pair.rank, buffer=pair.buffer, first=pair.first.access,
                   second=pair.second.access, hint=hint + _what_happened(pair), step=pair.second.step, timing=t,
                   family=pair.family)


def host_consumer(pair: Pair) -> Finding | None:
    """A host-side access (an RDMA read/write of device memory marked on="host") that is not
    ordered with a GPU access of the same memory. The classic case: the GPU op that last wrote
    a staging buffer before a NIC read started is not ordered before that read."""
    a, b = pair.first, pair.second
    if not (a.host or b.host) or (a.host and b.host):
        return None
    buf = pair.buffer
    if b.host and not b.write:  # GPU write, then a host read
        s = a.access.stream
        hint = (f"call torch.cuda.current_stream().synchronize() (or record an event on stream {s} after `{_what(a)}` "
                f"and synchronize it, or have the transfer stream wait on it) before the host-side read `{_what(b)}`: "
                f"it reads {buf} outside stream order while `{_what(a)}` may still be writing it")
    elif b.host:  # GPU access, then a host write
        s = a.access.stream
        hint = (f"synchronize stream {s} after `{_what(a)}` (record an event and event.synchronize()) before the "
                f"host-side write `{_what(b)}`: it overwrites {buf} while the GPU may still be using it")
    elif a.write:  # host write, then a GPU access
        hint = (f"wait until the host-side write `{_what(a)}` has completed (its completion event or a host-side wait) "
                f"before launching `{_what(b)}` on stream {b.access.stream}: it may use {buf} before the data landed")
    else:  # host read, then a GPU write
        hint = (f"`{_what(b)}` on stream {b.access.stream} overwrites {buf} while the host-side read `{_what(a)}` may "
                f"still be in flight: wait for the transfer to complete before launching `{_what(b)}`")
    return _finding("host-consumer", pair, hint)


@dataclass(frozen=True)
class Joins:
    """Every resolved stream_wait_event of a rank: stream `dst` waited for ops 1..covered of `src`
    (components of the clocks) at host time `time`."""

    src: np.ndarray
    covered: np.ndarray
    dst: np.ndarray
    time: np.ndarray
    stream_ids: list[int]  # component -> stream id

    @classmethod
    def of(cls, waits: pd.DataFrame, stream_ids: list[int]) -> Joins:
        return cls(*(waits[c].to_numpy(np.int64) for c in ("src", "covered", "dst", "time")), stream_ids=stream_ids)


def wrong_join(pair: Pair, joins: Joins) -> Finding | None:
    """A side-stream result consumed on a stream that never waited for the side stream, although
    the side stream *was* joined into another stream after the write and before the consumer was
    launched: the join waited on the wrong stream (ATOM #1208)."""
    a, b = pair.first, pair.second
    if a.host or b.host or not a.write or a.comp == b.comp:
        return None
    elsewhere = np.flatnonzero((joins.src == a.comp) & (joins.covered >= a.pos) & (joins.dst != b.comp)
                               & (joins.dst != a.comp) & (joins.time <= b.key))
    if not elsewhere.size:
        return None
    joined = joins.stream_ids[int(joins.dst[elsewhere[0]])]
    s, t = a.access.stream, b.access.stream
    hint = (f"stream {joined} waits for stream {s} after `{_what(a)}`, but `{_what(b)}` runs on stream {t}, "
            f"which never waits for stream {s}: the join is on the wrong stream. Make stream {t} wait for stream {s} "
            f"(torch.cuda.Stream.wait_stream, or wait_event on an event recorded on stream {s} after `{_what(a)}`) "
            f"before `{_what(b)}`")
    return _finding("wrong-join", pair, hint)


def cross_stream(pair: Pair) -> Finding | None:
    """A write and another access of the same memory on two streams, with no happens-before path."""
    a, b = pair.first, pair.second
    if a.host or b.host or a.comp == b.comp:
        return None
    s, t = a.access.stream, b.access.stream
    if a.write:
        hint = (f"record an event on stream {s} after `{_what(a)}` and make stream {t} wait on it "
                f"(torch.cuda.Stream.wait_event / wait_stream) before `{_what(b)}`")
    else:
        hint = (f"stream {t} overwrites {pair.buffer} in `{_what(b)}` while `{_what(a)}` on stream {s} may still "
                f"read it: make stream {t} wait for stream {s} after `{_what(a)}` (event + wait_event / wait_stream); "
                f"if the memory was freed and handed out again by the caching allocator, call "
                f"tensor.record_stream(stream {s}) on the tensor `{_what(a)}` reads")
    return _finding("cross-stream", pair, hint)


def classify(pair: Pair, joins: Joins) -> Finding | None:
    return host_consumer(pair) or wrong_join(pair, joins) or cross_stream(pair)


# ---- collective order -------------------------------------------------------------------------

_P2P = ("send", "recv", "sendrecv", "batch_isend_irecv", "p2p")
_SIZE_AGREES = ("allreduce", "broadcast", "allgather", "reduce_scatter", "reducescatter", "reduce")


def _normalise(name: str) -> str:
    """c10d ("allreduce", "_allgather_base") and NCCL ("ncclAllReduce") spellings alike."""
    name = name.lower().lstrip("_")
    name = name[4:] if name.startswith("nccl") else name
    return name.replace("all_reduce", "allreduce").replace("all_gather", "allgather")


def _is_p2p(name: str) -> bool:
    return name in _P2P or "send" in name or "recv" in name


def _comparable_size(name: str) -> bool:
    """Collectives whose input size must agree on every rank (all_to_all, gather, scatter need not)."""
    return any(name.startswith(k) for k in _SIZE_AGREES)


def collective_order(colls: pd.DataFrame) -> list[Finding]:
    """colls: one row per collective kernel of every rank, with columns rank, process_group, seq,
    collective, in_nelems, and the kernel's name, stream, start, end, region, step.

    Per process group, the ranks' sequences of (collective, input size) must agree. With NCCL
    sequence numbers ("Seq") ranks are aligned by them; without, by position (allowing the
    capture windows to be shifted by the difference in length). Point-to-point ops are left out:
    their sides legitimately differ. One finding per (process group, rank): the first divergence
    from the lowest rank that has the group."""
    if not len(colls) or colls["rank"].nunique() < 2:
        return []
    colls = _comparable(colls)
    out = []
    for pg, group in colls.groupby("process_group", observed=True, sort=True):
        per_rank = {int(r): _ordered(g) for r, g in group.groupby("rank", sort=True)}
        ranks = sorted(per_rank)
        if len(ranks) < 2:
            continue
        ref = ranks[0]
        for r in ranks[1:]:
            at = _first_divergence(per_rank[ref], per_rank[r])
            if at is None:
                continue
            i, j = at
            x, y = per_rank[ref].iloc[i], per_rank[r].iloc[j]
            first = _collective_access(x, ref)
            second = _collective_access(y, r)
            hint = (f"process group {pg}: rank {ref} issues {_describe(x)} as its collective #{i} here but rank {r} "
                    f"issues {_describe(y)}: every rank must issue the collectives of a communicator in the same "
                    f"order. Keep a collective moved onto a side stream (or issued per micro-batch) in one fixed "
                    f"position on every rank, and join its stream before the next collective is issued")
            if _by_kernels(group).any():
                hint += (". (These traces carry no collective metadata: the collectives were read from the NCCL kernel "
                         "names and compared by kernel order on the stream)")
            out.append(Finding(rule="collective-order", kind=kind_of(DIVERGED), rank=r, buffer=f"process group {pg}",
                               first=first, second=second, hint=hint, step=str(y["step"]), timing=DIVERGED,
                               family=f"process group {pg}"))
    return out


def _comparable(colls: pd.DataFrame) -> pd.DataFrame:
    """The rows whose order must agree across ranks (no point-to-point), with their normalised name
    and signature (name, and input size where it must agree)."""
    colls = colls.copy()
    colls["norm"] = [_normalise(str(c)) for c in colls["collective"]]
    colls = colls[~colls["norm"].map(_is_p2p).astype(bool)]
    colls["sig"] = [f"{n}:{e}" if _comparable_size(n) else n for n, e in zip(colls["norm"], colls["in_nelems"])]
    return colls


def _by_kernels(colls: pd.DataFrame) -> np.ndarray:
    """Per row: read from an NCCL kernel's name (no collective metadata on its rank)."""
    if "basis" not in colls:
        return np.zeros(len(colls), bool)
    return (colls["basis"] == KERNEL_ORDER).to_numpy(bool)


def collective_order_notes(colls: pd.DataFrame) -> list[str]:
    """What `collective_order` rested on, for ranks whose traces have no collective metadata: that
    their NCCL kernels were compared by kernel order, or plainly that nothing could be compared
    (no notes for traces with collective metadata)."""
    if not len(colls) or not _by_kernels(colls).any():
        return []
    from_kernels = colls[_by_kernels(colls)]
    fallback = sorted(set(from_kernels["rank"].tolist()))
    notes = [f"collective order: rank(s) {ranks_text(fallback)} have no collective metadata on their NCCL kernels "
             "(older PyTorch records no \"Collective name\"): their collectives were read from the NCCL kernel names "
             f"and compared by kernel order on each stream (basis: {KERNEL_ORDER})"]
    usable = _comparable(colls)
    shared = usable.groupby("process_group", sort=True)["rank"].nunique()
    compared = usable[usable["process_group"].isin(shared[shared >= 2].index) & _by_kernels(usable)]
    if len(compared):
        groups = sorted(set(compared["process_group"].tolist()))
        notes.append(f"collective order: {len(compared)} collective kernel(s) of {', '.join(groups)} compared across "
                     f"rank(s) {ranks_text(sorted(set(compared['rank'].tolist())))} by kernel order")
        return notes
    mine = usable[_by_kernels(usable)]
    if not len(mine):
        why = "their NCCL kernels are point-to-point only (send/recv), which is not compared"
    elif len(set(colls["rank"].tolist())) < 2:
        why = f"only rank {fallback[0]} has collectives"
    elif len(set(colls["rank"].tolist()) - set(fallback)):
        why = (f"rank(s) {ranks_text(sorted(set(colls['rank'].tolist()) - set(fallback)))} have collective metadata "
               f"and rank(s) {ranks_text(fallback)} do not, and no stream's collectives are on two ranks")
    else:
        why = "no stream's collective kernels are on two ranks (the ranks ran their NCCL kernels on different streams)"
    notes.append(f"collective order: {NOTHING_MATCHED}: {why}")
    return notes


def _ordered(g: pd.DataFrame) -> pd.DataFrame:
    if (g["seq"] >= 0).all():
        return g.sort_values(["seq", "start"]).drop_duplicates("seq").reset_index(drop=True)
    return g.sort_values("start").reset_index(drop=True)


def _first_divergence(a: pd.DataFrame, b: pd.DataFrame) -> tuple[int, int] | None:
    """(row in a, row in b) of the first collective the two ranks disagree on, or None."""
    if (a["seq"] >= 0).all() and (b["seq"] >= 0).all():
        m = a.reset_index().merge(b.reset_index(), on="seq", suffixes=("_a", "_b"))
        bad = m[m["sig_a"] != m["sig_b"]]
        return None if not len(bad) else (int(bad["index_a"].iloc[0]), int(bad["index_b"].iloc[0]))
    sa, sb = a["sig"].to_numpy(), b["sig"].to_numpy()
    slack = abs(len(sa) - len(sb))
    best = None
    for d in range(-slack, slack + 1):  # b[i + d] pairs with a[i]
        i = np.arange(max(0, -d), min(len(sa), len(sb) - d))
        if not i.size:
            continue
        wrong = np.flatnonzero(sa[i] != sb[i + d])
        if not wrong.size:
            return None
        if best is None or wrong.size < best[0]:
            best = (wrong.size, int(i[wrong[0]]), int(i[wrong[0]] + d))
    return None if best is None else (best[1], best[2])


def _describe(row: pd.Series) -> str:
    n = int(row["in_nelems"])
    return f"`{row['collective']}`" + (f" of {n} elements" if n >= 0 else "")


def _collective_access(row: pd.Series, rank: int) -> Access:
    if row.get("basis") == KERNEL_ORDER:  # an NCCL kernel without metadata: no size known
        return Access(name=f"{row['collective']} (NCCL kernel {row['name']}) on rank {rank}",
                      stream=int(row["stream"]), start_ns=int(row["start"]), end_ns=int(row["end"]),
                      region=str(row["region"]))
    return Access(name=f"{row['collective']} ({int(row['in_nelems'])} elems) on rank {rank}",
                  stream=int(row["stream"]), start_ns=int(row["start"]), end_ns=int(row["end"]),
                  region=str(row["region"]))
