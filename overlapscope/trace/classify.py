"""Sort GPU ops into comm / fused / compute / memory (DESIGN.md, "GPU op classes").

Memcpy and memset are *memory* whatever their name (with `copy_comm`, peer and cross-device
copies are *comm*: they move data between GPUs on the copy engines). A kernel is *comm* when its
name matches a communication family of the taxonomy (trace/taxonomy.py) or a user pattern
(`re.search`), *fused* when its family does communication inside a compute kernel (an all-reduce
fused with a norm), otherwise *compute*. Each GPU op also gets its `family` (the taxonomy's name,
"user pattern", or ""). Patterns are matched once per distinct kernel name, never per event.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .model import OP_CLASSES, Trace
from .names import compile_all, names_matching
from .taxonomy import FAMILIES, families_of, family_pattern

USER_FAMILY = "user pattern"
COPY_FAMILY = "peer copy"
# NCCL/RCCL kernels: the nsys reader pairs them with NCCL's NVTX ranges
NCCL_KERNEL = re.compile("|".join(family_pattern(f) for f in FAMILIES if f.name in ("nccl", "rccl", "nccl-alltoall")))
# memcpy names for copies between two GPUs (Kineto "Memcpy PtoP (Device -> Device)", nsys "PtoP")
_PEER_COPY = re.compile(r"PtoP|Peer", re.IGNORECASE)


def compile_patterns(user_patterns: Iterable[str] = ()) -> list[re.Pattern[str]]:
    """The user's patterns, compiled; a bad one is BadInput ("comm_patterns")."""
    return compile_all(user_patterns, "comm_patterns")


def classified(trace: Trace, user_patterns: Iterable[str] = (), copy_comm: bool = False) -> Trace:
    """The same trace with every GPU op's class and family filled in (a new Trace; the input is unchanged)."""
    op_class, family = classify_ops(trace.gpu_ops, user_patterns, copy_comm)
    return dataclasses.replace(trace, gpu_ops=trace.gpu_ops.assign(op_class=op_class, family=family))


def without_kernels(trace: Trace, patterns: Iterable[str]) -> Trace:
    """The trace without the kernels whose name matches one of `patterns` (pacing, sleep and
    warm-up kernels): they count as neither communication nor compute, and no view shows them."""
    compiled = compile_all(patterns, "exclude_kernels")
    if not compiled or not len(trace.gpu_ops):
        return trace
    ops = trace.gpu_ops
    drop = (ops["kind"].to_numpy() == "kernel") & names_matching(ops["name"], compiled)
    return dataclasses.replace(trace, gpu_ops=ops[~drop].reset_index(drop=True)) if drop.any() else trace


def classify_ops(gpu_ops: pd.DataFrame, user_patterns: Iterable[str] = (),
                 copy_comm: bool = False) -> tuple[pd.Series, pd.Series]:
    """The op_class and family columns for a gpu_ops frame."""
    users = compile_patterns(user_patterns)
    names = [str(c) for c in gpu_ops["name"].cat.categories]
    found = families_of(names)
    # per distinct name (plus a last entry for rows without a name)
    family = [f.name if f else USER_FAMILY if any(p.search(n) for p in users) else "" for f, n in zip(found, names)]
    family = np.array(family + [""], dtype=object)
    fused = np.array([f is not None and f.op_class == "fused" for f in found] + [False])
    peer = np.array([bool(_PEER_COPY.search(n)) for n in names] + [False])
    codes = gpu_ops["name"].cat.codes.to_numpy()
    codes = np.where(codes >= 0, codes, len(names))
    kind = gpu_ops["kind"].to_numpy()
    kernel = kind == "kernel"
    peer_copy = (kind == "memcpy") & peer[codes]  # a family even when not counted, so the output can say so
    comm = kernel & (family[codes] != "") & ~fused[codes]
    # codes into OP_CLASSES: comm, compute, memory, fused
    class_codes = np.select([kernel & fused[codes], comm | (peer_copy & copy_comm), kernel], [3, 0, 1], default=2)
    op_family = np.where(kernel, family[codes], np.where(peer_copy, COPY_FAMILY, ""))
    return (pd.Series(pd.Categorical.from_codes(class_codes, dtype=pd.CategoricalDtype(OP_CLASSES)),
                      index=gpu_ops.index),
            pd.Series(op_family, index=gpu_ops.index, dtype="category"))
