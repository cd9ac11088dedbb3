"""What the race checker reports: one `Finding` per race, in the shape of DESIGN.md's JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Access:
    """One side of a race: the op (or host range) that touched the buffer."""

    name: str
    stream: int  # -1 for a host-side access (a NIC read marked with instrument.accesses(on="host"))
    start_ns: int
    end_ns: int
    region: str  # innermost named region the op was launched in ("" when none)


@dataclass(frozen=True)
class Finding:
    rule: str  # "cross-stream" | "host-consumer" | "wrong-join" | "collective-order"
    kind: str  # "manifest" (the two accesses overlapped in time) | "latent"
    rank: int
    buffer: str
    first: Access
    second: Access
    hint: str
    step: str = ""  # the profiler step the second access was launched in, when known

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RaceReport:
    """What `check_races` found, and what it could not check (and why)."""

    findings: list[Finding]
    notes: list[str]  # e.g. "rank 1: 3 Execution Trace node(s) ... have no matching Kineto op; ..."
    # conflicting, unordered access pairs left out because a wait or sync between them could not
    # be resolved: "no finding" is only as strong as this is small
    unchecked_pairs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"findings": [f.to_dict() for f in self.findings], "notes": list(self.notes)}
