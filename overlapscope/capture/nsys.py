"""Running a workload under Nsight Systems and exporting its report to SQLite."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import RunFailed

SQLITE_NAME = "trace.sqlite"

# CUDA and NVTX only: CPU sampling and context-switch tracing made a 5-second script write 2 GB.
# --cuda-event-trace fills the SYNCHRONIZATION and CUDA_EVENT tables the race checker reads; the
# capture range (cudaProfilerStart/Stop, called by each rank after its warm-up) keeps warm-up out.
PROFILE_FLAGS = ("-t", "cuda,nvtx", "-s", "none", "--cpuctxsw=none", "--cuda-event-trace=true",
                 "--capture-range=cudaProfilerApi", "--capture-range-end=stop")


def profile_command(nsys: str, report: Path, argv: list[str]) -> list[str]:
    return [nsys, "profile", *PROFILE_FLAGS, "-o", str(report), "--force-overwrite", "true", *argv]


def export_sqlite(nsys: str, report: Path, out: Path) -> None:
    proc = subprocess.run([nsys, "export", "--type", "sqlite", "--force-overwrite", "true", "-o", str(out),
                           str(report)], capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        raise RunFailed(f"nsys export of {report} failed: {last_line(proc.stderr or proc.stdout)}")


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
