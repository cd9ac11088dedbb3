"""Fail closed (#11): inputs that used to crash, overwrite data or print markup instead of names.

Each test here failed on the main before #11 (items 9-12 of the issue; the gate's items are in
test_gate.py, the race verdicts in test_races_verdicts.py, malformed rows in test_reader_rows.py,
configuration, history and cache in test_config.py, test_history.py and test_cache.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders import KinetoBuilder
from corpus import REPO
from overlapscope.cli import app
from run_builders import T0, tbo_run

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_exit_2(result, *needles):
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert "Traceback" not in result.output


def test_run_json_that_is_a_list_is_one_line(tmp_path):
    run = tbo_run(tmp_path / "run", overlapped=True)
    (run / "run.json").write_text(json.dumps(["overlapscope_run", 1]))
    one_line_exit_2(invoke("analyze", run, "--jobs", "1"), "run.json", "JSON list, not an object")


def test_a_file_name_over_255_bytes_is_one_line(tmp_path):
    one_line_exit_2(invoke("analyze", tmp_path / ("x" * 300)), "File name too long")


@pytest.mark.parametrize("address", ["tcp://[::1", "nonsense://x:y"])
def test_a_malformed_scheduler_address_is_one_line(tmp_path, address):
    pytest.importorskip("distributed")
    run = tbo_run(tmp_path / "run", overlapped=True)
    one_line_exit_2(invoke("analyze", run, "--executor", "dask", "--scheduler", address), "--scheduler")


def test_report_refuses_to_overwrite_an_input_trace(tmp_path):
    run = tbo_run(tmp_path / "run", overlapped=True)
    trace = run / "rank-0.trace.json.gz"
    before = trace.read_bytes()
    one_line_exit_2(invoke("report", trace, "-o", trace), "refusing to overwrite")
    one_line_exit_2(invoke("report", run, "-o", trace), "refusing to overwrite")
    one_line_exit_2(invoke("export", run, "-o", trace), "refusing to overwrite")
    assert trace.read_bytes() == before
    assert invoke("report", run, "-o", run / "report.html").exit_code == 0  # a new file beside them is fine


def test_analysing_from_a_directory_holding_a_folder_named_overlapscope(tmp_path):
    """The clone's parent after `git clone`: the worker processes must import the package, not the folder."""
    script = Path(sys.executable).parent / "overlapscope"
    if not script.exists():
        pytest.skip("the overlapscope console script is not installed beside this Python")
    (tmp_path / "overlapscope").mkdir()
    tbo_run(tmp_path / "run", overlapped=True)
    done = subprocess.run([str(script), "analyze", "run", "--jobs", "2", "--no-cache", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [r["rank"] for r in json.loads(done.stdout)["ranks"]] == [0, 1]


def _named_run(out: Path, kernel: str, region: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    b = KinetoBuilder(rank=0, world_size=1, device=0)
    b.annotation(region, T0, T0 + 3_000)
    b.kernel(kernel, 7, T0 + 5_000, T0 + 25_000, launch_at=T0 + 200)
    b.kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL", 20, T0 + 10_000, T0 + 30_000, launch_at=T0 + 300,
             api="cuda_driver")
    b.write(out / "rank-0.trace.json.gz")
    return out


def test_console_prints_regions_and_kernels_as_written(tmp_path):
    region = "^(nothing|x)[a-z]+"
    run = _named_run(tmp_path / "run", "k[/]", "xyz")
    result = invoke("analyze", run, "--region", region, "--exclude-kernel", "^$")
    assert result.exit_code == 0, result.output
    assert region in result.stdout  # rich markup would print "^(nothing|x)+"
    shown = invoke("analyze", _named_run(tmp_path / "r2", "all_reduce_k[/]", "[bold]r[/]"), "--region", "r")
    assert shown.exit_code == 0 and "MarkupError" not in shown.output


def test_gate_help_keeps_its_brackets():
    result = invoke("gate", "--help")
    assert "[tool.overlapscope.gate]" in " ".join(result.stdout.split())


def test_terminal_control_characters_in_file_names_are_not_printed(tmp_path):
    run = tbo_run(tmp_path / "run", overlapped=True, ranks=1)
    hostile = run / "rank-0\x1b[31mred\x07.trace.json.gz"
    shutil.move(run / "rank-0.trace.json.gz", hostile)
    result = invoke("analyze", run)
    assert result.exit_code == 0, result.output
    assert "\x1b[31m" not in result.stdout and "\x07" not in result.stdout


def test_bidi_overrides_are_removed_from_the_report(tmp_path):
    run = _named_run(tmp_path / "run", "evil\u202ekernel", "region\u2066x\u2069")
    out = tmp_path / "r.html"
    assert invoke("report", run, "-o", out).exit_code == 0
    page = out.read_text(encoding="utf-8")
    assert "\u202e" not in page.split("<script", 1)[0] and "\u2066" not in page.split("<script", 1)[0]


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path, monkeypatch):
    """Tests run where no pyproject.toml of the project is read as the user's configuration."""
    monkeypatch.chdir(tmp_path)
    os.environ.pop("OVERLAPSCOPE_MEMORY_BUDGET", None)


