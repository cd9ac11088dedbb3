"""Malformed rows are refused or dropped and counted, never read as zero (issue 11, items 7-9),
and a Kineto file with kernels on several GPUs is one rank per GPU (item 8). Every answer here
was worked out by hand."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders import KinetoBuilder, _Num
from nsys_builder import NsysBuilder
from overlapscope.cli import app
from overlapscope.errors import BadInput
from overlapscope.overlap import analyze
from overlapscope.pipeline import load

COMM = "ncclDevKernel_AllReduce_Sum_f32_RING_LL"
runner = CliRunner()


def no_traceback(path: Path, *expected: str) -> None:
    """`analyze` refuses the file with one line naming it (exit 2), never a traceback."""
    with pytest.raises(BadInput) as e:
        load([path])
    message = str(e.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    for part in expected:
        assert re.search(part, message), (part, message)
    result = runner.invoke(app, ["analyze", str(path), "--json", "--jobs", "1", "--no-cache"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


# --- Kineto: GPU ops without a usable time ----------------------------------------------------------

def kineto_comm_and_gemm() -> KinetoBuilder:
    """comm [0,4000) s20, gemm [1000,3000) s7: C = 4000, K = 2000, C ∩ K = 2000 → 50 %."""
    b = KinetoBuilder(rank=0)
    b.kernel(COMM, 20, 0, 4000, launch_at=0)
    b.kernel("gemm", 7, 1000, 3000, launch_at=10)
    return b


def test_kineto_gpu_ops_without_ts_or_dur_are_dropped_and_counted(tmp_path):
    b = kineto_comm_and_gemm()
    b.kernel("gemm_no_ts", 7, 500, 4000, launch_at=20)  # read today as [0, 3500): K grows to 3500
    del b.events[-2]["ts"]  # the kernel (the host call follows it)
    b.kernel("gemm_no_dur", 7, 3000, 3900, launch_at=30)
    del b.events[-2]["dur"]
    b.memcpy(7, 100, 200, launch_at=40)
    b.events[-2]["dur"] = None  # "dur": null
    trace = load([b.write(tmp_path / "t.json")])
    assert sorted(trace.gpu_ops["name"].astype(str)) == sorted([COMM, "gemm"])
    (row,) = analyze(trace).ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns, row.overlap_pct) == (4000, 2000, 2000, 50.0)
    assert trace.ranks[0].dropped_rows == {"Kineto GPU ops without ts or dur": 3}


def test_kineto_negative_dur_is_dropped_and_counted(tmp_path):
    b = kineto_comm_and_gemm()
    b.kernel("gemm_backwards", 7, 3500, 500, launch_at=20)  # dur -3000
    trace = load([b.write(tmp_path / "t.json")])
    assert "gemm_backwards" not in set(trace.gpu_ops["name"].astype(str))
    assert analyze(trace).ranks[0].overlap_pct == 50.0
    assert trace.ranks[0].dropped_rows == {"Kineto GPU ops with a negative dur": 1}


def test_a_clean_kineto_file_drops_nothing(tmp_path):
    trace = load([kineto_comm_and_gemm().write(tmp_path / "t.json")])
    assert trace.ranks[0].dropped_rows == {}


def test_kineto_end_past_int64_ns_is_refused(tmp_path):
    b = kineto_comm_and_gemm()
    b.kernel("late", 7, 0, 1000, launch_at=20)
    b.events[-2]["ts"] = _Num("9223372036854775.000")  # fits int64 ns; ts + dur (1 us) does not
    no_traceback(b.write(tmp_path / "t.json"), "int64", "ts \\+ dur", "1 event")


# --- Kineto: integers out of int64, nesting too deep (item 9) -----------------------------------------

@pytest.mark.parametrize("key, value", [("correlation", _Num(str(2**63))), ("correlation", _Num(str(2**64 + 5))),
                                        ("stream", "0xffffffffffffffff"), ("Seq", _Num(str(2**63))),
                                        ("device", _Num(str(-(2**63) - 1)))])
def test_kineto_integers_outside_int64_are_refused(tmp_path, key, value):
    b = kineto_comm_and_gemm()
    b.events[0]["args"].update({"Collective name": "allreduce", key: value})
    no_traceback(b.write(tmp_path / "t.json"), "int64|out of range|<=|>=")


@pytest.mark.parametrize("where", ["event", "skeleton_before", "skeleton_after"])
def test_json_nested_100000_deep_is_refused(tmp_path, where):
    deep = b"[" * 100_000 + b"]" * 100_000
    event = b'{"ph":"X","cat":"kernel","name":"k","ts":1,"dur":1,"args":{"device":0}}'
    if where == "event":
        raw = b'{"traceEvents": [{"ph":"X","cat":"kernel","name":"k","ts":1,"dur":1,"args":{"x":' + deep + b"}}]}"
    elif where == "skeleton_before":
        raw = b'{"deep":' + deep + b', "traceEvents": [' + event + b"]}"
    else:
        raw = b'{"traceEvents": [' + event + b'], "distributedInfo": {"rank": 0, "x": ' + deep + b"}}"
    path = tmp_path / "deep.json"
    path.write_bytes(raw)
    no_traceback(path, "nest")


# --- Kineto: one rank per GPU (item 8) -------------------------------------------------------------------

def two_gpu_process(rank: int | None = None, world_size: int | None = None) -> KinetoBuilder:
    """One process, thread 1000, comm on GPU 0 [0,1000) s20 and compute on GPU 1 [0,1000) s7 at the
    same time (pooled, that read 100 %); gemm2 on GPU 1 [2000,2500); a peer copy on GPU 2 (no kernels
    there) [3000,3100); a range holding the first two launches; a stream sync on each GPU."""
    b = KinetoBuilder(rank=rank, world_size=world_size, device=0)
    b.kernel(COMM, 20, 0, 1000, launch_at=0, device=0)
    b.kernel("gemm", 7, 0, 1000, launch_at=10, device=1)
    b.kernel("gemm2", 7, 2000, 2500, launch_at=1500, device=1)
    b.memcpy(9, 3000, 3100, launch_at=2900, device=2)
    b.host_call("cudaStreamSynchronize", 1200, 1300, corr=900)  # launches nothing
    b.annotation("mb0", 0, 100)
    b.sync("Stream Sync", 1200, 1300, stream=20, device=0)
    b.sync("Stream Sync", 2600, 2700, stream=7, device=1)
    return b


def test_kineto_kernels_on_two_gpus_are_two_ranks(tmp_path):
    trace = load([two_gpu_process().write(tmp_path / "t.json")])  # a lone file: rank 0
    assert [(r.rank, r.device) for r in trace.ranks] == [(0, 0), (1, 1)]
    rows = analyze(trace, ["mb0"]).ranks
    # GPU 0: C = 1000, K = 0 → 0 %; GPU 1: no comm → not applicable
    assert (rows[0].comm_ns, rows[0].compute_ns, rows[0].overlap_ns, rows[0].overlap_pct) == (1000, 0, 0, 0.0)
    assert (rows[1].comm_ns, rows[1].compute_ns, rows[1].overlap_pct) == (0, 1500, None)
    ops = trace.gpu_ops
    assert dict(zip(ops["name"].astype(str), ops["rank"])) == {
        COMM: 0, "gemm": 1, "gemm2": 1, "Memcpy DtoD (Device -> Device)": 1}  # the copy: the busiest rank (2 ops)
    calls = trace.host_calls
    launches = calls[calls["name"].astype(str) != "cudaStreamSynchronize"]
    assert sorted(zip(launches["start"], launches["rank"])) == [(0, 0), (10, 1), (1500, 1), (2900, 1)]
    # a call that launched nothing, and every host range, belong to each rank of the process
    assert sorted(calls.loc[calls["name"].astype(str) == "cudaStreamSynchronize", "rank"]) == [0, 1]
    assert sorted(trace.ranges["rank"]) == [0, 1]
    assert sorted(zip(trace.syncs["start"], trace.syncs["rank"])) == [(1200, 0), (2600, 1)]
    regions = {r.rank: r for r in analyze(trace, ["mb0"]).regions}
    assert (regions[0].comm_ns, regions[0].ranges) == (1000, 1)
    assert (regions[1].comm_ns, regions[1].ranges) == (0, 1)


def test_kineto_two_gpus_numbered_from_the_file_name_rank(tmp_path):
    trace = load([two_gpu_process().write(tmp_path / "worker_rank-4.json")])
    assert [(r.rank, r.device) for r in trace.ranks] == [(4, 0), (5, 1)]


def test_kineto_distributed_rank_with_kernels_on_two_gpus_is_refused(tmp_path):
    path = two_gpu_process(rank=3, world_size=8).write(tmp_path / "t.json")
    no_traceback(path, "distributedInfo.rank 3", r"GPUs 0 \(1 kernel\), 1 \(2 kernels\)")


# --- nsys: kernel rows that cannot be read (item 7) -------------------------------------------------------

def nsys_comm_and_gemm() -> NsysBuilder:
    """comm [0,4000) s20, gemm [1000,3000) s7: C = 4000, K = 2000, C ∩ K = 2000 → 50 %."""
    b = NsysBuilder()
    b.kernel(COMM, 20, 0, 4000, launch_at=0)
    b.kernel("gemm", 7, 1000, 3000, launch_at=10)
    return b


def edited(b: NsysBuilder, path: Path, *updates: str) -> Path:
    b.write(path, loose=True)
    with sqlite3.connect(path) as con:
        for sql in updates:
            con.execute(sql)
    con.close()
    return path


def test_nsys_kernel_rows_with_null_start_or_end_are_dropped_and_counted(tmp_path):
    b = nsys_comm_and_gemm()
    b.kernel("gemm_no_end", 7, 0, 4000, launch_at=20)  # rowid 3: read as ending at -1 ns today
    b.kernel("gemm_no_start", 7, 0, 4000, launch_at=30)  # rowid 4
    path = edited(b, tmp_path / "t.sqlite", 'UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET "end" = NULL WHERE rowid = 3',
                  "UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET start = NULL WHERE rowid = 4")
    trace = load([path])
    assert sorted(trace.gpu_ops["name"].astype(str)) == sorted([COMM, "gemm"])
    (row,) = analyze(trace).ranks
    assert (row.comm_ns, row.compute_ns, row.overlap_ns, row.overlap_pct) == (4000, 2000, 2000, 50.0)
    assert trace.ranks[0].dropped_rows == {"kernel rows with NULL start or end": 2}


def test_nsys_kernel_rows_ending_before_they_start_are_dropped_and_counted(tmp_path):
    b = nsys_comm_and_gemm()
    b.kernel("gemm_backwards", 7, 3500, 500, launch_at=20)
    trace = load([b.write(tmp_path / "t.sqlite")])
    assert "gemm_backwards" not in set(trace.gpu_ops["name"].astype(str))
    assert analyze(trace).ranks[0].overlap_pct == 50.0
    assert trace.ranks[0].dropped_rows == {"kernel rows that end before they start": 1}


def test_a_clean_nsys_export_drops_nothing(tmp_path):
    trace = load([nsys_comm_and_gemm().write(tmp_path / "t.sqlite")])
    assert trace.ranks[0].dropped_rows == {}


def test_nsys_kernel_name_missing_from_string_ids_is_refused(tmp_path):
    b = nsys_comm_and_gemm()
    path = edited(b, tmp_path / "t.sqlite",
                  "UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET demangledName = 999, shortName = 999 WHERE rowid = 1")
    no_traceback(path, "CUPTI_ACTIVITY_KIND_KERNEL", "demangledName", "1 row", "StringIds")


@pytest.mark.parametrize("column", ["start", "globalPid", "deviceId"])
def test_nsys_text_in_an_integer_column_is_refused(tmp_path, column):
    path = edited(nsys_comm_and_gemm(), tmp_path / "t.sqlite",
                  f"UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET {column} = '1e3' WHERE rowid = 2")
    no_traceback(path, "CUPTI_ACTIVITY_KIND_KERNEL", column, "1 row", "not (an )?integer")


def test_nsys_null_device_id_is_refused_not_a_phantom_rank(tmp_path):
    b = nsys_comm_and_gemm()
    b.kernel(COMM, 20, 0, 4000, launch_at=20, device=1)
    path = edited(b, tmp_path / "t.sqlite", "UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET deviceId = NULL WHERE rowid = 2")
    no_traceback(path, "CUPTI_ACTIVITY_KIND_KERNEL", "deviceId", "NULL", "1 row")


def test_nsys_null_string_value_is_refused(tmp_path):
    b = nsys_comm_and_gemm()
    path = edited(b, tmp_path / "t.sqlite", f"UPDATE StringIds SET value = NULL WHERE id = {b.string_id('gemm')}")
    no_traceback(path, "StringIds", "NULL", "1 row")


def test_nsys_null_string_value_of_a_host_call_is_refused(tmp_path):
    b = nsys_comm_and_gemm()
    path = edited(b, tmp_path / "t.sqlite",
                  f"UPDATE StringIds SET value = NULL WHERE id = {b.string_id('cudaLaunchKernel_v7000')}")
    no_traceback(path, "StringIds", "NULL")


@pytest.mark.parametrize("table, column", [("CUPTI_ACTIVITY_KIND_RUNTIME", "globalTid"), ("NVTX_EVENTS", "globalTid"),
                                           ("CUPTI_ACTIVITY_KIND_MEMCPY", "globalPid")])
def test_nsys_text_in_a_process_column_is_refused_not_cast(tmp_path, table, column):
    """In SQL, '1e3' >> 24 is 0: a process that does not exist."""
    b = nsys_comm_and_gemm()
    b.nvtx("mb0", 0, 100)
    b.memcpy(7, 5000, 6000, launch_at=40)
    path = edited(b, tmp_path / "t.sqlite", f"UPDATE {table} SET {column} = '1e3' WHERE rowid = 1")
    no_traceback(path, table, column, "1 row", "not (an )?integer")


def test_nsys_range_name_missing_from_string_ids_is_refused(tmp_path):
    b = nsys_comm_and_gemm()
    b.nvtx("mb0", 0, 100, registered=True)
    path = edited(b, tmp_path / "t.sqlite", "UPDATE NVTX_EVENTS SET textId = 999")
    no_traceback(path, "NVTX_EVENTS", "textId", "1 row", "StringIds")
