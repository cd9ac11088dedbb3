"""The PyTorch Execution Trace reader, on the corpus's simple_add pair and on hand-made nodes of
the newer (1.0.2+ / Chakra) layout."""

from __future__ import annotations

import gzip

import orjson
import pytest

from corpus import corpus_path
from overlapscope.errors import BadInput
from overlapscope.overlap import launch_points
from overlapscope.races.accesses import collect_accesses
from overlapscope.trace.et import parse_execution_trace, read_execution_trace
from overlapscope.pipeline import load
from race_builders import execution_trace, tensor


@pytest.fixture(scope="module")
def simple_add():
    return read_execution_trace(corpus_path("kineto", "hta", "simple_add_execution_trace.json.gz"))


def test_simple_add_nodes(simple_add):
    assert simple_add.schema == "1.0.1"
    assert simple_add.problems == []
    assert len(simple_add.nodes) == 36  # 38 nodes less the process and thread roots
    add = simple_add.nodes[simple_add.nodes["name"] == "aten::add"]
    assert add["rf_id"].tolist() == [22, 36]


def test_simple_add_tensors(simple_add):
    t = simple_add.tensors
    add = t[t["node_id"] == 36].sort_values("storage_id")
    assert add[["storage_id", "byte_lo", "byte_hi", "write"]].values.tolist() == [
        [7, 0, 262144, False], [12, 0, 262144, False], [38, 0, 262144, True]]
    assert set(add["device"]) == {"cuda:0"}
    uniform = t[t["node_id"] == 8]  # aten::uniform_ writes its first input in place
    assert uniform["write"].all() and set(uniform["storage_id"]) == {7}
    to = t[t["node_id"] == 23]  # aten::to returns an alias (Tensor(a)): it writes nothing
    assert not to["write"].any()


def test_simple_add_links_to_its_kineto_trace():
    """PyTorch 2.0 traces carry no "Record function id": the cpu_op's External id equals rf_id."""
    trace = load([corpus_path("kineto", "hta", "simple_add_kineto.json.gz"),
                  corpus_path("kineto", "hta", "simple_add_execution_trace.json.gz")])
    assert list(trace.execution_traces) == [0]
    rt = trace.for_rank(0)
    acc = collect_accesses(rt, launch_points(rt), read_execution_trace(trace.execution_traces[0]))
    assert acc.notes == []
    got = {(int(r.op), int(r.space), bool(r.write)) for r in acc.table.itertuples()}
    assert got == {(0, 7, True), (1, 12, True), (2, 7, False), (2, 12, False), (2, 38, True),
                   (3, 7, False), (3, 12, False), (3, 59, True)}


def test_new_layout_with_strides_lists_and_schema():
    et = execution_trace([
        # a transposed view: shape [4, 8], strides [1, 4], offset 2 elements of 2 bytes
        {"id": 2, "rf_id": 10, "name": "aten::relu_", "inputs": [(tensor(1, 5, numel=32, itemsize=2, offset=2),
                                                                  "Tensor(c10::Half)")]},
        {"id": 3, "rf_id": 11, "name": "c10d::allreduce_",
         "inputs": [([tensor(2, 6), tensor(3, 7)], "GenericList[Tensor(float),Tensor(float)]"), (0, "Int")]},
        {"id": 4, "rf_id": 12, "name": "aten::add", "schema":
            "aten::add.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)",
         "inputs": [(tensor(4, 8), "Tensor(float)"), (tensor(5, 9), "Tensor(float)"), (1, "Int"),
                    (tensor(6, 10), "Tensor(float)")]},
        {"id": 5, "rf_id": 13, "name": "aten::view", "schema": "aten::view(Tensor(a) self, SymInt[] size) -> Tensor(a)",
         "inputs": [(tensor(4, 8), "Tensor(float)"), ([4, 256], "GenericList[Int,Int]")],
         "outputs": [(tensor(7, 8), "Tensor(float)")]},
    ])
    et["nodes"][1]["inputs"]["shapes"][0] = [4, 8]
    et["nodes"][1]["inputs"]["strides"][0] = [1, 4]
    parsed = parse_execution_trace(orjson.dumps(et), "et.json")
    assert parsed.schema == "1.1.1-chakra.0.0.4" and parsed.problems == []
    rows = {(int(r.node_id), int(r.storage_id)): (int(r.byte_lo), int(r.byte_hi), bool(r.write))
            for r in parsed.tensors.itertuples()}
    assert rows[(2, 5)] == (4, 4 + (1 + 3 * 1 + 7 * 4) * 2, True)  # the view's span, written in place
    assert rows[(3, 6)][2] and rows[(3, 7)][2]  # every tensor of an in-place collective's list
    assert rows[(4, 8)][2] is False and rows[(4, 10)][2] is True  # `out=` is written, self is read
    assert (5, 8) in rows and not rows[(5, 8)][2]  # a view reads nothing and writes nothing new


def test_gzip_and_plain_read_alike(tmp_path, simple_add):
    data = gzip.decompress(corpus_path("kineto", "hta", "simple_add_execution_trace.json.gz").read_bytes())
    plain = tmp_path / "et.json"
    plain.write_bytes(data)
    assert read_execution_trace(plain).tensors.equals(simple_add.tensors)


def test_nodes_without_rf_id_are_skipped_with_a_reason():
    doc = {"schema": "1.0.1", "nodes": [{"id": 3, "name": "aten::add", "inputs": [], "input_types": []},
                                        "garbage", {"name": "x"}]}
    parsed = parse_execution_trace(orjson.dumps(doc), "et.json")
    assert len(parsed.nodes) == 0
    assert any("no integer rf_id" in p and "3" in p for p in parsed.problems)
    assert any("not a JSON object" in p for p in parsed.problems)


@pytest.mark.parametrize("data, problem", [(b"{not json", "not valid JSON"), (b'{"schema": "1.0.1"}', "no `nodes`"),
                                           (b"[1, 2]", "no `nodes`")])
def test_unreadable_files_are_bad_input(data, problem):
    with pytest.raises(BadInput, match=problem):
        parse_execution_trace(data, "et.json")


def test_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="cannot read"):
        read_execution_trace(tmp_path / "nope.json")
