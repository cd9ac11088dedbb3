"""Hand-built traces with answers known by construction, shared by the tests.

`KinetoBuilder` writes a Kineto (Chrome trace) JSON the way the PyTorch profiler does: GPU ops
on pid=device / tid=stream, host calls and ranges on a pid/tid, times in decimal microseconds
printed from exact integer nanoseconds.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


def us(ns: int) -> str:
    """Exact decimal microseconds of an integer ns, as Kineto prints them."""
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return f"{sign}{ns // 1000}.{ns % 1000:03d}"


class _Num:
    """A pre-formatted JSON number (so the test controls the exact text)."""

    def __init__(self, text: str):
        self.text = text


@dataclass
class KinetoBuilder:
    rank: int | None = 0
    world_size: int | None = 2
    device: int = 0
    pid: int = 1000
    tid: int = 1000
    events: list[dict[str, Any]] = field(default_factory=list)
    _corr: int = 1

    def _next_corr(self) -> int:
        self._corr += 1
        return self._corr

    def kernel(self, name: str, stream: int, start: int, end: int, launch_at: int | None = None,
               tid: int | None = None, cat: str = "kernel", api: str = "cuda_runtime",
               args: dict[str, Any] | None = None, device: int | None = None) -> int:
        """A GPU op (on `device`, else the builder's) and (unless launch_at is None) the host call
        that launched it. Returns its correlation."""
        corr = self._next_corr()
        device = self.device if device is None else device
        self.events.append({"ph": "X", "cat": cat, "name": name, "pid": device, "tid": stream,
                            "ts": _Num(us(start)), "dur": _Num(us(end - start)),
                            "args": {"device": device, "stream": stream, "correlation": corr,
                                     "External id": corr, **(args or {})}})
        if launch_at is not None:
            launch = "cudaLaunchKernel" if api == "cuda_runtime" else "cuLaunchKernelEx"
            if cat == "gpu_memcpy":
                launch = "cudaMemcpyAsync"
            self.host_call(launch, launch_at, launch_at + 1000, corr, tid=tid, cat=api)
        return corr

    def memcpy(self, stream: int, start: int, end: int, launch_at: int | None = None,
               device: int | None = None) -> int:
        return self.kernel("Memcpy DtoD (Device -> Device)", stream, start, end, launch_at, cat="gpu_memcpy",
                           device=device)

    def host_call(self, name: str, start: int, end: int, corr: int, tid: int | None = None,
                  cat: str = "cuda_runtime") -> None:
        self.events.append({"ph": "X", "cat": cat, "name": name, "pid": self.pid, "tid": tid or self.tid,
                            "ts": _Num(us(start)), "dur": _Num(us(end - start)),
                            "args": {"correlation": corr, "External id": corr}})

    def annotation(self, name: str, start: int, end: int, tid: int | None = None,
                   cat: str = "user_annotation") -> None:
        self.events.append({"ph": "X", "cat": cat, "name": name, "pid": self.pid, "tid": tid or self.tid,
                            "ts": _Num(us(start)), "dur": _Num(us(end - start)), "args": {}})

    def sync(self, kind: str, start: int, end: int, stream: int = -1, wait_on_stream: int = -1,
             record_corr: int = -1, event_id: int = -1, device: int | None = None) -> int:
        corr = self._next_corr()
        device = self.device if device is None else device
        self.events.append({"ph": "X", "cat": "cuda_sync", "name": kind, "pid": device,
                            "tid": stream if stream != -1 else -1, "ts": _Num(us(start)), "dur": _Num(us(end - start)),
                            "args": {"cuda_sync_kind": kind, "wait_on_stream": wait_on_stream,
                                     "wait_on_cuda_event_record_corr_id": record_corr,
                                     "wait_on_cuda_event_id": event_id, "stream": stream,
                                     "correlation": corr, "device": device}})
        return corr

    def document(self) -> dict[str, Any]:
        devices = sorted({self.device} | {e["args"]["device"] for e in self.events
                                          if isinstance(e.get("args", {}).get("device"), int)})
        doc: dict[str, Any] = {"schemaVersion": 1,
                               "deviceProperties": [{"id": d, "name": "Test GPU"} for d in devices]}
        if self.rank is not None:
            doc["distributedInfo"] = {"backend": "nccl", "rank": self.rank, "world_size": self.world_size}
        doc["traceEvents"] = self.events
        return doc

    def dumps(self) -> bytes:
        # orjson cannot emit pre-formatted numbers: write placeholders, then splice the texts in
        texts: list[str] = []

        def default(obj: Any) -> str:
            if isinstance(obj, _Num):
                texts.append(obj.text)
                return f"\x00NUM{len(texts) - 1}\x00"
            raise TypeError(obj)

        raw = orjson.dumps(self.document(), default=default).decode()
        for i, text in enumerate(texts):
            raw = raw.replace(f'"\\u0000NUM{i}\\u0000"', text, 1)
        return raw.encode()

    def write(self, path: Path) -> Path:
        data = self.dumps()
        if path.name.endswith(".gz"):
            data = gzip.compress(data)
        path.write_bytes(data)
        return path
