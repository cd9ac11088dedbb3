"""run.json: what ran, where, with which software, how fast, and whether its numbers were right.

The loader recognises the file by its "overlapscope_run" key (trace/load.py, MANIFEST_MARK).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .pacing import PACING_KERNELS, PACING_REGION_REGEX
from .plan import Workload

MANIFEST_NAME = "run.json"


def build_manifest(work: Workload, ranks: list[dict[str, Any]], command: list[str],
                   profiler_version: str | None = None, profiler_command: list[str] | None = None) -> dict[str, Any]:
    """`profiler_version` / `profiler_command`: an external profiler's (nsys, rocprofv3) `--version`
    line and the command line it ran; null for the in-process torch profiler and for none."""
    from ..trace.load import MANIFEST_MARK

    first = ranks[0]
    return {
        MANIFEST_MARK: 1,
        "model": work.model,
        "workload": work.target,  # package.module:factory
        "variant": work.variant,
        "baseline": work.baseline,
        "config": work.config,
        "world_size": work.world_size,
        "device": work.device,
        "gpu_name": first["gpu_name"],
        "versions": first["versions"],
        "profiler": work.profiler,
        "profiler_version": profiler_version,
        "profiler_command": profiler_command,
        "command": command,
        "warmup_steps": work.warmup,
        "step_times_ms": [r["step_times_ms"] for r in ranks],  # [rank][step], GPU time (CPU: wall time)
        "launch_times_ms": [r["launch_times_ms"] for r in ranks],  # [rank][step], host time to enqueue the step
        "head_start_ms": [r["head_start_ms"] for r in ranks],  # [rank][step], see capture/pacing.py
        "fed_step_ms": [r["fed_step_ms"] for r in ranks],  # [rank] GPU step time with the GPU kept fed (null: none)
        "numerics": [r["numerics"] for r in ranks],  # [rank][step] {ok (null: not checked), max_abs_err, detail}
        "overlap_region": work.overlap_region,
        # What the harness adds to the trace: its pacing range, and the kernels an analysis should
        # leave out because the harness, not the workload, launched them (the head-start spin).
        "pacing_region": PACING_REGION_REGEX,
        "exclude_kernels": list(PACING_KERNELS) if work.head_start else [],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    path = out_dir / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path
