"""Bad input gets one line naming the file and the problem, exit code 2, never a traceback."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders import KinetoBuilder
from overlapscope.cli import app

runner = CliRunner()


def assert_one_line_exit_2(args: list[str], must_name: Path | str, problem: str) -> None:
    result = runner.invoke(app, ["analyze", *map(str, args)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(must_name) in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in result.output


def good_trace_bytes() -> bytes:
    b = KinetoBuilder(rank=0)
    for i in range(200):
        b.kernel("ncclDevKernel_AllReduce", 20, i * 100, i * 100 + 50, launch_at=i * 100)
    return b.dumps()


def test_truncated_gzip(tmp_path):
    data = gzip.compress(good_trace_bytes())
    path = tmp_path / "rank-0.json.gz"
    path.write_bytes(data[: len(data) // 2])
    assert_one_line_exit_2([path], path, "truncated")


def test_corrupt_gzip(tmp_path):
    data = bytearray(gzip.compress(good_trace_bytes()))
    data[40:60] = b"\xff" * 20
    path = tmp_path / "rank-0.json.gz"
    path.write_bytes(bytes(data))
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 2 and str(path) in result.stderr and "Traceback" not in result.output


def test_truncated_json(tmp_path):
    path = tmp_path / "rank-0.json"
    path.write_bytes(good_trace_bytes()[:-500])
    assert_one_line_exit_2([path], path, "not valid JSON")


def test_json_that_is_not_a_trace(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model": "llama", "layers": 32}')
    assert_one_line_exit_2([path], path, "not a trace")


def test_trace_events_of_the_wrong_type(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"traceEvents": [{"ph": "X", "cat": "kernel", "ts": "soon", "dur": 1, "args": {}}]}')
    assert_one_line_exit_2([path], path, "not a number")


def test_empty_file(tmp_path):
    path = tmp_path / "rank-0.json"
    path.write_bytes(b"")
    assert_one_line_exit_2([path], path, "empty file")


def test_binary_file_that_is_no_trace(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x00\x01\x02garbage")
    assert_one_line_exit_2([path], path, "not a trace")


def test_sqlite_without_kernel_table(tmp_path):
    path = tmp_path / "report.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT)")
    assert_one_line_exit_2([path], path, "kernel")


def test_two_files_claiming_the_same_rank(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "a.json").write_bytes(good_trace_bytes())
    (run / "b.json").write_bytes(good_trace_bytes())  # both say distributedInfo.rank = 0
    result = runner.invoke(app, ["analyze", str(run)])
    assert result.exit_code == 2
    assert "claims rank 0" in result.stderr and "a.json" in result.stderr and "b.json" in result.stderr


def test_several_files_without_any_rank(tmp_path):
    for name in ("a.json", "b.json"):
        b = KinetoBuilder(rank=None)
        b.kernel("gemm", 7, 0, 10, launch_at=0)
        b.write(tmp_path / name)
    assert_one_line_exit_2([tmp_path / "a.json", tmp_path / "b.json"], "a.json", "no rank")


def test_nonexistent_path(tmp_path):
    path = tmp_path / "nope.json"
    assert_one_line_exit_2([path], path, "no such file")


def test_directory_without_traces(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_exit_2([tmp_path], tmp_path, "no trace found")


@pytest.mark.parametrize("flag", ["--region", "--comm-pattern"])
def test_invalid_regex(tmp_path, flag):
    path = tmp_path / "t.json"
    path.write_bytes(good_trace_bytes())
    assert_one_line_exit_2([path, flag, "(unclosed"], flag, "invalid regular expression")
