"""`overlapscope run` as a library call: check the request, run the ranks (under nsys or rocprofv3
when asked), merge what they report into run.json.

The command line's `run` is: `outcome = run_model(request)`, render it (renderers/console.py run_lines), then
(unless the profiler is none) analyse `outcome.out_dir` with `--region outcome.manifest["overlap_region"]`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import RunFailed
from .manifest import MANIFEST_NAME, build_manifest, write_manifest
from .nsys import SQLITE_NAME, export_sqlite, last_line, profile_command
from .plan import RunRequest, Workload, plan
from .profilers import EXECUTION_TRACE_GLOB, KINETO_GLOB
from .rocprof import DB_GLOB

VERSION_TIMEOUT_S = 30


@dataclass
class RunOutcome:
    out_dir: Path
    manifest: dict[str, Any]


def run_model(request: RunRequest) -> RunOutcome:
    """Run a workload and write its traces and run.json. BadInput before anything starts, RunFailed when
    a rank or the profiler fails. run.json records request.command_line()."""
    work = plan(request)
    out = Path(work.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous_run(out)
    profiler: dict[str, Any] = {}  # an external profiler's version and command line, for run.json
    with tempfile.TemporaryDirectory(prefix="overlapscope-run-") as tmp:
        work = replace(work, results_dir=tmp)
        if work.profiler == "nsys":
            profiler = _run_under_nsys(work, Path(tmp), out / SQLITE_NAME)
            ranks = _read_rank_results(work)
        elif work.profiler == "rocprofv3":
            profiler, ranks = _run_under_rocprofv3(work, Path(tmp), out)
        else:
            execute(work)
            ranks = _read_rank_results(work)
    manifest = build_manifest(work, ranks, request.command_line(), **profiler)
    write_manifest(out, manifest)
    return RunOutcome(out, manifest)


def measure_components(request: RunRequest) -> list[dict[str, Any]]:
    """Per rank: each overlapped part of the model alone, in ms (`components_ms`), with the GPU name."""
    from .worker import time_components

    work = plan(replace(request, profiler="none"))
    with tempfile.TemporaryDirectory(prefix="overlapscope-components-") as tmp:
        work = replace(work, results_dir=tmp)
        _spawn(time_components, work)
        return _read_rank_results(work)


def execute(work: Workload) -> None:
    """Run the workload's ranks from this process (the nsys path calls this under nsys)."""
    from .worker import run_rank

    _spawn(run_rank, work)


def _spawn(fn: Any, work: Workload) -> None:
    import torch.multiprocessing as mp

    from .launch import spawn_ranks

    try:
        spawn_ranks(fn, work.world_size, work.device, work)
    except mp.ProcessRaisedException as e:
        raise RunFailed(f"a rank raised: {last_line(str(e))}") from None
    except mp.ProcessExitedException as e:
        raise RunFailed(f"a rank died: {e}") from None


def _run_under_nsys(work: Workload, tmp: Path, sqlite_out: Path) -> dict[str, Any]:
    from ..trace.load import find_nsys

    nsys = find_nsys()
    assert nsys, "plan() checked that nsys exists"
    report = tmp / "trace"
    command = profile_command(nsys, report, _workload_argv(work, tmp))
    proc = _run_child(command, "nsys")
    rep = report.with_suffix(".nsys-rep")
    if not rep.is_file():
        raise RunFailed(f"nsys wrote no report ({last_line(proc.stderr or proc.stdout)})")
    export_sqlite(nsys, rep, sqlite_out)
    return {"profiler_version": _version_of(nsys), "profiler_command": command}


def _run_under_rocprofv3(work: Workload, tmp: Path, out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ranks under rocprofv3; each rank's rocpd database is moved into `out` (capture/rocprof.py)."""
    from .rocprof import collect_databases, find_rocprofv3
    from .rocprof import profile_command as rocprof_command

    rocprofv3 = find_rocprofv3()
    assert rocprofv3, "plan() checked that rocprofv3 exists"
    raw = tmp / "rocprofv3"
    raw.mkdir()
    command = rocprof_command(rocprofv3, raw, _workload_argv(work, tmp))
    _run_child(command, "rocprofv3")
    ranks = _read_rank_results(work)
    collect_databases(raw, [int(r["pid"]) for r in ranks], out)
    return {"profiler_version": _version_of(rocprofv3), "profiler_command": command}, ranks


def _workload_argv(work: Workload, tmp: Path) -> list[str]:
    """The command that runs the ranks in a child process (the process an external profiler starts)."""
    spec = tmp / "workload.json"
    spec.write_text(json.dumps(work.to_dict()))
    return [sys.executable, "-m", "overlapscope.capture.workload", str(spec)]


def _run_child(command: list[str], profiler: str) -> Any:
    import subprocess

    # the workload's module must import there as here (a user's package found through this sys.path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RunFailed(f"the workload under {profiler} exited with {proc.returncode}: "
                        f"{last_line(proc.stderr or proc.stdout)}")
    return proc


def _version_of(tool: str) -> str | None:
    """The first line `TOOL --version` prints, or None when it fails or prints nothing."""
    import subprocess

    try:
        proc = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in (proc.stdout + "\n" + proc.stderr).splitlines() if line.strip()]
    return lines[0] if proc.returncode == 0 and lines else None


def _read_rank_results(work: Workload) -> list[dict[str, Any]]:
    results = []
    for rank in range(work.world_size):
        path = Path(work.results_dir) / f"rank-{rank}.json"
        if not path.is_file():
            raise RunFailed(f"rank {rank} finished without reporting its results")
        results.append(json.loads(path.read_text()))
    return results


def _clear_previous_run(out: Path) -> None:
    """Remove what an earlier run wrote here (our own file names only), so two runs never mix."""
    for path in [out / MANIFEST_NAME, out / SQLITE_NAME, *out.glob(KINETO_GLOB), *out.glob(EXECUTION_TRACE_GLOB),
                 *out.glob(DB_GLOB)]:
        path.unlink(missing_ok=True)
