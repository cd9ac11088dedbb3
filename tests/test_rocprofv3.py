"""The rocprofv3 JSON reader: the real MI350 corpus file (counts and overlap against numbers
the test takes from the file itself) and hand-built documents."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest

from corpus import corpus_path
from oracles import intersection_length, union
from overlapscope.errors import BadInput
from overlapscope.overlap import analyze
from overlapscope.trace.classify import classified
from overlapscope.trace.model import NO_ID
from overlapscope.trace.rocprofv3 import looks_like_rocprofv3, read_rocprofv3

CORPUS = ("wild", "tracelens-rocprofv3", "908_results.json.gz")


@pytest.fixture(scope="module")
def corpus():
    data = gzip.decompress(corpus_path(*CORPUS).read_bytes())
    return data, json.loads(data)["rocprofiler-sdk-tool"][0]


def test_corpus_counts(corpus):
    data, tool = corpus
    dispatches = tool["buffer_records"]["kernel_dispatch"]
    names = {s["kernel_id"]: s["formatted_kernel_name"] for s in tool["kernel_symbols"]}
    rccl = sum(names[d["dispatch_info"]["kernel_id"]].startswith("ncclDevKernel_Generic") for d in dispatches)
    assert (len(dispatches), rccl) == (43_915, 1_310)
    trace = classified(read_rocprofv3(data, "908_results.json.gz"))
    ops = trace.gpu_ops
    assert len(ops) == len(dispatches)
    assert (ops["kind"] == "kernel").all()
    assert ops["name"].astype(str).str.startswith("ncclDevKernel_Generic").sum() == rccl
    assert (ops["op_class"] == "comm").sum() == rccl
    assert [(r.rank, r.device, r.pid, r.format, r.gpu_name) for r in trace.ranks] == [
        (0, 0, 908, "rocprofv3", "AMD Instinct MI350X")]


def test_corpus_overlap_equals_brute_force(corpus):
    data, tool = corpus
    names = {s["kernel_id"]: s["formatted_kernel_name"] for s in tool["kernel_symbols"]}
    comm, compute = [], []
    for d in tool["buffer_records"]["kernel_dispatch"]:
        span = (d["start_timestamp"], d["end_timestamp"])
        (comm if names[d["dispatch_info"]["kernel_id"]].startswith("nccl") else compute).append(span)
    c, k = union(comm), union(compute)
    comm_ns = sum(e - s for s, e in c)
    expected = 100 * intersection_length(c, k) / comm_ns
    whole = analyze(classified(read_rocprofv3(data, "x"))).ranks[0]
    assert whole.comm_ns == comm_ns
    assert whole.overlap_pct == pytest.approx(expected, abs=0.01)


# --- hand-built documents ----------------------------------------------------------------------

KINDS = ["NONE", "HSA_CORE_API", "HIP_RUNTIME_API", "MARKER_CORE_RANGE_API", "MEMORY_COPY", "KERNEL_DISPATCH",
         "RCCL_API"]
OPS = {"HIP_RUNTIME_API": ["hipLaunchKernel", "hipEventRecord", "hipStreamWaitEvent", "hipStreamSynchronize",
                           "hipDeviceSynchronize"],
       "MARKER_CORE_RANGE_API": ["roctxMarkA", "roctxThreadRangeA", "roctxProcessRangeA", "roctxGetThreadId"],
       "MEMORY_COPY": ["MEMORY_COPY_NONE", "MEMORY_COPY_HOST_TO_HOST", "MEMORY_COPY_HOST_TO_DEVICE",
                       "MEMORY_COPY_DEVICE_TO_HOST", "MEMORY_COPY_DEVICE_TO_DEVICE"],
       "KERNEL_DISPATCH": ["KERNEL_DISPATCH_NONE", "KERNEL_DISPATCH_ENQUEUE", "KERNEL_DISPATCH_COMPLETE"],
       "RCCL_API": ["ncclAllGather", "ncclAllReduce"]}
K = {name: i for i, name in enumerate(KINDS)}


class Doc:
    """A one-process rocprofv3 document; agents 10, 11 are CPUs, 12 and 13 GPUs 0 and 1."""

    def __init__(self, pid=77):
        self.pid, self.corr = pid, 0
        self.records = {"kernel_dispatch": [], "hip_api": [], "marker_api": [], "rccl_api": [], "memory_copy": []}
        self.messages, self.symbols = [], []

    def _rec(self, kind, op, start, end, tid=None, corr=None):
        if corr is None:
            self.corr += 1
            corr = self.corr
        return {"size": 64, "kind": K[kind], "operation": OPS[kind].index(op), "thread_id": tid or self.pid,
                "correlation_id": {"internal": corr, "external": 0}, "start_timestamp": start, "end_timestamp": end}

    def hip(self, op, start, end, **args):
        rec = self._rec("HIP_RUNTIME_API", op, start, end)
        if args:
            rec["args"] = args
        self.records["hip_api"].append(rec)
        return rec["correlation_id"]["internal"]

    def launch(self, kernel, stream, at, start, end, gpu=0):
        corr = self.hip("hipLaunchKernel", at, at + 5, stream=hex(0x500 + stream))
        if kernel not in [s["formatted_kernel_name"] for s in self.symbols]:
            self.symbols.append({"kernel_id": len(self.symbols) + 1, "kernel_name": f"_Z{kernel}.kd",
                                 "formatted_kernel_name": kernel, "truncated_kernel_name": kernel})
        kid = next(s["kernel_id"] for s in self.symbols if s["formatted_kernel_name"] == kernel)
        rec = self._rec("KERNEL_DISPATCH", "KERNEL_DISPATCH_COMPLETE", start, end, corr=corr)
        rec["dispatch_info"] = {"agent_id": {"handle": 12 + gpu}, "queue_id": {"handle": 1}, "kernel_id": kid}
        rec["stream_id"] = {"handle": stream}
        self.records["kernel_dispatch"].append(rec)

    def marker(self, message, start, end, op="roctxThreadRangeA"):
        rec = self._rec("MARKER_CORE_RANGE_API", op, start, end)
        self.messages.append({"key": rec["correlation_id"]["internal"], "value": message})
        self.records["marker_api"].append(rec)

    def rccl(self, op, start, end):
        self.records["rccl_api"].append(self._rec("RCCL_API", op, start, end))

    def copy(self, op, start, end, dst, src, stream):
        rec = self._rec("MEMORY_COPY", op, start, end)
        rec.update(dst_agent_id={"handle": dst}, src_agent_id={"handle": src}, bytes=64, stream_id={"handle": stream})
        self.records["memory_copy"].append(rec)

    def bytes(self) -> bytes:
        agents = [{"id": {"handle": 10 + i}, "type": 1 if i < 2 else 2, "logical_node_type_id": i % 2 if i < 2 else i - 2,
                   "product_name": "EPYC" if i < 2 else "AMD Instinct MI300X"} for i in range(4)]
        strings = {"buffer_records": [{"kind": k, "operations": OPS.get(k, [])} for k in KINDS],
                   "marker_api": self.messages}
        tool = {"metadata": {"pid": self.pid}, "agents": agents, "strings": strings, "kernel_symbols": self.symbols,
                "buffer_records": self.records}
        return orjson.dumps({"rocprofiler-sdk-tool": [tool]})


def test_hand_built_document():
    d = Doc()
    d.marker("ProfilerStep#2", 0, 1000, op="roctxProcessRangeA")
    d.marker("tbo", 10, 900)
    d.marker("instant", 15, 15, op="roctxMarkA")
    d.launch("gemm_kernel", 1, 20, 100, 400)
    d.rccl("ncclAllReduce", 50, 80)
    d.launch("ncclDevKernel_Generic_1", 2, 60, 300, 600)
    d.hip("hipEventRecord", 610, 612, event="0xe1", stream=hex(0x502))
    d.hip("hipStreamWaitEvent", 620, 622, stream=hex(0x501), event="0xe1")
    d.hip("hipStreamSynchronize", 630, 700, stream=hex(0x501))
    d.hip("hipDeviceSynchronize", 710, 720)
    d.copy("MEMORY_COPY_DEVICE_TO_HOST", 800, 850, dst=10, src=12, stream=1)
    d.launch("other_gpu_kernel", 1, 900, 950, 990, gpu=1)
    data = d.bytes()
    assert looks_like_rocprofv3(data[:4096])
    trace = read_rocprofv3(data, "77_results.json", first_rank=3)
    assert [(r.rank, r.device, r.pid, r.format) for r in trace.ranks] == [(3, 0, 77, "rocprofv3"), (4, 1, 77, "rocprofv3")]
    ops = trace.gpu_ops
    assert ops["name"].astype(str).tolist() == ["gemm_kernel", "ncclDevKernel_Generic_1", "other_gpu_kernel",
                                                "Memcpy DtoH (Device -> Host)"]
    assert ops["device"].tolist() == [0, 0, 1, 0]
    assert ops["rank"].tolist() == [3, 3, 4, 3]
    calls = trace.host_calls[trace.host_calls["rank"] == 3]
    launched = calls[calls["name"] == "hipLaunchKernel"]["correlation"].tolist()
    assert launched[:2] == ops["correlation"].tolist()[:2]
    ranges = trace.ranges[trace.ranges["rank"] == 3].sort_values("start")
    assert ranges["name"].astype(str).tolist() == ["ProfilerStep#2", "tbo", "ncclAllReduce"]
    assert ranges["source"].astype(str).tolist() == ["profiler_step", "nvtx", "nvtx"]
    assert ranges["domain"].astype(str).tolist() == ["", "", "rccl"]
    # syncs land on the rank of the stream they name; hipDeviceSynchronize in a two-GPU process
    # names no device and cannot be placed
    syncs = trace.syncs
    assert syncs["kind"].astype(str).tolist() == ["event_record", "stream_wait_event", "stream_sync"]
    assert syncs["rank"].tolist() == [3, 3, 3]
    assert syncs["stream"].tolist() == [2, 1, 1]
    assert syncs["wait_on_stream"].tolist() == [NO_ID, 2, NO_ID]
    result = analyze(classified(trace), ["^tbo$"])
    assert (result.ranks[0].comm_ns, result.ranks[0].overlap_ns) == (300, 100)
    assert result.regions[0].comm_ns == 300
    assert [s.comm_ns for s in result.steps if s.rank == 3] == [300]


def test_calls_without_arguments_leave_the_stream_unknown():
    d = Doc()
    d.launch("gemm_kernel", 1, 20, 100, 400)
    d.hip("hipStreamSynchronize", 30, 410)
    for rec in d.records["hip_api"]:
        rec.pop("args", None)
    syncs = read_rocprofv3(d.bytes(), "x").syncs
    assert syncs["kind"].astype(str).tolist() == ["stream_sync"]
    assert syncs["stream"].tolist() == [NO_ID]
    assert syncs["device"].tolist() == [0]  # the process's only GPU


def test_sniffing():
    assert looks_like_rocprofv3(b'{\n  "rocprofiler-sdk-tool": [')
    assert not looks_like_rocprofv3(b'{"traceEvents": [], "schemaVersion": 1}')
    assert not looks_like_rocprofv3(b"SQLite format 3\x00")


def test_bad_input():
    with pytest.raises(BadInput, match="not valid JSON"):
        read_rocprofv3(b'{"rocprofiler-sdk-tool": [{"metadata"', "t.json")
    with pytest.raises(BadInput, match="not a rocprofv3 JSON"):
        read_rocprofv3(b'{"traceEvents": []}', "t.json")
    d = Doc()
    d.launch("k", 1, 0, 10, 20)
    doc = orjson.loads(d.bytes())
    del doc["rocprofiler-sdk-tool"][0]["buffer_records"]["kernel_dispatch"]
    with pytest.raises(BadInput, match="--kernel-trace"):
        read_rocprofv3(orjson.dumps(doc), "t.json")
    doc = orjson.loads(d.bytes())
    doc["rocprofiler-sdk-tool"][0]["buffer_records"]["kernel_dispatch"][0]["start_timestamp"] = None
    with pytest.raises(BadInput) as e:
        read_rocprofv3(orjson.dumps(doc), "t.json")
    assert e.value.source == "t.json"
    doc = orjson.loads(d.bytes())
    doc["rocprofiler-sdk-tool"][0]["buffer_records"]["kernel_dispatch"] = []
    with pytest.raises(BadInput, match="no kernel dispatches"):
        read_rocprofv3(orjson.dumps(doc), "t.json")
