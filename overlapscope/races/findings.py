"""What the race checker reports: every occurrence of a race (`Finding`), the occurrences of one root
cause grouped (`FindingGroup`), what each rank let it check (`RankCoverage`), and the verdict
(`RaceReport.verdict`). `RaceReport.to_dict()` is the whole JSON of `overlapscope races --json`."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

# how the two accesses of a finding ran in the trace, relative to the order they were issued in
OVERLAPPED, INVERTED, IN_ORDER, DIVERGED = "overlapped", "inverted", "in order", "diverged"


@dataclass(frozen=True)
class Access:
    """One side of a race: the op (or host range) that touched the buffer."""

    name: str
    stream: int  # -1 for a host-side access (a NIC read marked with instrument.accesses(on="host"))
    start_ns: int
    end_ns: int
    region: str  # innermost named region the op was launched in ("" when none)


def timing(first: Access, second: Access) -> str:
    """`first` was issued first (launch call, or mark start for a host access). "overlapped": their
    intervals intersect; "inverted": `second` ended before `first` started (it ran against issue
    order); "in order": `first` ended before `second` started."""
    if first.start_ns < second.end_ns and second.start_ns < first.end_ns:
        return OVERLAPPED
    return INVERTED if second.end_ns <= first.start_ns else IN_ORDER


def kind_of(timing_: str) -> str:
    """Manifest when the race bit in the trace (overlapped, inverted, or collectives that diverged);
    latent only when the accesses ran in issue order without overlapping."""
    return "latent" if timing_ == IN_ORDER else "manifest"


@dataclass(frozen=True)
class Finding:
    """One occurrence of a race (one pair of accesses, per rank and profiler step)."""

    rule: str  # "cross-stream" | "host-consumer" | "wrong-join" | "collective-order"
    kind: str  # "manifest" (overlapped, or ran against issue order: the race bit) | "latent" (in order, no overlap)
    rank: int
    buffer: str
    first: Access  # issued first
    second: Access
    hint: str
    step: str = ""  # the profiler step the second access was launched in, when known
    timing: str = ""  # "overlapped" | "inverted" | "in order" | "diverged" (collective-order)
    # the buffers' names with every digit run replaced by "#" (see buffer_family); not in the JSON,
    # the group carries it
    family: str = field(default="", compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["family"]
        return out


_DIGITS = re.compile(r"\d+")


def buffer_family(names: Iterable[str]) -> str:
    """Buffers that differ only in an index (micro-batch, layer, storage id) are one family:
    every run of digits becomes "#", and the distinct results are listed sorted."""
    return ", ".join(sorted({_DIGITS.sub("#", n) for n in names}))


def _family(f: Finding) -> str:
    if f.family:
        return f.family
    if f.rule == "collective-order":
        return f.buffer  # one process group: "process group 0" and "process group 1" are different communicators
    label = re.sub(r" and \d+ more$", "", f.buffer)
    return buffer_family(p for part in label.split(", ") for p in part.split(" / "))


def _what(a: Access) -> str:
    """How a finding names a side: a GPU op by its region (else its kernel name), a host access by
    its mark's label."""
    return a.name if a.stream < 0 else a.region or a.name


@dataclass(frozen=True)
class Side:
    """A side of a group: what (region, else kernel name; a host access's mark label) on which stream."""

    what: str
    stream: int


@dataclass(frozen=True)
class FindingGroup:
    """The occurrences of one root cause: findings with the same rule, the same two launching
    regions (or kernel names / mark labels) on the same two streams, and the same buffer family."""

    id: int  # 1-based, the findings' "group" in the JSON
    rule: str
    kind: str  # manifest when any occurrence is
    first: Side
    second: Side
    buffer_family: str
    occurrences: tuple[int, ...]  # positions in RaceReport.findings
    manifest: int  # how many occurrences are manifest
    ranks: tuple[int, ...]
    steps: tuple[str, ...]
    first_instance: Finding
    worst_instance: Finding  # manifest first, then the largest overlap / inversion (latent: the smallest margin)
    hint: str  # the worst instance's
    worst_position: int = 0  # the worst instance's position in RaceReport.findings

    @property
    def count(self) -> int:
        return len(self.occurrences)

    @property
    def worst(self) -> Finding:
        return self.worst_instance

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "rule": self.rule, "kind": self.kind, "count": self.count,
                "manifest": self.manifest, "latent": self.count - self.manifest,
                "first": asdict(self.first), "second": asdict(self.second), "buffer_family": self.buffer_family,
                "ranks": list(self.ranks), "steps": list(self.steps),
                "occurrences": list(self.occurrences), "first_instance": self.occurrences[0], "worst_instance": self.worst_position, "hint": self.hint}


def severity(f: Finding) -> tuple[int, int]:
    """Larger is worse: manifest before latent; then how much the two overlapped, or how far the
    second ran ahead of the first (inverted); a latent one is worse the closer it came to biting."""
    a, b = f.first, f.second
    if f.rule == "collective-order":
        return (1, 0)
    overlap = min(a.end_ns, b.end_ns) - max(a.start_ns, b.start_ns)
    if f.kind == "manifest":
        return (1, overlap if overlap > 0 else a.start_ns - b.end_ns)
    return (0, -(b.start_ns - a.end_ns))


def _step_order(step: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", step)
    return (int(m.group(1)) if m else -1, step)


def group_findings(findings: list[Finding]) -> list[FindingGroup]:
    """Groups in order: manifest groups first, then by their first occurrence."""
    keys: dict[tuple, list[int]] = {}
    for i, f in enumerate(findings):
        if f.rule == "collective-order":
            key = (f.rule, "", -1, "", -1, _family(f))
        else:
            key = (f.rule, _what(f.first), f.first.stream, _what(f.second), f.second.stream, _family(f))
        keys.setdefault(key, []).append(i)
    staged = []
    for key, idx in keys.items():
        members = [findings[i] for i in idx]
        worst_at = max(range(len(idx)), key=lambda j: (severity(members[j]), -j))
        manifest = sum(f.kind == "manifest" for f in members)
        staged.append((manifest == 0, idx[0], key, idx, members, worst_at, manifest))
    staged.sort(key=lambda s: (s[0], s[1]))
    out = []
    for n, (_, _, key, idx, members, worst_at, manifest) in enumerate(staged, 1):
        rule, what_a, stream_a, what_b, stream_b, family = key
        worst = members[worst_at]
        group = FindingGroup(
            id=n, rule=rule, kind="manifest" if manifest else "latent", first=Side(what_a, stream_a),
            second=Side(what_b, stream_b), buffer_family=family, occurrences=tuple(idx), manifest=manifest,
            ranks=tuple(sorted({f.rank for f in members})),
            steps=tuple(sorted({f.step for f in members if f.step}, key=_step_order)),
            first_instance=members[0], worst_instance=worst, hint=worst.hint, worst_position=idx[worst_at])
        out.append(group)
    return out


@dataclass(frozen=True)
class RankCoverage:
    """What the checker could check on one rank."""

    rank: int
    accesses_known: int  # memory accesses (Execution Trace tensors, access marks) known on the rank
    pairs_checked: int  # conflicting access pairs (same memory, one a write, different streams/threads) whose order was decided
    pairs_unchecked: int  # conflicting, unordered pairs left out: a wait or sync between them could not be resolved
    collectives: int = 0  # collective kernels with NCCL metadata, compared across ranks for their order
    reason: str = ""  # why something was not checked ("" when everything known was checked)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


VERDICTS = ("races", "none", "not checked")


@dataclass
class RaceReport:
    """What `check_races` found, and what it could and could not check (and why)."""

    findings: list[Finding]  # every occurrence
    notes: list[str]  # e.g. "rank 1: 3 Execution Trace node(s) ... have no matching Kineto op; ..."
    # conflicting, unordered access pairs left out because a wait or sync between them could not
    # be resolved: "no finding" is only as strong as this is small
    unchecked_pairs: int = 0
    coverage: list[RankCoverage] = field(default_factory=list)

    @property
    def accesses_known(self) -> int:
        return sum(c.accesses_known for c in self.coverage)

    @property
    def pairs_checked(self) -> int:
        return sum(c.pairs_checked for c in self.coverage)

    @property
    def groups(self) -> list[FindingGroup]:
        return group_findings(self.findings)

    @property
    def verdict(self) -> str:
        """"races": there are findings. "not checked": no memory access is known on any rank, so
        no memory race could have been seen (even if the collective order was compared). "none":
        accesses were known and no race was found (see `coverage` for pairs left unchecked and
        ranks without accesses)."""
        if self.findings:
            return "races"
        return "not checked" if self.accesses_known == 0 else "none"

    @property
    def reason(self) -> str:
        """One sentence saying what the verdict rests on."""
        if self.findings:
            manifest = sum(f.kind == "manifest" for f in self.findings)
            return (f"{len(self.findings)} finding(s) in {len(self.groups)} group(s): {manifest} manifest, "
                    f"{len(self.findings) - manifest} latent")
        with_colls = [c.rank for c in self.coverage if c.collectives]
        colls = (f"the collective order was compared across ranks {_ranks(with_colls)} "
                 f"({sum(c.collectives for c in self.coverage)} collectives) and agrees"
                 if len(with_colls) >= 2 else "")
        if self.verdict == "not checked":
            if not self.coverage:
                return "no rank was checked"
            out = ("no memory access is known on any rank (no PyTorch Execution Trace, no overlapscope.instrument "
                   "access marks): memory races could not be checked; capture with the torch profiler's Execution "
                   "Trace (overlapscope run does) or mark the buffers with overlapscope.instrument.accesses")
            return out + (f"; only {colls}" if colls else "")
        parts = [f"{self.accesses_known} memory access(es) known, {self.pairs_checked} conflicting access pair(s) "
                 "checked, no race among them"]
        if self.unchecked_pairs:
            parts.append(f"{self.unchecked_pairs} conflicting access pair(s) left unchecked (a wait or synchronize "
                         "between them could not be resolved)")
        blind = [c.rank for c in self.coverage if c.accesses_known == 0]
        if blind:
            parts.append(f"rank(s) {_ranks(blind)} not checked: no memory accesses are known there")
        if colls:
            parts.append(colls)
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `overlapscope races --json`."""
        groups = self.groups
        group_of = {i: g.id for g in groups for i in g.occurrences}
        return {"verdict": self.verdict, "reason": self.reason,
                "findings": [{**f.to_dict(), "group": group_of[i]} for i, f in enumerate(self.findings)],
                "groups": [g.to_dict() for g in groups],
                "checked": [c.to_dict() for c in self.coverage],
                "notes": list(self.notes)}


def _ranks(ranks: list[int]) -> str:
    return ", ".join(map(str, ranks))
