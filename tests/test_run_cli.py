"""`overlapscope run` on the CPU: traces, Execution Traces and run.json that the analyzer loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overlapscope.cli import app

pytest.importorskip("torch")

runner = CliRunner()
MANIFEST_KEYS = {"overlapscope_run", "model", "variant", "config", "world_size", "device", "gpu_name", "versions",
                 "profiler", "command", "step_times_ms", "numerics", "overlap_region", "created"}


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run") / "v4"
    result = runner.invoke(app, ["run", "deepseek_v4_tbo", "--variant", "comm-stream", "--device", "cpu",
                                 "--profiler", "torch", "--world-size", "2", "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_run_writes_a_trace_and_an_execution_trace_per_rank_and_a_manifest(cpu_run: tuple[Path, str]) -> None:
    out, _ = cpu_run
    names = {p.name for p in out.iterdir()}
    assert names == {"rank-0.trace.json.gz", "rank-1.trace.json.gz", "rank-0.et.json.gz", "rank-1.et.json.gz",
                     "run.json"}


def test_manifest_records_the_run(cpu_run: tuple[Path, str]) -> None:
    out, _ = cpu_run
    manifest = json.loads((out / "run.json").read_text())
    assert MANIFEST_KEYS <= manifest.keys()
    assert manifest["overlapscope_run"] == 1
    assert (manifest["model"], manifest["variant"], manifest["world_size"]) == ("deepseek_v4_tbo", "comm-stream", 2)
    assert (manifest["device"], manifest["profiler"], manifest["gpu_name"]) == ("cpu", "torch", None)
    assert set(manifest["versions"]) == {"driver", "cuda", "torch", "nccl", "python"}
    assert manifest["overlap_region"] == r"^tbo/block$"
    assert manifest["command"][:3] == ["overlapscope", "run", "deepseek_v4_tbo"]
    assert [len(r) for r in manifest["step_times_ms"]] == [2, 2]
    assert all(t > 0 for rank in manifest["step_times_ms"] for t in rank)
    checks = [c for rank in manifest["numerics"] for c in rank]
    assert len(checks) == 4 and all(c["ok"] and c["max_abs_err"] == 0.0 for c in checks)


def test_the_run_is_analysed_and_loads_with_its_regions_steps_and_execution_traces(cpu_run: tuple[Path, str]) -> None:
    from overlapscope.trace.load import load

    out, output = cpu_run
    assert "^tbo/block$" in output and "ProfilerStep#1" in output
    trace = load([out])
    assert [r.rank for r in trace.ranks] == [0, 1]
    assert sorted(trace.execution_traces) == [0, 1]
    assert trace.manifest is not None and trace.manifest["variant"] == "comm-stream"
    names = set(trace.ranges["name"].astype(str))
    assert {"tbo/block", "tbo/l0/mb1/dp_allgather", "ProfilerStep#2"} <= names
    assert any(n.startswith("osacc:dp_allgather|on=gpu|r=") for n in names)


def test_analyze_reads_the_run_directory(cpu_run: tuple[Path, str]) -> None:
    """A CPU run has no GPU kernels: analyze loads it and says there is nothing to measure (exit 2)."""
    out, _ = cpu_run
    result = runner.invoke(app, ["analyze", str(out), "--json"])
    assert '"rank": 1' in result.stdout
    assert result.exit_code == 2 and "no GPU kernels in the trace" in result.stderr


def test_nsys_profiler_without_nsys_is_one_clear_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVERLAPSCOPE_NSYS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = runner.invoke(app, ["run", "staging_transfer", "--device", "cpu", "--profiler", "nsys",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "overlapscope: error: --profiler nsys: Nsight Systems not found: put nsys on PATH or set OVERLAPSCOPE_NSYS"]


@pytest.mark.parametrize(("args", "message"), [
    (["nope"], "MODEL: unknown model 'nope'"),
    (["staging_transfer", "--variant", "racy"], "--variant: 'racy' is not a variant of staging_transfer"),
    (["staging_transfer", "--profiler", "perf"], "--profiler: 'perf' is not one of torch, nsys, none"),
    (["staging_transfer", "--steps", "0"], "--steps: must be at least 1"),
    (["staging_transfer", "--set", "slots"], "--set: 'slots' is not KEY=VALUE"),
    (["staging_transfer", "--set", "slots=99"], "--set: slots=99 must not exceed pool_slots=8"),
])
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", *args, "--device", "cpu", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "x").exists()


def test_torch_profiler_records_the_transfer_engine_thread(tmp_path: Path) -> None:
    """The staging transfer's read is marked on the transfer engine's own thread; the profiler,
    which by default records only the thread that started it, must record that thread too."""
    from overlapscope.trace.load import load

    out = tmp_path / "staging"
    result = runner.invoke(app, ["run", "staging_transfer", "--variant", "unsynced", "--device", "cpu",
                                 "--profiler", "torch", "--world-size", "2", "--steps", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ranges = load([out]).ranges
    main_thread = ranges.loc[ranges["name"] == "staging/prefill", "tid"].unique()
    marks = ranges[ranges["name"].astype(str).str.startswith("osacc:rdma_read|on=host|r=staging@")]
    assert len(marks) == 2  # one per rank
    assert not set(marks["tid"]) & set(main_thread)
