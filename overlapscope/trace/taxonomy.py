"""The communication taxonomy, kept as data (DESIGN.md, "GPU op classes").

`FAMILIES` lists the kernel families that move data between GPUs, each with the library that
launches it, its name patterns (`re.search` on the kernel name as the trace writes it) and where
each name was seen: a source file (``owner/repo path``) or a trace (``corpus file``).
Order matters: `family_of` answers with the first family whose pattern matches, so specific
families (RCCL's own kernels, NCCL send/recv, TensorRT-LLM's fused kernels) come before the
broad ones that would also catch them.

``op_class`` is ``"comm"`` for kernels that only communicate and ``"fused"`` for kernels that
communicate inside a compute kernel (all-reduce + residual + RMSNorm + quantization); a reader
reports the two apart.

`SUSPECT` / `looks_like_comm` find kernel names that look like communication but match no
family (and so are counted as compute): advice for the user, with `suggested_pattern` giving
the ``--comm-pattern`` that would count one. Standard library only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

OP_CLASS_COMM = "comm"
OP_CLASS_FUSED = "fused"


@dataclass(frozen=True)
class Family:
    name: str
    library: str
    op_class: str  # "comm" or "fused"
    patterns: tuple[str, ...]
    sources: tuple[str, ...]


FAMILIES: tuple[Family, ...] = (
    Family(
        name="trtllm-allreduce-fusion",
        library="TensorRT-LLM / FlashInfer fused all-reduce + residual + RMSNorm (+ quant)",
        op_class=OP_CLASS_FUSED,
        patterns=(
            r"\ballreduce_fusion_kernel_\w+",
            r"\bmoereduce_allreduce_fusion_kernel\w*",
            r"(?<![\w])ar_fusion::",
        ),
        sources=(
            "NVIDIA/TensorRT-LLM cpp/tensorrt_llm/kernels/communicationKernels/allReduceFusionKernels.cu",
            "NVIDIA/TensorRT-LLM cpp/tensorrt_llm/kernels/communicationKernels/moeAllReduceFusionKernels.cu",
            "flashinfer-ai/flashinfer include/flashinfer/comm/trtllm_allreduce_fusion.cuh",
        ),
    ),
    Family(
        name="trtllm-allreduce",
        library="TensorRT-LLM custom all-reduce (also FlashInfer's port and PyTorch intra-node comm)",
        op_class=OP_CLASS_COMM,
        patterns=(r"\b(?:one|two)ShotAllReduceKernel\b",),
        sources=(
            "NVIDIA/TensorRT-LLM cpp/tensorrt_llm/kernels/customAllReduceKernels.cu",
            "flashinfer-ai/flashinfer include/flashinfer/comm/trtllm_allreduce.cuh",
        ),
    ),
    Family(
        name="rccl",
        library="RCCL (AMD): its generic kernels by unroll factor and its MSCCL kernels",
        op_class=OP_CLASS_COMM,
        patterns=(
            r"\bncclDevKernel(?:Debug)?_Generic_\d\b",
            r"\bmscclKernel_\w+",
        ),
        sources=(
            "ROCm/rccl src/device/common.cu",
            "ROCm/rccl src/include/msccl/msccl_kernel.h",
            "wild/tracelens-rocprofv3/908_results.json.gz",
        ),
    ),
    Family(
        name="nccl-alltoall",
        library="NCCL send/recv (all-to-all, point-to-point) and Meta NCCLX/ctran all-to-all",
        op_class=OP_CLASS_COMM,
        patterns=(
            r"\bnccl(?:Dev)?Kernel_SendRecv(?![A-Za-z])",
            r"\bncclKernel(?:AllToAll\w*|SendRecv)\b",
        ),
        sources=(
            "NVIDIA/nccl src/device/generate.py",
            "NVIDIA/nccl src/collectives/device/common.h",
            "xman1979/torchcomms comms/ctran/algos/AllToAll/AllToAllvDynamic.cuh",
            "kineto/hta/negative_queue_rank0.json.gz",
        ),
    ),
    Family(
        name="nccl",
        library="NCCL (and RCCL, which keeps NCCL's names): ncclKernel_*, ncclDevKernel_*, symmetric kernels",
        op_class=OP_CLASS_COMM,
        patterns=(r"^(?:void\s+)?nccl",),
        sources=(
            "NVIDIA/nccl src/device/generate.py",
            "NVIDIA/nccl src/device/symmetric/generate.py",
            "NVIDIA/nccl src/collectives/device/common.h",
            "kineto/hta/df_index_resolver.json.gz",
            "wild/tracelens-kineto/b200_vllm_tp_eager.json.gz",
            "wild/tracelens-kineto/mi300_resnet_act_checkpoint.json.gz",
        ),
    ),
    Family(
        name="torch-symm-mem",
        library="PyTorch symmetric memory (multimem, one-shot/two-shot all-reduce, NVSHMEM extension)",
        op_class=OP_CLASS_COMM,
        patterns=(
            r"\bmultimem_(?:one_shot_)?all_(?:reduce|gather)_kernel\b",
            r"\b(?:one|two)_shot_all_reduce_kernel(?:_inplace)?\b",
            r"(?<![\w])c10d::symmetric_memory::",
            r"(?<![\w])c10d::nvshmem_extension::",
        ),
        sources=(
            "pytorch/pytorch torch/csrc/distributed/c10d/symm_mem/CUDASymmetricMemoryOps.cu",
            "pytorch/pytorch torch/csrc/distributed/c10d/symm_mem/nvshmem_extension.cu",
            "wild/tracelens-kineto/b200_vllm_tp_eager.json.gz",
        ),
    ),
    Family(
        name="deepep",
        library="DeepEP dispatch/combine (open source deep_ep::, and DeepSeek's own dpsk::ep:: build)",
        op_class=OP_CLASS_COMM,
        # get_dispatch_layout only counts tokens per rank/expert locally: compute, not comm.
        # The look-behind keeps e.g. DeepSeek's "cdpsk::ep::CUB_..." scan kernels out.
        patterns=(
            r"(?<![\w])deep_ep::(?!(?:\w+::)*get_dispatch_layout\b)",
            r"(?<![\w])dpsk::ep::(?!(?:\w+::)*get_dispatch_layout\b)",
        ),
        sources=(
            "deepseek-ai/DeepEP csrc/kernels/intranode.cu",
            "deepseek-ai/DeepEP csrc/kernels/internode.cu",
            "deepseek-ai/DeepEP csrc/kernels/internode_ll.cu",
            "deepseek-ai/profile-data prefill.json (@449602428a1b)",
            "deepseek-ai/profile-data decode.json (@449602428a1b)",
        ),
    ),
    Family(
        name="nvshmem",
        library="NVSHMEM (device-initiated communication and its on-stream collectives)",
        op_class=OP_CLASS_COMM,
        patterns=(r"(?i:nvshmem)", r"\b\w+_on_stream_kernel\w*"),
        sources=(
            "NVIDIA/nvshmem src/host/stream/coll/alltoall/alltoall.cu",
            "NVIDIA/nvshmem src/host/stream/coll/barrier/barrier.cu",
        ),
    ),
    Family(
        name="mori",
        library="AMD mori (MoE dispatch/combine, collectives)",
        op_class=OP_CLASS_COMM,
        patterns=(r"(?<![\w])mori::", r"\bEp(?:Dispatch|Combine)\w*Kernel\b"),
        sources=(
            "ROCm/mori src/ops/dispatch_combine/intranode.hpp",
            "ROCm/mori src/ops/dispatch_combine/internode.hpp",
        ),
    ),
    Family(
        name="aiter-allreduce",
        library="AMD aiter custom all-reduce and quick reduce (quick reduce also in vLLM/SGLang)",
        op_class=OP_CLASS_COMM,
        patterns=(
            r"(?<![\w])aiter::cross_device_reduce_\w+",
            r"(?<![\w])quickreduce::",
            r"\ballreduce_prototype_(?:one|two)shot\b",
        ),
        sources=(
            "ROCm/aiter csrc/include/custom_all_reduce.cuh",
            "ROCm/aiter csrc/include/quick_all_reduce.cuh",
            "vllm-project/vllm csrc/quickreduce/quick_reduce.h",
        ),
    ),
    Family(
        name="vllm-sglang-custom-allreduce",
        library="vLLM / SGLang custom all-reduce (cross_device_reduce_1stage/2stage)",
        op_class=OP_CLASS_COMM,
        patterns=(r"\bcross_device_reduce_\dstage\w*",),
        sources=(
            "vllm-project/vllm csrc/custom_all_reduce.cuh",
            "sgl-project/sglang sgl-kernel/csrc/allreduce/custom_all_reduce.cuh",
        ),
    ),
    Family(
        name="mscclpp",
        library="MSCCL++ (its NCCL-compatible kernels and executor)",
        op_class=OP_CLASS_COMM,
        patterns=(
            r"(?<![\w])mscclpp::",
            r"(?:^|[\s:])(?:allreduce(?:AllPairs|AllToAll|\d+)|allgather\d+)\s*[<(]",
        ),
        sources=(
            "microsoft/mscclpp apps/nccl/src/allreduce.hpp",
            "microsoft/mscclpp apps/nccl/src/allgather.hpp",
        ),
    ),
    Family(
        name="userbuffers",
        library="Megatron / TransformerEngine userbuffers (comm-GEMM overlap)",
        op_class=OP_CLASS_COMM,
        patterns=(r"\bk?userbuffers_\w+",),
        sources=("NVIDIA/TransformerEngine transformer_engine/common/comm_gemm_overlap/userbuffers/userbuffers.cu",),
    ),
)


@functools.lru_cache(maxsize=None)
def _compiled(family: Family) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in family.patterns)


def family_pattern(family: Family) -> str:
    """One regex for the whole family (its patterns joined), e.g. for a pattern table."""
    return "|".join(f"(?:{p})" for p in family.patterns)


def family_of(name: str, families: Sequence[Family] = FAMILIES) -> Family | None:
    """The first family in table order with a pattern that `re.search`es `name`, else None."""
    for family in families:
        if any(p.search(name) for p in _compiled(family)):
            return family
    return None


def families_of(names: Iterable[str], families: Sequence[Family] = FAMILIES) -> list[Family | None]:
    """`family_of` for each name, each distinct name tested once (pass a categorical's
    categories to test every distinct kernel name exactly once)."""
    seen: dict[str, Family | None] = {}
    out: list[Family | None] = []
    for name in names:
        name = str(name)
        if name not in seen:
            seen[name] = family_of(name, families)
        out.append(seen[name])
    return out


# --- the suspect heuristic -------------------------------------------------------------------
# Strong words: collective names; they flag a kernel whatever else its name says (a GEMM named
# after a reduce-scatter is most likely a fused GEMM + communication kernel worth a look).
_STRONG = (
    r"all[_-]?reduce|all[_-]?gather|reduce[_-]?scatter|all[_-]?to[_-]?all|alltoallv?"
    r"|(?<![a-z0-9])a2a(?![a-z])|multimem|nvshmem|rocshmem|symmetric_memory|sendrecv"
)
# Weak words: also common in compute kernels (CUB's DispatchReduceByKey, FlashAttention's
# split-KV combine kernels, CUTLASS's EpilogueWithBroadcast...), so they flag a kernel only
# when its name carries none of the compute markers below.
_WEAK = r"dispatch|combine|send|recv|broadcast|(?<![a-z0-9])p2p(?![a-z0-9])"
_COMPUTE_MARKERS = (
    r"cub::|cub_\d|rocprim|thrust::|gemm|gemv|cutlass|cublas|cudnn|xmma|nvjet|cask_"
    r"|flash|attn|attention|splitkv|split_kv|mla_|softmax|elementwise|epilogue|conv"
    r"|triton_|dispatch_layout|dispatchstub"
)

SUSPECT: re.Pattern[str] = re.compile(
    rf"(?:{_STRONG})|^(?!.*(?:{_COMPUTE_MARKERS}))(?=.*(?:{_WEAK}))",
    re.IGNORECASE | re.DOTALL,
)


def looks_like_comm(name: str) -> bool:
    """Whether a kernel's name looks like communication (advice for kernels counted as compute;
    says nothing about whether a family matches: callers ask it of compute kernels only)."""
    return SUSPECT.search(name) is not None


_RETURN_TYPE = re.compile(r"^(?:void|static|__global__|\s)+")
_ANONYMOUS = re.compile(r"\(anonymous namespace\)::|<unnamed>::|\{anonymous\}::")


def _core_name(name: str) -> str:
    """The qualified function name: no return type, template arguments or parameters."""
    text = _ANONYMOUS.sub("", name.strip())
    text = _RETURN_TYPE.sub("", text)
    cut = len(text)
    for mark in ("<", "("):
        i = text.find(mark)
        if i > 0:
            cut = min(cut, i)
    return text[:cut].strip()


def suggested_pattern(name: str) -> str:
    """A short `--comm-pattern` regex that counts kernel `name`: the escaped function name
    without template arguments, qualified by its enclosing namespace when the name alone is
    short and generic (``internode::dispatch``). Always matches `name` itself."""
    core = _core_name(name)
    if not core or " " in core or core.startswith("_Z"):
        # Mangled or unparsable: a prefix of the name itself.
        candidate = re.escape(name[:60])
        return candidate
    parts = [p for p in core.split("::") if p]
    tail = parts[-1]
    if len(tail) < 16 and len(parts) > 1:
        tail = "::".join(parts[-2:])
    candidate = re.escape(tail)
    if re.match(r"\w", tail[-1]):
        candidate += r"\b"
    if re.search(candidate, name) is None:  # never hand out a pattern that misses its own name
        candidate = re.escape(name[:60])
    return candidate
