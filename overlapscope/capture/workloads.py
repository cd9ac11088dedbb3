"""What `overlapscope run` drives: a workload named `package.module:factory`, or a reference model by name.

A workload is a factory `factory(config, ctx, variant)` that returns an object with
`forward(step)` (enqueue one step), and optionally `check(step)` (a StepResult, or a bool),
`components()` (name -> closure, each overlapped part alone) and `close()`. `ctx` is a
`capture.context.RankContext`: rank, world size, torch device, a gloo control group and stream helpers.
What the harness needs to know before any rank starts (variants, sizes, the region the workload is
about, whether to pace) comes from `@workload(...)` on the factory; a bare factory gets WorkloadInfo().

The reference models are registered here by name as target strings and imported lazily (importlib),
so nothing in overlapscope imports `reference_models`: the dependency points from the models to
overlapscope (they use `overlapscope.instrument`), never back. This module imports no torch.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import BadInput

# name -> "package.module:factory"; resolved only when a run asks for the name.
REFERENCE_MODELS: Mapping[str, str] = MappingProxyType({
    "deepseek_v4_tbo": "reference_models.deepseek_v4_tbo:build",
    "deepseek_v32_nsa_cp": "reference_models.deepseek_v32_nsa_cp:build",
    "staging_transfer": "reference_models.staging_transfer:build",
})

INFO_ATTRIBUTE = "overlapscope_workload"
DEFAULT_VARIANT = "default"


@dataclass(frozen=True)
class StepResult:
    """One rank-step's numerics check against the workload's baseline."""

    numerics_ok: bool
    max_abs_err: float  # inf when the output holds NaN or Inf where the baseline does not
    detail: str


@dataclass(frozen=True)
class WorkloadInfo:
    """What the harness reads from a factory before any rank starts (all optional)."""

    variants: tuple[str, ...] = (DEFAULT_VARIANT,)
    baseline: str | None = None  # None: the first variant
    buggy: tuple[str, ...] = ()  # variants that contain an intended race
    overlap_region: str | None = None  # regex of the host range the workload is about
    # Pace each step (capture/pacing.py): for overlap that happens on the GPU, where a profiled host
    # launching slower than the GPU runs would measure the host. Not for a race of host against GPU.
    head_start: bool = True
    defaults: Mapping[str, Any] = field(default_factory=dict)  # `--set KEY=VALUE` accepts these keys only
    small: Mapping[str, Any] = field(default_factory=dict)  # overrides for --device cpu
    validate: Callable[[dict[str, Any], int], None] | None = None  # (config, world_size): ValueError if it cannot work

    @property
    def baseline_variant(self) -> str:
        return self.baseline or self.variants[0]


def workload(**info: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: `@workload(variants=(...), overlap_region=r"^my/layer$", defaults={...})` on a factory."""
    described = WorkloadInfo(**info)
    if described.baseline_variant not in described.variants:
        raise ValueError(f"baseline {described.baseline!r} is not one of the variants {described.variants}")

    def mark(factory: Callable[..., Any]) -> Callable[..., Any]:
        setattr(factory, INFO_ATTRIBUTE, described)
        return factory

    return mark


@dataclass(frozen=True)
class ResolvedWorkload:
    name: str  # the registered name, or the target itself
    target: str  # package.module:factory
    factory: Callable[..., Any]
    info: WorkloadInfo


def target_of(model: str) -> str:
    """The `package.module:factory` string of a registered name or of a target; BadInput otherwise."""
    if ":" in model:
        return model
    if model in REFERENCE_MODELS:
        return REFERENCE_MODELS[model]
    raise BadInput("MODEL", f"unknown model {model!r} (known: {', '.join(REFERENCE_MODELS)}; "
                            "or your own workload as package.module:factory)")


def resolve(model: str) -> ResolvedWorkload:
    """Import the workload's module and find its factory (this may import torch)."""
    target = target_of(model)
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise BadInput("MODEL", f"{target!r} is not package.module:factory")
    _importable_from_cwd()
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BadInput("MODEL", f"cannot import {module_name!r}: {e}") from None
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise BadInput("MODEL", f"{module_name!r} has no {attr!r}")
    if not callable(factory):
        raise BadInput("MODEL", f"{target!r} is not callable (a factory(config, ctx, variant))")
    info = getattr(factory, INFO_ATTRIBUTE, None) or WorkloadInfo()
    name = model if model in REFERENCE_MODELS else target
    return ResolvedWorkload(name, target, factory, info)


def load_factory(target: str) -> Callable[..., Any]:
    """The factory of a target, in a rank (the parent checked it already)."""
    return resolve(target).factory


def resolve_config(info: WorkloadInfo, small: bool, overrides: Mapping[str, str], world_size: int) -> dict[str, Any]:
    """defaults, then small when asked, then `key=value` overrides cast to the default's type, checked by
    the workload for `world_size` ranks. ValueError names the offending setting."""
    config = dict(info.defaults)
    if small:
        config.update(info.small)
    for key, text in overrides.items():
        if key not in config:
            known = ", ".join(sorted(config)) or "none: the workload declares no defaults"
            raise ValueError(f"unknown key {key!r} (keys: {known})")
        config[key] = cast(key, text, config[key])
    if info.validate is not None:
        info.validate(config, world_size)
    return config


def cast(key: str, text: str, default: Any) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return kind(text)
    except ValueError:
        raise ValueError(f"{key}={text!r}: expected {kind.__name__}") from None


def check_result(result: Any) -> dict[str, Any]:
    """A check's outcome as run.json records it: {ok, max_abs_err (null: not finite or none), detail}.
    A workload without check() (or returning None) is recorded as not checked: ok null."""
    import math

    if result is None:
        return {"ok": None, "max_abs_err": None, "detail": "not checked"}
    if isinstance(result, bool):
        return {"ok": result, "max_abs_err": None, "detail": "passed" if result else "failed"}
    err = float(result.max_abs_err)
    return {"ok": bool(result.numerics_ok), "detail": str(result.detail),
            "max_abs_err": err if math.isfinite(err) else None}


def _importable_from_cwd() -> None:
    """As `python -m` and uvicorn do: a workload module in the current directory can be imported even
    when `overlapscope` runs as a console script (whose sys.path starts at its bin directory)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
