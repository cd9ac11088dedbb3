"""What a run will do, checked before any process starts: every bad argument is one BadInput."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInput
from .workloads import resolve, resolve_config, target_of

PROFILERS = ("torch", "nsys", "none", "rocprofv3")
DEVICES = ("cuda", "cpu")
# Profilers that trace GPU work only: on a CPU run they would record nothing.
GPU_ONLY = {
    "nsys": "traces CUDA and NVTX: use it with --device cuda",
    "rocprofv3": "traces HIP, ROCTx and RCCL on ROCm GPUs: use it with --device cuda (torch's name for a ROCm GPU too)",
}


@dataclass
class RunRequest:
    model: str  # a reference model's name, or your own workload as package.module:factory
    variant: str | None = None  # None: the workload's baseline
    world_size: int = 2
    profiler: str = "torch"
    device: str = "cuda"
    steps: int = 6
    warmup: int = 3
    out: Path | None = None  # None: out/MODEL/VARIANT
    overrides: list[str] = field(default_factory=list)  # KEY=VALUE

    def command_line(self) -> list[str]:
        """The `overlapscope run` command that makes this request (recorded in run.json)."""
        line = ["overlapscope", "run", self.model, "--world-size", str(self.world_size), "--profiler", self.profiler,
                "--device", self.device, "--steps", str(self.steps), "--warmup", str(self.warmup)]
        if self.variant:
            line += ["--variant", self.variant]
        if self.out:
            line += ["--out", str(self.out)]
        return line + [arg for item in self.overrides for arg in ("--set", item)]


@dataclass
class Workload:
    """A checked run, as the ranks receive it (plain data: pickled to spawn, JSON for nsys)."""

    model: str  # the registered name, or the target
    variant: str
    config: dict[str, Any]
    world_size: int
    device: str
    profiler: str
    steps: int
    warmup: int
    out_dir: str
    results_dir: str = ""
    head_start: bool = False  # pace each step: align the ranks' GPUs, give the host a head start (pacing.py)
    target: str = ""  # package.module:factory, imported again in every rank
    baseline: str = ""
    overlap_region: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(request: RunRequest) -> Workload:
    _one_of("--profiler", request.profiler, PROFILERS)
    _one_of("--device", request.device, DEVICES)
    for option, value, least in (("--world-size", request.world_size, 1), ("--steps", request.steps, 1),
                                 ("--warmup", request.warmup, 1)):
        if value < least:
            raise BadInput(option, f"must be at least {least}, not {value}")
    overrides = _parse_overrides(request.overrides)
    target_of(request.model)  # an unknown name is bad input before torch is looked for
    _check_profiler_found(request.profiler)
    if request.profiler in GPU_ONLY and request.device != "cuda":
        raise BadInput(f"--profiler {request.profiler}", GPU_ONLY[request.profiler])
    _check_torch(request.device, request.world_size)
    if request.profiler == "rocprofv3" and request.device == "cuda":
        _check_rocm_torch()
    work = resolve(request.model)
    info = work.info
    variant = request.variant or info.baseline_variant
    if variant not in info.variants:
        raise BadInput("--variant", f"{variant!r} is not a variant of {work.name} "
                                    f"(variants: {', '.join(info.variants)})")
    try:
        config = resolve_config(info, request.device == "cpu", overrides, request.world_size)
    except ValueError as e:
        raise BadInput("--set", str(e)) from None
    out = request.out or Path("out") / work.name.replace(":", ".") / variant
    return Workload(work.name, variant, config, request.world_size, request.device, request.profiler,
                    request.steps, request.warmup, str(out), head_start=info.head_start, target=work.target,
                    baseline=info.baseline_variant, overlap_region=info.overlap_region)


def _check_profiler_found(profiler: str) -> None:
    if profiler == "nsys":
        from ..trace.load import find_nsys

        if not find_nsys():
            raise BadInput("--profiler nsys", "Nsight Systems not found: put nsys on PATH or set OVERLAPSCOPE_NSYS")
    if profiler == "rocprofv3":
        from .rocprof import NOT_FOUND, find_rocprofv3

        if not find_rocprofv3():
            raise BadInput("--profiler rocprofv3", NOT_FOUND)


def _check_rocm_torch() -> None:
    import torch

    if not torch.version.hip:
        raise BadInput("--profiler rocprofv3", f"traces ROCm GPUs, and this torch ({torch.__version__}) is not a "
                                               "ROCm build: use --profiler torch or nsys on NVIDIA GPUs")


def _one_of(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BadInput(option, f"{value!r} is not one of {', '.join(allowed)}")


def _parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput("--set", f"{item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _check_torch(device: str, world_size: int) -> None:
    try:
        import torch
    except ImportError:
        raise BadInput("torch", "not installed: `overlapscope run` needs the `models` extra "
                                "(pip install torch, then pip install 'overlapscope[models]')") from None
    if device == "cuda":
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if found < world_size:
            raise BadInput("--device cuda", f"--world-size {world_size} needs {world_size} GPUs, this machine has "
                                            f"{found}" + ("" if found else " (use --device cpu)"))
