"""Marks for user code that both profilers carry: named regions and memory-access marks.

`region(name)` opens an NVTX range (domain "overlapscope") and, when torch is already imported,
a `record_function` of the same name, so the name shows up in Nsight Systems and Kineto traces
alike and `--region REGEX` finds it in either.

`accesses(reads=..., writes=..., label=..., on=...)` is a region whose name encodes which device
buffers are touched, for the race checker:

    osacc:<label>|on=<gpu|host>|r=<buf>@<0xaddr>+<nbytes>,...|w=<buf>@<0xaddr>+<nbytes>,...

`on="gpu"`: the GPU ops launched inside the range (same thread) perform the accesses.
`on="host"`: the range itself is the access, made by something outside stream order during the
range's time span (a NIC's RDMA read, a host thread polling device memory).
This module never imports torch or pandas itself.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

DOMAIN = "overlapscope"
ACCESS_PREFIX = "osacc:"
_UNSAFE = re.compile(r"[|@+,=:\s]")


@dataclass(frozen=True)
class BufferAccess:
    buffer: str
    address: int
    nbytes: int
    write: bool

    @property
    def end(self) -> int:
        return self.address + self.nbytes


@dataclass(frozen=True)
class AccessMark:
    label: str
    on: str  # "gpu" | "host"
    accesses: tuple[BufferAccess, ...]


def _span(obj: Any) -> tuple[int, int]:
    """(address, nbytes) of a tensor, or of an (address, nbytes) pair."""
    if isinstance(obj, tuple):
        return int(obj[0]), int(obj[1])
    return int(obj.data_ptr()), int(obj.numel() * obj.element_size())


def _clean(name: str) -> str:
    return _UNSAFE.sub("_", name)


def encode_access_mark(label: str, reads: Mapping[str, Any] | None, writes: Mapping[str, Any] | None,
                       on: str = "gpu") -> str:
    if on not in ("gpu", "host"):
        raise ValueError(f"on must be 'gpu' or 'host', not {on!r}")
    parts = [f"{ACCESS_PREFIX}{_clean(label)}", f"on={on}"]
    for key, buffers in (("r", reads), ("w", writes)):
        if buffers:
            items = ",".join(f"{_clean(name)}@{hex(a)}+{n}" for name, (a, n) in
                             ((name, _span(b)) for name, b in buffers.items()))
            parts.append(f"{key}={items}")
    return "|".join(parts)


_ITEM = re.compile(r"^([^@]+)@(0x[0-9a-fA-F]+)\+(\d+)$")


def parse_access_mark(name: str) -> AccessMark | None:
    """The mark encoded in a range name, or None when the name is not an access mark (or is
    malformed: a mark we cannot read exactly is not trusted)."""
    if not name.startswith(ACCESS_PREFIX):
        return None
    fields = name[len(ACCESS_PREFIX):].split("|")
    label, on, accesses = fields[0], None, []
    for f in fields[1:]:
        key, _, value = f.partition("=")
        if key == "on" and value in ("gpu", "host"):
            on = value
        elif key in ("r", "w") and value:
            for item in value.split(","):
                m = _ITEM.match(item)
                if not m:
                    return None
                accesses.append(BufferAccess(m.group(1), int(m.group(2), 16), int(m.group(3)), key == "w"))
        else:
            return None
    if on is None or not accesses:
        return None
    return AccessMark(label, on, tuple(accesses))


@contextlib.contextmanager
def region(name: str) -> Iterator[None]:
    """A named range in NVTX (domain "overlapscope"), the torch profiler and, on ROCm, ROCTx."""
    import nvtx

    with contextlib.ExitStack() as stack:
        stack.enter_context(nvtx.annotate(message=name, domain=DOMAIN))
        torch = sys.modules.get("torch")
        if torch is not None:
            stack.enter_context(torch.profiler.record_function(name))
            if getattr(torch.version, "hip", None):  # ROCm: torch's nvtx ranges are ROCTx, which rocprofv3 records
                stack.enter_context(torch.cuda.nvtx.range(name))
        yield


@contextlib.contextmanager
def accesses(reads: Mapping[str, Any] | None = None, writes: Mapping[str, Any] | None = None,
             label: str = "access", on: str = "gpu") -> Iterator[None]:
    """Mark the device buffers touched inside this block (tensors, or (address, nbytes) pairs)."""
    with region(encode_access_mark(label, reads, writes, on)):
        yield
