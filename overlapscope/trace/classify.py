"""Sort GPU ops into comm / compute / memory (DESIGN.md, "GPU op classes").

Memcpy and memset are *memory* whatever their name. A kernel is *comm* when its name matches a
built-in pattern or a user pattern (`re.search`), otherwise *compute*. Patterns are matched once
per distinct kernel name, never per event.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .model import OP_CLASSES, Trace
from .names import compile_all, distinct_matching

# Communication kernels we recognise out of the box, by the library that launches them.
BUILTIN_COMM_PATTERNS: dict[str, str] = {
    # NCCL and RCCL: ncclKernel_*, ncclDevKernel_*, and older nccl* names
    "nccl": r"^(?:void\s+)?nccl",
    # vLLM / SGLang custom all-reduce (cross_device_reduce_{1,2}stage), quick all-reduce
    "vllm-sglang-custom-ar": r"cross_device_reduce_\dstage|quickreduce|QuickReduce",
    # TensorRT-LLM custom all-reduce kernels (one/two-shot, fused, Lamport)
    "trtllm-allreduce": r"(?:oneShot|twoShot)AllReduceKernel|allreduce_fusion_kernel|ar_fusion::|lamport|customAllReduce",
    # DeepEP dispatch/combine (intranode, internode, low-latency)
    "deepep": r"deep_ep::",
    # NVSHMEM device-initiated communication
    "nvshmem": r"nvshmem",
    # PyTorch symmetric memory collectives
    "torch-symm-mem": r"symmetric_memory::",
}


def compile_patterns(user_patterns: Iterable[str] = ()) -> list[re.Pattern[str]]:
    """The built-in patterns and the user's; a bad user pattern is BadInput ("comm_patterns")."""
    return [re.compile(p) for p in BUILTIN_COMM_PATTERNS.values()] + compile_all(user_patterns, "comm_patterns")


def classified(trace: Trace, user_patterns: Iterable[str] = ()) -> Trace:
    """The same trace with every GPU op's class filled in (a new Trace; the input is unchanged)."""
    ops = trace.gpu_ops.assign(op_class=classify_ops(trace.gpu_ops, user_patterns))
    return dataclasses.replace(trace, gpu_ops=ops)


def classify_ops(gpu_ops: pd.DataFrame, user_patterns: Iterable[str] = ()) -> pd.Series:
    """The op_class column for a gpu_ops frame."""
    patterns = compile_patterns(user_patterns)
    names = gpu_ops["name"].cat
    comm_by_code = distinct_matching(names.categories, patterns)
    codes = names.codes.to_numpy()
    is_comm = np.zeros(len(gpu_ops), dtype=bool)
    named = codes >= 0
    is_comm[named] = comm_by_code[codes[named]]
    is_kernel = (gpu_ops["kind"] == "kernel").to_numpy()
    # codes into OP_CLASSES: 0 comm, 1 compute, 2 memory
    class_codes = np.where(is_kernel, np.where(is_comm, 0, 1), 2)
    return pd.Series(pd.Categorical.from_codes(class_codes, dtype=pd.CategoricalDtype(OP_CLASSES)),
                     index=gpu_ops.index)
