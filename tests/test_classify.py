"""overlapscope/trace/classify.py: every GPU op's class (comm / compute / memory / fused) and family."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from builders import KinetoBuilder
from overlapscope.errors import BadInput
from overlapscope.overlap import analyze
from overlapscope.pipeline import ScaleOptions, load
from overlapscope.trace.classify import (COPY_FAMILY, USER_FAMILY, classified, classify_ops, compile_patterns,
                                         without_kernels)
from overlapscope.trace.model import GPU_OP_COLUMNS, RankInfo, Trace, frame_from_columns

NCCL = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
RCCL = "ncclDevKernel_Generic_4(ncclDevKernelArgsStorage<4096ul>)"  # wild/tracelens-rocprofv3/908_results.json.gz
SYMM = ("void (anonymous namespace)::multimem_all_reduce_kernel<c10::BFloat16, 16>(c10::BFloat16*, unsigned long, "
        "unsigned int**, unsigned long, unsigned long)")  # wild/tracelens-kineto/b200_vllm_tp_eager.json.gz
FUSED = ("void tensorrt_llm::kernels::ar_fusion::allreduce_fusion_kernel_oneshot_lamport<__nv_bfloat16, "
         "(tensorrt_llm::kernels::ar_fusion::AllReduceFusionPattern)1, 8, true>(...)")
CUSTOM_AR = "void vllm::cross_device_reduce_1stage<__nv_bfloat16, 8>(vllm::RankData*, vllm::RankSignals, " \
            "vllm::Signal*, __nv_bfloat16*, int, int)"
PEER = "Memcpy PtoP (Device -> Device)"


def ops(*rows: tuple[str, str | None]) -> pd.DataFrame:
    """A gpu_ops frame of (kind, name) rows; a None name is an op without a name."""
    names = pd.Categorical([n for _, n in rows])
    frame = frame_from_columns({"kind": [k for k, _ in rows], "start": list(range(len(rows))),
                                "end": list(range(1, len(rows) + 1))}, GPU_OP_COLUMNS)
    return frame.assign(name=names)


def classes(frame: pd.DataFrame, patterns=(), copy_comm=False) -> list[tuple[str, str]]:
    op_class, family = classify_ops(frame, patterns, copy_comm)
    return list(zip(op_class.astype(str), family.astype(str)))


def test_memcpy_and_memset_are_always_memory():
    frame = ops(("memcpy", "Memcpy DtoD (Device -> Device)"), ("memcpy", PEER), ("memset", "Memset (Device)"),
                ("memcpy", "ncclDevKernel_looks_like_nccl"), ("memset", "my_allreduce"))
    # whatever the name, and whatever a user pattern says (a peer copy may carry its family while
    # not counted, so that the output can say such copies exist)
    got = classes(frame, ["Memcpy", "Memset", "allreduce", "nccl"])
    assert [c for c, _ in got] == ["memory"] * 5
    assert [f for _, f in got] in (["", COPY_FAMILY, "", "", ""], [""] * 5)


def test_copy_comm_counts_peer_copies_only():
    frame = ops(("memcpy", PEER), ("memcpy", "Memcpy DtoD (Device -> Device)"),
                ("memcpy", "Memcpy HtoD (Pinned -> Device)"),
                ("memcpy", "PeerToPeer copy"), ("memset", "Memset PtoP"), ("kernel", "PtoP_pack_kernel"))
    assert [c for c, _ in classes(frame)] == ["memory"] * 5 + ["compute"]
    assert [f for _, f in classes(frame)][1:3] + [f for _, f in classes(frame)][4:] == ["", "", "", ""]
    assert classes(frame, copy_comm=True) == [
        ("comm", COPY_FAMILY), ("memory", ""), ("memory", ""), ("comm", COPY_FAMILY), ("memory", ""), ("compute", "")]
    assert COPY_FAMILY == "peer copy"


def test_taxonomy_families_user_patterns_and_fused():
    frame = ops(("kernel", NCCL), ("kernel", RCCL), ("kernel", SYMM), ("kernel", CUSTOM_AR), ("kernel", FUSED),
                ("kernel", "my_custom_allreduce_kernel"), ("kernel", "ampere_sgemm_128x64_nn"))
    assert classes(frame) == [("comm", "nccl"), ("comm", "rccl"), ("comm", "torch-symm-mem"),
                              ("comm", "vllm-sglang-custom-allreduce"), ("fused", "trtllm-allreduce-fusion"),
                              ("compute", ""), ("compute", "")]
    # a user pattern counts its kernel, with family "user pattern"; it never renames a taxonomy family
    # nor turns a fused kernel into comm
    got = classes(frame, ["custom_allreduce", "nccl", "allreduce_fusion"])
    assert got[5] == ("comm", USER_FAMILY) and USER_FAMILY == "user pattern"
    assert got[:5] == classes(frame)[:5] and got[6] == ("compute", "")


def test_user_patterns_use_re_search():
    frame = ops(("kernel", "void ns::my_a2a_kernel<float>(float*)"), ("kernel", "my_a2a"))
    assert classes(frame, ["a2a_kernel"]) == [("comm", USER_FAMILY), ("compute", "")]
    assert classes(frame, ["^my_a2a$"]) == [("compute", ""), ("comm", USER_FAMILY)]


def test_unnamed_ops():
    frame = ops(("kernel", None), ("memcpy", None), ("kernel", NCCL), ("memset", None))
    assert frame["name"].cat.codes.tolist()[:2] == [-1, -1]
    assert classes(frame) == [("compute", ""), ("memory", ""), ("comm", "nccl"), ("memory", "")]
    # a pattern matching anything still gives a nameless kernel no family
    assert classes(frame, ["."], copy_comm=True)[0] == ("compute", "")
    assert classes(frame, [".*"])[:2] == [("compute", ""), ("memory", "")]


def test_each_distinct_name_is_classified_once_whatever_its_rows():
    frame = ops(*[("kernel", NCCL), ("kernel", "gemm")] * 500)
    got = classes(frame)
    assert got == [("comm", "nccl"), ("compute", "")] * 500


def test_bad_pattern_is_bad_input():
    with pytest.raises(BadInput) as e:
        compile_patterns(["("])
    assert e.value.source == "comm_patterns"
    with pytest.raises(BadInput):
        classify_ops(ops(("kernel", "x")), ["[unclosed"])


def _trace(frame: pd.DataFrame) -> Trace:
    return dataclasses.replace(Trace.empty([RankInfo(0, "t")]), gpu_ops=frame.assign(rank=np.int32(0)))


def test_classified_returns_a_new_trace_and_leaves_the_input_alone():
    trace = _trace(ops(("kernel", NCCL), ("kernel", "gemm"), ("memcpy", PEER)))
    before = trace.gpu_ops.copy()
    out = classified(trace, copy_comm=True)
    assert out is not trace
    assert out.gpu_ops["op_class"].astype(str).tolist() == ["comm", "compute", "comm"]
    assert out.gpu_ops["family"].astype(str).tolist() == ["nccl", "", COPY_FAMILY]
    pd.testing.assert_frame_equal(trace.gpu_ops, before)


def test_without_kernels_drops_kernels_only():
    trace = _trace(ops(("kernel", "spin_kernel"), ("kernel", "gemm"), ("memcpy", "spin_kernel copy"),
                       ("kernel", None)))
    out = without_kernels(trace, ["spin"])
    assert out.gpu_ops["name"].tolist()[:2] == ["gemm", "spin_kernel copy"]
    assert out.gpu_ops["name"].isna().tolist() == [False, False, True]
    assert without_kernels(trace, []) is trace
    with pytest.raises(BadInput) as e:
        without_kernels(trace, ["("])
    assert e.value.source == "exclude_kernels"


def test_copy_comm_through_the_loader(tmp_path):
    """A peer copy [0,1000) under a gemm [500,1500): memory by default (nothing to measure),
    communication with copy_comm: 1000 ns of comm, 500 hidden."""
    b = KinetoBuilder(rank=0)
    b.kernel(PEER, 9, 0, 1_000, launch_at=0, cat="gpu_memcpy")
    b.kernel("gemm", 7, 500, 1_500, launch_at=1)
    b.kernel("Memset (Device)", 9, 2_000, 2_100, launch_at=2, cat="gpu_memset")
    path = b.write(tmp_path / "t.json")
    plain = analyze(load([path]))
    assert plain.ranks[0].comm_ns == 0 and plain.ranks[0].overlap_pct is None
    assert all(f.op_class == "memory" for f in plain.families if f.family == COPY_FAMILY)
    trace = load([path], options=ScaleOptions(jobs=1, copy_comm=True))
    assert sorted(zip(trace.gpu_ops["kind"].astype(str), trace.gpu_ops["op_class"].astype(str))) == [
        ("kernel", "compute"), ("memcpy", "comm"), ("memset", "memory")]
    result = analyze(trace)
    (row,) = result.ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns, row.overlap_pct) == (1000, 1000, 500, 50.0)
    assert [(f.family, f.op_class, f.kernels, f.time_ns) for f in result.families] == [
        (COPY_FAMILY, "comm", 1, 1000)]
