"""`overlapscope run --profiler rocprofv3`, without an AMD GPU: the command line it builds, and a whole
run under a stand-in `rocprofv3` (a script that records its argv, runs the ranks on the CPU, then
writes each rank's rocpd database with tests/rocpd_builder.py under the name the real one uses,
`<pid>_results.db`), whose run.json and databases the analyzer reads."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overlapscope.capture import plan as plan_module
from overlapscope.capture.errors import RunFailed
from overlapscope.capture.rocprof import (
    DB_SUFFIX,
    NOT_FOUND,
    collect_databases,
    database_name,
    find_rocprofv3,
    profile_command,
)
from overlapscope.cli import app

runner = CliRunner()
TESTS = Path(__file__).parent
FAKE_VERSION = "rocprofv3 (stand-in) 1.0.0"
FLAGS = ["--kernel-trace", "--hip-runtime-trace", "--marker-trace", "--rccl-trace", "--memory-copy-trace",
         "--selected-regions", "--output-format", "rocpd"]

# What the stand-in writes for rank r (GPU r): a step, the model's region around two launches, a
# compute kernel and an RCCL kernel on a second stream that overlap by 20 us of the RCCL kernel's 40 us.
FAKE = '''#!{python}
import json, os, subprocess, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from rocpd_builder import RocpdBuilder

argv = sys.argv[1:]
if argv == ["--version"]:
    print({version!r})
    sys.exit(0)
Path({log!r}).write_text(json.dumps(argv))
sep = argv.index("--")
options, child = argv[:sep], argv[sep + 1:]
raw, name = Path(options[options.index("-d") + 1]), options[options.index("-o") + 1]
if {fail!r}:
    print("rocprofv3: fatal: no GPU agents", file=sys.stderr)
    sys.exit(3)
launcher = subprocess.Popen(child)
if launcher.wait():
    sys.exit(launcher.returncode)
spec = json.loads(Path(child[-1]).read_text())


def database(pid):
    return raw / (name.replace("%pid%", str(pid)) + "_results.db")


for rank in range(spec["world_size"]):
    pid = json.loads((Path(spec["results_dir"]) / f"rank-{{rank}}.json").read_text())["pid"]
    b = RocpdBuilder(version=4)
    run = b.run(pid, gpus=(rank,))
    run.marker("ProfilerStep#1", 1_000, 100_000)
    run.marker("staging/transfer", 10_000, 30_000)
    run.launch("Cijk_Ailk_Bljk_HHS_BH_MT128x128x32", stream=1, at=12_000, start=40_000, end=70_000, device=rank)
    run.launch("ncclDevKernel_Generic_4(ncclDevKernelArgsStorage<4096ul>)", stream=2, at=20_000,
               start=50_000, end=90_000, device=rank)
    b.write(database(pid))
# the launcher is profiled too: its database has no GPU work and must be left out
b = RocpdBuilder(version=4)
b.run(launcher.pid)
b.write(database(launcher.pid))
'''


def write_fake(tmp_path: Path, fail: bool = False) -> tuple[Path, Path]:
    script, log = tmp_path / "rocprofv3", tmp_path / "rocprofv3-argv.json"
    script.write_text(FAKE.format(python=sys.executable, tests=str(TESTS), version=FAKE_VERSION, log=str(log),
                                  fail=fail))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


@pytest.fixture
def cpu_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in runs the ranks on the CPU: lift the rule that rocprofv3 runs need --device cuda."""
    monkeypatch.delitem(plan_module.GPU_ONLY, "rocprofv3")


def test_command_line_traces_what_the_reader_uses_and_writes_one_database_per_process(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "overlapscope.capture.workload", "spec.json"]
    assert profile_command("/opt/rocm/bin/rocprofv3", tmp_path, argv) == [
        "/opt/rocm/bin/rocprofv3", *FLAGS, "-d", str(tmp_path), "-o", "%pid%", "--", *argv]


def test_rocprofv3_is_found_on_path_or_through_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script, _ = write_fake(tmp_path)
    monkeypatch.delenv("OVERLAPSCOPE_ROCPROFV3", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_rocprofv3() == str(script)
    monkeypatch.setenv("PATH", "")
    assert find_rocprofv3() is None
    monkeypatch.setenv("OVERLAPSCOPE_ROCPROFV3", "/somewhere/rocprofv3")
    assert find_rocprofv3() == "/somewhere/rocprofv3"


def test_without_rocprofv3_one_clear_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVERLAPSCOPE_ROCPROFV3", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = runner.invoke(app, ["run", "staging_transfer", "--profiler", "rocprofv3", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"overlapscope: error: --profiler rocprofv3: {NOT_FOUND}"]
    assert NOT_FOUND == "rocprofv3 not found: put it on PATH or set OVERLAPSCOPE_ROCPROFV3"
    assert not (tmp_path / "x").exists()


def test_a_cpu_run_under_rocprofv3_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script, log = write_fake(tmp_path)
    monkeypatch.setenv("OVERLAPSCOPE_ROCPROFV3", str(script))
    result = runner.invoke(app, ["run", "staging_transfer", "--profiler", "rocprofv3", "--device", "cpu",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--profiler rocprofv3: traces HIP, ROCTx and RCCL" in lines[0]
    assert not log.exists()


def test_a_profiler_that_fails_is_a_failed_run_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      cpu_allowed: None) -> None:
    pytest.importorskip("torch")
    script, log = write_fake(tmp_path, fail=True)
    monkeypatch.setenv("OVERLAPSCOPE_ROCPROFV3", str(script))
    result = runner.invoke(app, ["run", "staging_transfer", "--profiler", "rocprofv3", "--device", "cpu",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "run failed: the workload under rocprofv3 exited with 3: rocprofv3: fatal: no GPU agents" in result.stderr
    assert json.loads(log.read_text())[:len(FLAGS)] == FLAGS


def test_each_rank_keeps_its_own_database_and_others_are_left_behind(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw" / "host", tmp_path / "out"
    raw.mkdir(parents=True)
    out.mkdir()
    for pid in (11, 22, 33, 44):  # 44: the launcher
        (raw / f"{pid}{DB_SUFFIX}").write_text(str(pid))
    written = collect_databases(tmp_path / "raw", [33, 11, 22], out)
    assert [p.name for p in written] == ["rank-0_results.db", "rank-1_results.db", "rank-2_results.db"]
    assert [p.read_text() for p in written] == ["33", "11", "22"]
    assert [p.name for p in raw.iterdir()] == [f"44{DB_SUFFIX}"]
    with pytest.raises(RunFailed, match=r"no database for rank 1 \(pid 55; databases written: 44_results.db\)"):
        collect_databases(tmp_path / "raw", [44, 55], out)
    # zero-padded, so that a directory's name order is rank order
    assert [database_name(r, 12) for r in (0, 9, 11)] == ["rank-00_results.db", "rank-09_results.db",
                                                          "rank-11_results.db"]


@pytest.fixture(scope="module")
def rocprof_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("rocprof")
    script, log = write_fake(tmp)
    out = tmp / "staging"
    with pytest.MonkeyPatch.context() as mp:
        mp.delitem(plan_module.GPU_ONLY, "rocprofv3")
        mp.setenv("OVERLAPSCOPE_ROCPROFV3", str(script))
        result = runner.invoke(app, ["run", "staging_transfer", "--profiler", "rocprofv3", "--device", "cpu",
                                     "--world-size", "2", "--steps", "1", "--warmup", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, log, result.output


def test_rocprofv3_runs_the_ranks_with_the_trace_flags(rocprof_run: tuple[Path, Path, str]) -> None:
    _, log, _ = rocprof_run
    argv = json.loads(log.read_text())
    sep = argv.index("--")
    assert argv[:len(FLAGS)] == FLAGS
    assert argv[len(FLAGS)] == "-d" and argv[len(FLAGS) + 2:sep] == ["-o", "%pid%"]
    assert argv[sep + 1:sep + 4] == [sys.executable, "-m", "overlapscope.capture.workload"]


def test_the_run_directory_holds_one_database_per_rank_and_the_manifest(rocprof_run: tuple[Path, Path, str]) -> None:
    out, log, _ = rocprof_run
    assert sorted(p.name for p in out.iterdir()) == ["rank-0_results.db", "rank-1_results.db", "run.json"]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["overlapscope_run"] == 1
    assert (manifest["profiler"], manifest["profiler_version"]) == ("rocprofv3", FAKE_VERSION)
    assert manifest["profiler_command"][0].endswith("rocprofv3")
    assert manifest["profiler_command"][1:] == json.loads(log.read_text())
    assert manifest["command"][:3] == ["overlapscope", "run", "staging_transfer"]
    assert manifest["command"][manifest["command"].index("--profiler") + 1] == "rocprofv3"
    assert [len(r) for r in manifest["step_times_ms"]] == [1, 1]


def test_the_run_is_analysed_from_its_databases(rocprof_run: tuple[Path, Path, str]) -> None:
    from overlapscope.overlap import analyze
    from overlapscope.pipeline import load

    out, _, output = rocprof_run
    assert "^staging/transfer$" in output
    trace = load([out])
    assert [(r.rank, r.device, r.format) for r in trace.ranks] == [(0, 0, "rocpd"), (1, 1, "rocpd")]
    assert trace.manifest is not None and trace.manifest["profiler"] == "rocprofv3"
    result = analyze(trace, [r"^staging/transfer$"])
    assert [(r.comm_ns, r.compute_ns, r.overlap_ns, r.exposed_comm_ns) for r in result.ranks] == [
        (40_000, 30_000, 20_000, 20_000)] * 2
    assert [(r.region, r.comm_ns, r.overlap_pct) for r in result.regions] == [(r"^staging/transfer$", 40_000, 50.0)] * 2


def test_the_ranks_report_their_pids(rocprof_run: tuple[Path, Path, str]) -> None:
    """Each database is the rank's own: the rank's pid is the database's process."""
    import sqlite3

    out, _, _ = rocprof_run
    pids = []
    for name in ("rank-0_results.db", "rank-1_results.db"):
        with sqlite3.connect(out / name) as con:
            table = next(n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                         if n.startswith("rocpd_info_process"))
            pids += [p for (p,) in con.execute(f'SELECT pid FROM "{table}"')]
        con.close()
    assert len(set(pids)) == 2 and os.getpid() not in pids


def test_regions_are_roctx_ranges_on_rocm(monkeypatch):
    """rocprofv3 records ROCTx, not NVTX: on a ROCm build of torch a region is also a ROCTx range."""
    import contextlib

    import torch

    from overlapscope.instrument import region

    opened = []

    @contextlib.contextmanager
    def fake_range(name):
        opened.append(name)
        yield

    monkeypatch.setattr(torch.version, "hip", "6.4.0", raising=False)
    monkeypatch.setattr(torch.cuda.nvtx, "range", fake_range)
    with region("tbo/block"):
        pass
    assert opened == ["tbo/block"]
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    with region("tbo/block"):
        pass
    assert opened == ["tbo/block"]
