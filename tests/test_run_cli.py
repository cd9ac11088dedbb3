"""`overlapscope run` on the CPU: traces, Execution Traces and run.json that the analyzer loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overlapscope.cli import app

pytest.importorskip("torch")

runner = CliRunner()
MANIFEST_KEYS = {"overlapscope_run", "model", "workload", "variant", "config", "world_size", "device", "gpu_name",
                 "versions", "profiler", "command", "step_times_ms", "numerics", "overlap_region", "created",
                 "pacing_region", "exclude_kernels", "fed_step_ms"}


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
    assert manifest["workload"] == "reference_models.deepseek_v4_tbo:build"
    assert manifest["exclude_kernels"] == ["spin_kernel"]  # the head start's kernel, not the model's
    assert manifest["pacing_region"] == r"^overlapscope/pacing(/|$)"
    assert manifest["command"][:3] == ["overlapscope", "run", "deepseek_v4_tbo"]
    assert [len(r) for r in manifest["step_times_ms"]] == [2, 2]
    assert all(t > 0 for rank in manifest["step_times_ms"] for t in rank)
    checks = [c for rank in manifest["numerics"] for c in rank]
    assert len(checks) == 4 and all(c["ok"] and c["max_abs_err"] == 0.0 for c in checks)


def test_the_run_is_analysed_and_loads_with_its_regions_steps_and_execution_traces(cpu_run: tuple[Path, str]) -> None:
    from overlapscope.pipeline import load

    out, output = cpu_run
    assert "^tbo/block$" in output and "ProfilerStep#1" in output
    trace = load([out])
    assert [r.rank for r in trace.ranks] == [0, 1]
    assert sorted(trace.execution_traces) == [0, 1]
    assert trace.manifest is not None and trace.manifest["variant"] == "comm-stream"
    names = set(trace.ranges["name"].astype(str))
    assert {"tbo/block", "tbo/l0", "tbo/l1", "tbo/l0/mb1/dp_allgather", "ProfilerStep#2"} <= names
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
    from overlapscope.pipeline import load

    out = tmp_path / "staging"
    result = runner.invoke(app, ["run", "staging_transfer", "--variant", "unsynced", "--device", "cpu",
                                 "--profiler", "torch", "--world-size", "2", "--steps", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ranges = load([out]).ranges
    main_thread = ranges.loc[ranges["name"] == "staging/prefill", "tid"].unique()
    marks = ranges[ranges["name"].astype(str).str.startswith("osacc:rdma_read|on=host|r=staging@")]
    assert len(marks) == 2  # one per rank
    assert not set(marks["tid"]) & set(main_thread)


def test_pacing_has_its_own_range_in_every_step(cpu_run: tuple[Path, str]) -> None:
    """The harness's pacing (on a CPU: the barrier) sits in `overlapscope/pacing`, once per step, outside
    the model's region, so an analysis can tell it apart (and run.json names its kernels to exclude)."""
    import re

    from overlapscope.pipeline import load

    out, _ = cpu_run
    ranges = load([out]).ranges
    manifest = json.loads((out / "run.json").read_text())
    pacing = ranges[ranges["name"].astype(str).str.match(manifest["pacing_region"])]
    steps = ranges[ranges["name"].astype(str).str.startswith("ProfilerStep#")]
    assert len(pacing) == len(steps) == 4  # 2 steps x 2 ranks
    block = ranges[ranges["name"] == "tbo/block"]
    for rank in (0, 1):
        mine, theirs = pacing[pacing["rank"] == rank], block[block["rank"] == rank]
        assert (mine["end"].to_numpy() <= theirs["start"].to_numpy()).all()
    spin = "at::cuda::(anonymous namespace)::spin_kernel(long)"
    assert all(re.search(p, spin) for p in manifest["exclude_kernels"])


def test_run_command_line_and_summary_are_library_calls(tmp_path: Path) -> None:
    from overlapscope.capture import RunOutcome, RunRequest
    from overlapscope.renderers.console import run_lines

    request = RunRequest("deepseek_v4_tbo", "comm-stream", 2, "torch", "cpu", 2, 3, tmp_path, ["layers=3"])
    assert request.command_line() == [
        "overlapscope", "run", "deepseek_v4_tbo", "--world-size", "2", "--profiler", "torch", "--device", "cpu",
        "--steps", "2", "--warmup", "3", "--variant", "comm-stream", "--out", str(tmp_path), "--set", "layers=3"]
    manifest = {"model": "m", "variant": "v", "world_size": 2, "gpu_name": None, "device": "cpu", "profiler": "none",
                "step_times_ms": [[1.0], [3.0]], "baseline": "v", "overlap_region": None,
                "numerics": [[{"ok": None}], [{"ok": None}]]}
    lines = run_lines(RunOutcome(tmp_path, manifest))
    assert lines[1] == "step time mean 2.000 ms; numerics not checked (the workload has no check)"
    assert lines[2].endswith("(overlap region: none declared)")


USER_WORKLOAD = """
import torch
import torch.distributed as dist

from overlapscope.capture import StepResult, workload
from overlapscope.instrument import region


class Layer:
    def __init__(self, config, ctx, variant):
        self.ctx, self.variant = ctx, variant
        self.x = torch.full((config["n"],), float(ctx.rank + 1), device=ctx.device)

    def forward(self, step):
        with region("mine/layer"):
            y = self.x * 2
            if self.variant == "summed":
                dist.all_reduce(y)
            self.out = y

    def check(self, step):
        world = self.ctx.world_size
        expected = world * (world + 1) if self.variant == "summed" else 2.0 * (self.ctx.rank + 1)
        err = float((self.out - expected).abs().max())
        return StepResult(err == 0.0, err, f"max |err| {err}")


@workload(variants=("local", "summed"), overlap_region=r"^mine/layer$", defaults={"n": 1024}, small={"n": 8})
def build(config, ctx, variant):
    return Layer(config, ctx, variant)


def bare(config, ctx, variant):
    return Layer(config, ctx, "local")
"""


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's own workload in a module of its own, importable through sys.path (spawned ranks inherit it)."""
    package = tmp_path / "src" / "my_layers"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "layer.py").write_text(USER_WORKLOAD)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    return "my_layers.layer"


def test_run_drives_a_users_own_workload(user_package: str, tmp_path: Path) -> None:
    from overlapscope.pipeline import load

    out = tmp_path / "out"
    result = runner.invoke(app, ["run", f"{user_package}:build", "--variant", "summed", "--device", "cpu",
                                 "--profiler", "torch", "--world-size", "2", "--steps", "2", "--warmup", "1",
                                 "--set", "n=16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "run.json").read_text())
    assert (manifest["model"], manifest["workload"]) == (f"{user_package}:build", f"{user_package}:build")
    assert (manifest["variant"], manifest["baseline"], manifest["config"]) == ("summed", "local", {"n": 16})
    assert manifest["overlap_region"] == "^mine/layer$"
    checks = [c for rank in manifest["numerics"] for c in rank]
    assert len(checks) == 4 and all(c["ok"] for c in checks), checks
    names = set(load([out]).ranges["name"].astype(str))
    assert {"mine/layer", "overlapscope/pacing", "ProfilerStep#1"} <= names


@pytest.mark.parametrize(("target", "message"), [
    ("my_layers.layer:build --variant racy", "--variant: 'racy' is not a variant of my_layers.layer:build"),
    ("my_layers.layer:build --set m=1", "--set: unknown key 'm' (keys: n)"),
    ("my_layers.layer:bare --set n=1", "--set: unknown key 'n' (keys: none: the workload declares no defaults)"),
    ("my_layers.layer:nope", "MODEL: 'my_layers.layer' has no 'nope'"),
    ("my_layers.nothere:build", "MODEL: cannot import 'my_layers.nothere'"),
    ("my_layers.layer:torch", "MODEL: 'my_layers.layer:torch' is not callable"),
])
def test_a_bad_workload_is_one_line_and_exit_2(user_package: str, target: str, message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", *target.split(), "--device", "cpu", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "x").exists()


def test_nothing_in_overlapscope_imports_reference_models() -> None:
    """The harness names the reference models as strings; the dependency points from them to overlapscope."""
    import ast

    package = Path(__file__).resolve().parents[1] / "overlapscope"
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "reference_models"]
    assert offenders == []


def test_head_start_is_the_smallest_that_keeps_the_gpu_fed_and_grows_when_it_starved() -> None:
    """The pacing arithmetic without a GPU: a fake clock whose ranks agree with themselves."""
    from types import SimpleNamespace

    from overlapscope.capture.pacing import StepClock, StepTiming, head_start_for, starved_by

    assert head_start_for(44.0, 25.0) == pytest.approx(19 + 12.5 + 1)  # host slower than the GPU
    assert head_start_for(5.0, 34.0) == pytest.approx(2.5 + 1)  # host faster: a small cover only
    assert head_start_for(10.0, None) == pytest.approx(13.0)  # no fed step known: about the launch
    assert starved_by(StepTiming(30.0, 40.0, 20.0), 25.0) == pytest.approx(5.0)
    assert starved_by(StepTiming(30.0, 15.0, 20.0), 25.0) == 0.0  # launched within the head start
    assert starved_by(StepTiming(25.5, 40.0, 20.0), 25.0) == 0.0  # within the noise

    ctx = SimpleNamespace(streams=SimpleNamespace(cuda=False))
    clock = StepClock(ctx, head_start=True, profiler="torch")
    clock.enabled, clock.agree = True, lambda ms: ms
    clock.warmed(StepTiming(900.0, 800.0, 0.0))  # cold: no head start follows
    assert clock.head_start_ms == 0.0
    clock.warmed(StepTiming(30.0, 8.0, 0.0))
    assert clock.head_start_ms == pytest.approx(13.0) and clock.fed_ms is None
    clock.warmed(StepTiming(25.0, 8.0, 13.0))
    assert clock.fed_ms == 25.0
    clock.start_profiling(recorded=False)  # the torch profiler's unrecorded step: generous
    assert clock.head_start_ms == pytest.approx(1.5 * 7 * 8 + 1)
    clock.grow(StepTiming(25.2, 44.0, clock.head_start_ms))
    assert clock.head_start_ms == pytest.approx(32.5)
    clock.grow(StepTiming(31.0, 44.0, 32.5))  # the GPU waited 6 ms for the host: 1.5x that more, for good
    assert clock.head_start_ms == pytest.approx(32.5 + 9.0)
    clock.grow(StepTiming(25.0, 44.0, 41.5))
    assert clock.head_start_ms == pytest.approx(41.5)
    clock.grow(StepTiming(40.0, 44.0, 41.5))  # never beyond 1.2 x the launch
    assert clock.head_start_ms == pytest.approx(1.2 * 44 + 1)
