"""What every reference model shares: seeded tensors and the numerics check. The rank's context, its
stream shim and StepResult are overlapscope's workload interface (overlapscope.capture), re-exported."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.distributed as dist

from overlapscope.capture.context import RankContext, Streams
from overlapscope.capture.workloads import StepResult

# torch 2.13 renamed all_gather_into_tensor (and deprecated the old name); the GPU machines run 2.11.
all_gather_into = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

__all__ = ["RankContext", "ReferenceModel", "StepResult", "Streams", "all_gather_into", "compare",
           "dtype_of", "randn", "weight", "worst"]

# Relative tolerance of every numerics check: the variants run the same kernels on the same data, so
# they normally agree bit for bit (max_abs_err 0.0); this leaves room for a library that picks another
# reduction order on another stream, and is orders of magnitude below what a premature read produces.
RELATIVE_TOLERANCE = 1e-3


class ReferenceModel(Protocol):
    def forward(self, step: int) -> None: ...

    def check(self, step: int) -> StepResult: ...

    def components(self) -> dict[str, Callable[[], None]]:
        """Each overlapped part on its own (for tuning sizes): name -> a closure that enqueues it once."""
        ...

    def close(self) -> None: ...


def dtype_of(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype={name!r} is not a torch dtype")
    return dtype


def randn(ctx: RankContext, seed: int, *shape: int, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    """Normal values from a seed, identical on every rank that passes the same seed."""
    values = torch.randn(*shape, generator=ctx.generator(seed), device=ctx.device, dtype=torch.float32)
    return (values * scale).to(dtype)


def weight(ctx: RankContext, seed: int, fan_in: int, *shape: int, dtype: torch.dtype) -> torch.Tensor:
    """A weight scaled by fan_in^-1/2, so activations stay of order one through the layers."""
    return randn(ctx, seed, *shape, dtype=dtype, scale=fan_in ** -0.5)


def compare(out: torch.Tensor, ref: torch.Tensor, what: str) -> StepResult:
    """Every element against the baseline: equal values (including matching infinities) count as no error,
    NaN or a lost infinity count as an infinite error."""
    out32, ref32 = out.float(), ref.float()
    diff = torch.where(out32 == ref32, torch.zeros_like(out32), (out32 - ref32).abs())
    diff = torch.nan_to_num(diff, nan=float("inf"))
    err = float(diff.max().item()) if diff.numel() else 0.0
    finite_ref = ref32[torch.isfinite(ref32)]
    scale = float(finite_ref.abs().max().item()) if finite_ref.numel() else 1.0
    ok = err <= RELATIVE_TOLERANCE * max(scale, 1e-30)
    bad = int((diff > RELATIVE_TOLERANCE * scale).sum().item())
    detail = f"{what}: max |err| {err:.3g} (scale {scale:.3g})" + ("" if ok else f", {bad} of {diff.numel()} elements off")
    return StepResult(ok, err, detail)


def worst(results: list[StepResult]) -> StepResult:
    """One result for several checked outputs: failed if any failed, the largest error."""
    failed = [r for r in results if not r.numerics_ok]
    err = max((r.max_abs_err for r in results), default=0.0)
    return StepResult(not failed, err, "; ".join(r.detail for r in (failed or results[:1])))
