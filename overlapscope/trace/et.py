"""Read a PyTorch Execution Trace (the JSON `ExecutionTraceObserver` writes) into two tables:
its op nodes, and the tensors each node reads or writes.

Two layouts exist. Schema 1.0.1 (PyTorch 2.0/2.1) keeps `rf_id`, `op_schema` on the node and
`inputs` / `input_types` / `input_shapes` as parallel lists; schema 1.0.2+ and the Chakra
variants ("1.1.1-chakra.0.0.4") nest them as `inputs: {values, shapes, types, strides}` and move
`rf_id` / `op_schema` into `attrs`. A tensor is the tuple
`[tensor_id, storage_id, offset, numel, itemsize, device]`; `offset` counts elements. PyTorch
keys `storage_id` by the storage's data pointer, so equal storage ids mean the same memory.

Which tensors a node writes: its outputs, except outputs the schema declares as aliases
(`-> Tensor(a)`: a view); inputs the schema marks mutable (`Tensor(a!)`); and the first input of
in-place ops (name ending in `_`, e.g. `aten::add_`, `aten::copy_`, `c10d::allreduce_`). Every
other tensor input is read. The byte span of a tensor is `[offset, offset + extent) * itemsize`,
with extent = 1 + sum((size - 1) * stride) when strides are recorded, else numel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import BadInput

NODE_COLUMNS = ("node_id", "rf_id", "name")
TENSOR_COLUMNS = ("node_id", "tensor_id", "storage_id", "byte_lo", "byte_hi", "device", "write")
_ROOTS = ("[pytorch|profiler|execution_trace|process]", "[pytorch|profiler|execution_trace|thread]")


@dataclass
class ExecutionTrace:
    source: str
    schema: str
    nodes: pd.DataFrame  # node_id, rf_id, name (one row per op node)
    tensors: pd.DataFrame  # node_id, tensor_id, storage_id, byte_lo, byte_hi, device, write
    problems: list[str] = field(default_factory=list)  # nodes skipped, and why


def read_execution_trace(path: str | os.PathLike[str]) -> ExecutionTrace:
    from .load import read_bytes

    try:
        data = read_bytes(Path(path))
    except OSError as e:
        raise BadInput(path, f"cannot read the Execution Trace: {e.strerror or e}") from None
    return parse_execution_trace(bytes(data), str(path))


def parse_execution_trace(data: bytes, source: str) -> ExecutionTrace:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise BadInput(source, f"Execution Trace is not valid JSON ({e}); is the file truncated?") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise BadInput(source, "not a PyTorch Execution Trace: no `nodes` list")
    schema = str(doc.get("schema", ""))
    node_rows: list[tuple[int, int, str]] = []
    tensor_rows: list[tuple[int, int, int, int, int, str, bool]] = []
    skipped: dict[str, list[Any]] = {}
    for raw in doc["nodes"]:
        try:
            node = _node(raw)
        except _Skip as e:
            ident = raw.get("id") if isinstance(raw, dict) else None
            skipped.setdefault(str(e), []).append(ident)
            continue
        if node is None:
            continue
        node_id, rf_id, name, tensors = node
        node_rows.append((node_id, rf_id, name))
        tensor_rows.extend((node_id, *t) for t in tensors)
    problems = [f"{len(ids)} Execution Trace node(s) skipped: {why} (ids {_some(ids)})" for why, ids in skipped.items()]
    nodes = pd.DataFrame(node_rows, columns=list(NODE_COLUMNS)).astype({"node_id": np.int64, "rf_id": np.int64})
    tensors = pd.DataFrame(tensor_rows, columns=list(TENSOR_COLUMNS)).astype(
        {"node_id": np.int64, "tensor_id": np.int64, "storage_id": np.int64, "byte_lo": np.int64,
         "byte_hi": np.int64, "write": bool})
    return ExecutionTrace(source=source, schema=schema, nodes=nodes, tensors=tensors, problems=problems)


class _Skip(Exception):
    """A node we cannot use; it is skipped and named in the notes."""


def _some(ids: list[Any], limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (", ..." if len(ids) > limit else "")


def _node(raw: Any) -> tuple[int, int, str, list[tuple]] | None:
    """(id, rf_id, name, tensor accesses) of one node; None for the root/thread markers."""
    if not isinstance(raw, dict):
        raise _Skip("not a JSON object")
    name = raw.get("name")
    node_id = raw.get("id")
    if not isinstance(name, str) or not _is_int(node_id):
        raise _Skip("no integer id or string name")
    if name in _ROOTS:
        return None
    attrs = _attrs(raw.get("attrs"))
    rf_id = attrs.get("rf_id", raw.get("rf_id"))
    if not _is_int(rf_id):
        raise _Skip("no integer rf_id")
    schema = attrs.get("op_schema", raw.get("op_schema", ""))
    inputs = _values(raw, "inputs", "input")
    outputs = _values(raw, "outputs", "output")
    mutable_args, aliased_returns = _schema_effects(schema if isinstance(schema, str) else "")
    in_place = name.endswith("_")
    tensors: list[tuple] = []
    for i, (value, typ, shape, stride) in enumerate(inputs):
        write = i in mutable_args or (in_place and i == 0)
        tensors.extend((*t, write) for t in _tensors(value, typ, shape, stride))
    for i, (value, typ, shape, stride) in enumerate(outputs):
        if i in aliased_returns:
            continue  # a view of an input: the op itself writes nothing through it
        tensors.extend((*t, True) for t in _tensors(value, typ, shape, stride))
    return int(node_id), int(rf_id), name, tensors


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _attrs(attrs: Any) -> dict[str, Any]:
    if not isinstance(attrs, list):
        return {}
    return {a["name"]: a.get("value") for a in attrs if isinstance(a, dict) and isinstance(a.get("name"), str)}


def _values(raw: dict, key: str, prefix: str) -> list[tuple[Any, str, Any, Any]]:
    """[(value, type, shape, stride)] of a node's inputs or outputs, in either layout."""
    block = raw.get(key)
    if isinstance(block, dict):  # 1.0.2+: {"values": [...], "shapes": [...], "types": [...], "strides": [...]}
        values, types = block.get("values"), block.get("types")
        shapes, strides = block.get("shapes"), block.get("strides")
    else:  # 1.0.1: parallel lists on the node
        values, types = block, raw.get(f"{prefix}_types")
        shapes, strides = raw.get(f"{prefix}_shapes"), raw.get(f"{prefix}_strides")
    if values is None:
        return []
    if not isinstance(values, list) or not isinstance(types, list) or len(types) != len(values):
        raise _Skip(f"{key} values and types do not line up")
    shapes = shapes if isinstance(shapes, list) and len(shapes) == len(values) else [None] * len(values)
    strides = strides if isinstance(strides, list) and len(strides) == len(values) else [None] * len(values)
    return [(v, t if isinstance(t, str) else "", sh, st) for v, t, sh, st in zip(values, types, shapes, strides)]


def _tensors(value: Any, typ: str, shape: Any, stride: Any) -> list[tuple[int, int, int, int, str]]:
    """(tensor_id, storage_id, byte_lo, byte_hi, device) of every tensor in a value (a tensor,
    or a list/tuple of them); tensors without storage or with no elements are left out."""
    if "Tensor" not in typ:
        return []
    if _is_tensor_tuple(value):
        t = _tensor(value, shape, stride)
        return [t] if t else []
    out = []
    if isinstance(value, list):
        shapes = shape if isinstance(shape, list) and len(shape) == len(value) else [None] * len(value)
        strides = stride if isinstance(stride, list) and len(stride) == len(value) else [None] * len(value)
        for v, sh, st in zip(value, shapes, strides):
            out.extend(_tensors(v, "Tensor", sh, st))
    return out


def _is_tensor_tuple(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 6 and all(_is_int(x) for x in v[:5]) and isinstance(v[5], str))


def _tensor(t: list, shape: Any, stride: Any) -> tuple[int, int, int, int, str] | None:
    tensor_id, storage_id, offset, numel, itemsize, device = t
    if storage_id == 0 or numel <= 0 or itemsize <= 0 or offset < 0:
        return None
    extent = numel
    if _int_list(shape) and _int_list(stride) and len(shape) == len(stride) and shape:
        if min(shape) <= 0:
            return None
        extent = 1 + sum((sz - 1) * abs(st) for sz, st in zip(shape, stride))
    lo = offset * itemsize
    return tensor_id, storage_id, lo, lo + extent * itemsize, device


def _int_list(v: Any) -> bool:
    return isinstance(v, list) and all(_is_int(x) for x in v)


def _schema_effects(schema: str) -> tuple[set[int], set[int]]:
    """(indices of arguments the schema marks mutable `(a!)`, indices of returns that alias an
    argument without writing it `(a)`). Unknown or empty schemas declare nothing."""
    open_at = schema.find("(")
    arrow = schema.rfind("->")
    if open_at < 0 or arrow < 0:
        return set(), set()
    close_at = _matching(schema, open_at)
    if close_at < 0 or close_at > arrow:
        return set(), set()
    args = [a for a in _split_top(schema[open_at + 1:close_at]) if a.strip() != "*"]
    mutable = {i for i, a in enumerate(args) if "!" in a.split(")")[0] and "(" in a}
    returns = schema[arrow + 2:].strip()
    if returns.startswith("(") and _matching(returns, 0) == len(returns) - 1:
        returns_list = _split_top(returns[1:-1])
    else:
        returns_list = [returns]
    aliased = {i for i, r in enumerate(returns_list) if "(" in r and "!" not in r.split(")")[0]}
    return mutable, aliased


def _matching(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] in "([":
            depth += 1
        elif text[i] in ")]":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return [s.strip() for s in out if s.strip()]
