"""What a file is, from its content: a trace we read, a trace we do not read (named, with what to
use instead), a file of the run that is no trace (a manifest, an Execution Trace), or something
else (a README, server_args.json, a file still being written) that a run directory may hold.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput
from .kineto import looks_like_kineto
from .rocprofv3 import looks_like_rocprofv3
from .sqlite_kind import FOREIGN_FORMATS, sqlite_kind

TRACE_KINDS = ("kineto", "nsys", "nsys-rep", "rocpd", "rocprofv3")
MANIFEST_MARK = "overlapscope_run"  # key every run.json written by `overlapscope run` carries
READ_FORMATS = ("Kineto JSON (.json/.json.gz), an Nsight Systems SQLite export (.sqlite) or report (.nsys-rep), "
                "rocprofv3 JSON or its rocpd database (.db)")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_HEAD = 1 << 16
_LONG_HEAD = 1 << 25
_PERFETTO_SUFFIXES = (".pftrace", ".perfetto-trace", ".perfetto", ".pb")

FOREIGN = {
    **FOREIGN_FORMATS,
    "perfetto": "a Perfetto protobuf trace: not read; export Chrome JSON instead (torch.profiler's "
                "export_chrome_trace / tensorboard_trace_handler) or an Nsight Systems SQLite export",
    "autograd-json": "the legacy autograd profiler's JSON array (torch.autograd.profiler export_chrome_trace): not "
                     "read, it has no GPU kernels with launch links; capture with torch.profiler.profile and "
                     "tensorboard_trace_handler (Kineto JSON)",
}


@dataclass(frozen=True)
class Sniffed:
    """kind: one of TRACE_KINDS, "execution-trace", "manifest", "foreign" or None (no trace);
    `why`: for foreign files and non-traces, one line saying what the file is."""

    kind: str | None
    why: str = ""


def sniff(path: Path) -> Sniffed:
    head = _head(path, _HEAD)
    if not head:
        return Sniffed(None, "empty file (still being written?)")
    if head.startswith(_SQLITE_MAGIC):
        return _sqlite(path)
    if path.suffix in (".nsys-rep", ".qdrep"):
        return Sniffed("nsys-rep")
    if path.suffix in _PERFETTO_SUFFIXES and head[:1] == b"\x0a":
        return Sniffed("foreign", FOREIGN["perfetto"])
    text = head.lstrip()
    if text.startswith(b"["):
        if MANIFEST_MARK.encode() in head:  # a broken run manifest: read, and refused there
            return Sniffed("manifest")
        return Sniffed("foreign", FOREIGN["autograd-json"]) if b'"ph"' in head else _not_a_trace("JSON")
    if not text.startswith(b"{"):
        return _not_a_trace("not JSON or SQLite")
    if looks_like_rocprofv3(head):
        return Sniffed("rocprofv3")
    for limit in (_HEAD, _LONG_HEAD):  # a huge distributedInfo can push traceEvents far down
        if limit != _HEAD:
            head = _head(path, limit)
        if looks_like_kineto(head):
            return Sniffed("kineto")
        if b'"nodes"' in head and b'"schema"' in head:
            return Sniffed("execution-trace")
        if MANIFEST_MARK.encode() in head:
            return Sniffed("manifest")
        if len(head) < limit:
            break  # the whole file was in view
    return _not_a_trace("JSON that is no trace: no traceEvents (Kineto), nodes (Execution Trace), "
                        "rocprofiler-sdk-tool (rocprofv3) or overlapscope run manifest")


def _not_a_trace(why: str) -> Sniffed:
    return Sniffed(None, why)


def _sqlite(path: Path) -> Sniffed:
    kind = sqlite_kind(path)
    if kind in ("rpd", "rocprof-v1"):
        return Sniffed("foreign", FOREIGN[kind])
    # None: unreadable or of no known schema; the nsys reader names what is missing
    return Sniffed(kind or "nsys")


def _head(path: Path, limit: int) -> bytes:
    """Up to `limit` bytes of the file's content, gunzipped when it is gzip."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit)
            if not raw or not raw.startswith(_GZIP_MAGIC):
                return raw
            fh.seek(0)
            d = zlib.decompressobj(wbits=31)
            out = b""
            while len(out) < limit and (chunk := fh.read(_HEAD)):
                out += d.decompress(chunk, limit - len(out))
    except OSError as e:
        raise BadInput(path, f"cannot read: {e.strerror}") from None
    except zlib.error as e:
        raise BadInput(path, f"corrupt gzip data: {e}") from None
    if not out:
        raise BadInput(path, "gzip file with nothing inside (truncated?)")
    return out
