"""Running a workload under rocprofv3 (ROCprofiler-SDK) and keeping one rocpd database per rank.

The parent side builds the command line, runs it and renames the databases; the rank side
(`Roctx`) opens and closes the capture window and marks each step, through the ROCTx library.

    rocprofv3 --kernel-trace --hip-runtime-trace --marker-trace --rccl-trace --memory-copy-trace
              --selected-regions --output-format rocpd -d RAW_DIR -o %pid% -- python -m ...

- The trace flags give what the rocpd reader uses: kernel dispatches, HIP runtime calls (launch
  links, stream/event synchronisation), ROCTx ranges (regions, `ProfilerStep#N`), RCCL API calls
  and memory copies.
- `--selected-regions` starts each process paused; each rank resumes collection after its warm-up
  (`roctxProfilerResume(0)`) and pauses it after its last profiled step, as the nsys run's
  cudaProfilerStart/Stop capture range does, so warm-up and set-up stay out of the trace.
  rocprofv3 honours the regions only together with --marker-trace.
- Every profiled process (the launcher and each rank spawned from it) writes its own database,
  `RAW_DIR/<pid>_results.db`; each rank reports its pid, and its database is kept as
  `rank-R_results.db` in the run's directory. The launcher's (no GPU work) is dropped.

Untested on AMD hardware: no ROCm GPU was available when this was written (see docs/amd.md).
This module imports neither torch nor sqlite3 at import time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

from .errors import RunFailed

ENV_VAR = "OVERLAPSCOPE_ROCPROFV3"
NOT_FOUND = f"rocprofv3 not found: put it on PATH or set {ENV_VAR}"
TRACE_FLAGS = ("--kernel-trace", "--hip-runtime-trace", "--marker-trace", "--rccl-trace", "--memory-copy-trace")
CAPTURE_FLAGS = ("--selected-regions",)  # collect only between roctxProfilerResume(0) and roctxProfilerPause(0)
OUTPUT_FORMAT = "rocpd"
OUTPUT_NAME = "%pid%"  # rocprofv3 expands it per process: RAW_DIR/<pid>_results.db
DB_SUFFIX = "_results.db"
DB_GLOB = "rank-*" + DB_SUFFIX
# The ROCTx library: ROCprofiler-SDK's, then roctracer's older one.
ROCTX_LIBRARIES = ("rocprofiler-sdk-roctx", "roctx64")


def find_rocprofv3() -> str | None:
    return os.environ.get(ENV_VAR) or shutil.which("rocprofv3")


def profile_command(rocprofv3: str, raw_dir: Path, argv: list[str]) -> list[str]:
    """The rocprofv3 command line that runs `argv` and writes one rocpd database per process."""
    return [rocprofv3, *TRACE_FLAGS, *CAPTURE_FLAGS, "--output-format", OUTPUT_FORMAT, "-d", str(raw_dir),
            "-o", OUTPUT_NAME, "--", *argv]


def database_name(rank: int, world_size: int) -> str:
    """`rank-R_results.db`, R zero-padded so that a directory's name order is rank order."""
    width = len(str(max(world_size - 1, 0)))
    return f"rank-{rank:0{width}d}{DB_SUFFIX}"


def collect_databases(raw_dir: Path, rank_pids: list[int], out_dir: Path) -> list[Path]:
    """Move each rank's database (`<pid>_results.db`, found anywhere under raw_dir) into out_dir as
    rank-R_results.db; databases of other processes (the launcher) are left behind. RunFailed when
    a rank's database is missing."""
    found: dict[int, Path] = {}
    for path in sorted(raw_dir.rglob("*" + DB_SUFFIX)):
        stem = path.name[: -len(DB_SUFFIX)]
        if stem.isdigit():
            found.setdefault(int(stem), path)
    for rank, pid in enumerate(rank_pids):
        if pid not in found:
            seen = ", ".join(sorted(p.name for p in found.values())) or "none"
            raise RunFailed(f"rocprofv3 wrote no database for rank {rank} (pid {pid}; databases written: {seen})")
    written = []
    for rank, pid in enumerate(rank_pids):
        target = out_dir / database_name(rank, len(rank_pids))
        shutil.move(str(found[pid]), target)
        written.append(target)
    return written


# --- rank side --------------------------------------------------------------------------------

class Roctx:
    """The ROCTx calls a rank makes under rocprofv3: resume/pause collection, push/pop a range."""

    def __init__(self) -> None:
        self.lib = load_roctx()
        self.lib.roctxProfilerResume.argtypes = [ctypes.c_uint64]
        self.lib.roctxProfilerPause.argtypes = [ctypes.c_uint64]
        self.lib.roctxRangePushA.argtypes = [ctypes.c_char_p]
        self.lib.roctxRangePushA.restype = ctypes.c_int
        self.lib.roctxRangePop.restype = ctypes.c_int

    def resume(self) -> None:
        self.lib.roctxProfilerResume(0)  # 0: every thread of this process

    def pause(self) -> None:
        self.lib.roctxProfilerPause(0)

    def push(self, name: str) -> None:
        self.lib.roctxRangePushA(name.encode())

    def pop(self) -> None:
        self.lib.roctxRangePop()


def load_roctx() -> ctypes.CDLL:
    """ROCprofiler-SDK's ROCTx library (or roctracer's), from the loader's path or $ROCM_PATH/lib."""
    rocm_lib = Path(os.environ.get("ROCM_PATH", "/opt/rocm")) / "lib"
    for name in ROCTX_LIBRARIES:
        for candidate in (ctypes.util.find_library(name), str(rocm_lib / f"lib{name}.so")):
            if not candidate:
                continue
            try:
                return ctypes.CDLL(candidate)
            except OSError:
                continue
    raise RuntimeError("--profiler rocprofv3: the ROCTx library (librocprofiler-sdk-roctx.so or libroctx64.so) "
                       "could not be loaded: set ROCM_PATH or add ROCm's lib directory to LD_LIBRARY_PATH")
