"""Builders for hand-made race scenarios (imported by the other test_races_* modules).

`RaceBuilder` extends the shared KinetoBuilder with the CUDA calls a race needs: event records,
stream waits, synchronizes, access marks (instrument.encode_access_mark), NCCL kernels with
their metadata, and cpu_ops linked to an Execution Trace.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from builders import KinetoBuilder, _Num, us
from overlapscope.instrument import encode_access_mark
from overlapscope.races import RaceReport, check_races
from overlapscope.pipeline import load

T0 = 1_712_195_495_505_583_000  # an absolute epoch base, as real traces have
MAIN, NIC = 1000, 2000  # host threads: the model's, and a transfer engine's


class RaceBuilder(KinetoBuilder):
    def launch(self, name: str, stream: int, launch_at: int, start: int, end: int, tid: int | None = None,
               args: dict[str, Any] | None = None) -> int:
        """A kernel [start, end) on `stream`, launched at `launch_at` (all relative to T0)."""
        return self.kernel(name, stream, T0 + start, T0 + end, launch_at=T0 + launch_at, tid=tid, args=args)

    def record(self, at: int, tid: int | None = None) -> int:
        """A cudaEventRecord call; returns its correlation id (waits name it)."""
        corr = self._next_corr()
        self.host_call("cudaEventRecord", T0 + at, T0 + at + 20, corr, tid=tid)
        return corr

    def wait(self, stream: int, on_stream: int, record_corr: int, at: int, event_id: int = 1) -> int:
        corr = self.sync("Stream Wait Event", T0 + at, T0 + at + 20, stream=stream, wait_on_stream=on_stream,
                         record_corr=record_corr, event_id=event_id)
        self.host_call("cudaStreamWaitEvent", T0 + at, T0 + at + 20, corr)
        return corr

    def stream_sync(self, stream: int, start: int, end: int, tid: int | None = None) -> int:
        corr = self.sync("Stream Sync", T0 + start, T0 + end, stream=stream)
        self.host_call("cudaStreamSynchronize", T0 + start, T0 + end, corr, tid=tid)
        return corr

    def device_sync(self, start: int, end: int, tid: int | None = None) -> int:
        corr = self.sync("Context Sync", T0 + start, T0 + end)
        self.host_call("cudaDeviceSynchronize", T0 + start, T0 + end, corr, tid=tid)
        return corr

    def event_sync(self, on_stream: int, record_corr: int, start: int, end: int, query: bool = False) -> int:
        corr = self.sync("Event Sync", T0 + start, T0 + end, wait_on_stream=on_stream, record_corr=record_corr,
                         event_id=1)
        self.host_call("cudaEventQuery" if query else "cudaEventSynchronize", T0 + start, T0 + end, corr)
        return corr

    def mark(self, label: str, start: int, end: int, reads: dict | None = None, writes: dict | None = None,
             on: str = "gpu", tid: int | None = None) -> None:
        self.annotation(encode_access_mark(label, reads, writes, on), T0 + start, T0 + end, tid=tid)

    def region(self, name: str, start: int, end: int, tid: int | None = None) -> None:
        self.annotation(name, T0 + start, T0 + end, tid=tid)

    def step(self, n: int, start: int, end: int) -> None:
        self.annotation(f"ProfilerStep#{n}", T0 + start, T0 + end)

    def collective(self, collective: str, nelems: int, stream: int, launch_at: int, start: int, end: int,
                   pg: str = "0", seq: int | None = None) -> int:
        args = {"Collective name": collective, "Process Group Name": pg, "Group size": 2,
                "In msg nelems": nelems, "Out msg nelems": nelems, "dtype": "Float"}
        if seq is not None:
            args["Seq"] = seq
        return self.launch(f"ncclDevKernel_{collective}_RING_LL", stream, launch_at, start, end, args=args)

    def cpu_op(self, name: str, start: int, end: int, rf_id: int, tid: int | None = None) -> None:
        """A cpu_op carrying the "Record function id" that links it to an Execution Trace node."""
        self.events.append({"ph": "X", "cat": "cpu_op", "name": name, "pid": self.pid, "tid": tid or self.tid,
                            "ts": _Num(us(T0 + start)), "dur": _Num(us(end - start)),
                            "args": {"External id": 10_000 + rf_id, "Record function id": rf_id}})


def execution_trace(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """A schema-1.1.1 Execution Trace; nodes: dicts with id, rf_id, name, inputs, outputs (lists of
    (value, type)), optional schema."""
    out = [{"id": 1, "name": "[pytorch|profiler|execution_trace|process]", "ctrl_deps": 1,
            "inputs": {"values": [], "shapes": [], "types": [], "strides": []},
            "outputs": {"values": [], "shapes": [], "types": [], "strides": []},
            "attrs": [{"name": "rf_id", "type": "uint64", "value": 0}]}]
    for n in nodes:
        def block(items: list[tuple[Any, str]]) -> dict[str, Any]:
            return {"values": [v for v, _ in items], "types": [t for _, t in items],
                    "shapes": [[] for _ in items], "strides": [[] for _ in items]}
        out.append({"id": n["id"], "name": n["name"], "ctrl_deps": 1, "inputs": block(n.get("inputs", [])),
                    "outputs": block(n.get("outputs", [])),
                    "attrs": [{"name": "rf_id", "type": "uint64", "value": n["rf_id"]},
                              {"name": "op_schema", "type": "string", "value": n.get("schema", "")}]})
    return {"schema": "1.1.1-chakra.0.0.4", "pid": 1, "time": "2026-01-01 00:00:00", "start_ts": 0, "nodes": out,
            "finish_ts": 1}


def tensor(tensor_id: int, storage_id: int, numel: int = 1024, itemsize: int = 4, offset: int = 0) -> list[Any]:
    return [tensor_id, storage_id, offset, numel, itemsize, "cuda:0"]


def write(builder: KinetoBuilder, directory: Path, name: str = "rank-0.trace.json") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return builder.write(directory / name)


def write_et(doc: dict[str, Any], path: Path) -> Path:
    data = orjson.dumps(doc)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def check(*builders: KinetoBuilder, tmp_path: Path, et: dict[str, Any] | None = None) -> RaceReport:
    """Write the builders as one run (rank i -> rank-i file), load it, check it."""
    run = tmp_path / "run"
    for b in builders:
        write(b, run, f"rank-{b.rank}.trace.json")
    if et is not None:
        write_et(et, run / "rank-0.et.json")
    return check_races(load([run]))
