"""Small, structurally faithful reproductions of the overlaps (and races) that overlapscope measures.

Each model is an overlapscope workload (docs/reference_models.md, "Your own workload"): overlapscope
registers it by name (overlapscope.capture.workloads.REFERENCE_MODELS, a "module:build" string it imports
lazily) and never imports this package. The table below is static data and imports no torch; each
model module (torch) provides:

    DEFAULTS: dict        sizes for two H200s (docs/reference_models.md gives the arithmetic)
    SMALL: dict           overrides that make the same structure run in a second on a CPU
    validate(config, world_size)   raises ValueError naming a setting that cannot work
    build(config, ctx, variant) -> common.ReferenceModel: forward(step), check(step), components(), close(),
        marked with `@registered(NAME, ...)`: this table's entry as the workload's overlapscope metadata
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    name: str
    module: str
    variants: tuple[str, ...]
    baseline: str  # the variant whose result every other variant must reproduce
    buggy: tuple[str, ...]  # variants that contain the intended race
    overlap_region: str  # regex of the region whose overlap the model is about
    # Its overlap is GPU-side: the runner aligns the ranks' GPUs and gives the host a head start before each
    # step (overlapscope/capture/pacing.py). Not for the staging transfer, whose race is host against GPU.
    head_start: bool


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="deepseek_v4_tbo",
            module="reference_models.deepseek_v4_tbo",
            variants=("inline", "comm-stream", "wrong-join"),
            baseline="inline",
            buggy=("wrong-join",),
            overlap_region=r"^tbo/block$",
            head_start=True,
        ),
        ModelSpec(
            name="deepseek_v32_nsa_cp",
            module="reference_models.deepseek_v32_nsa_cp",
            variants=("serial", "alt-stream", "missing-join"),
            baseline="serial",
            buggy=("missing-join",),
            overlap_region=r"^nsa_cp/indexer$",
            head_start=True,
        ),
        ModelSpec(
            name="staging_transfer",
            module="reference_models.staging_transfer",
            variants=("synced", "unsynced", "event"),
            baseline="synced",
            buggy=("unsynced",),
            overlap_region=r"^staging/transfer$",
            head_start=False,
        ),
    )
}


def spec(name: str) -> ModelSpec:
    """The registry entry of a model; KeyError names the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(MODELS)})") from None


def load(name: str) -> ModuleType:
    """The model's module (this imports torch)."""
    return importlib.import_module(spec(name).module)


def registered(name: str, defaults: Mapping[str, Any], small: Mapping[str, Any],
               validate: Callable[[dict[str, Any], int], None]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a model module's `build` as the overlapscope workload described by this table's entry."""
    from overlapscope.capture.workloads import workload

    s = spec(name)
    return workload(variants=s.variants, baseline=s.baseline, buggy=s.buggy, overlap_region=s.overlap_region,
                    head_start=s.head_start, defaults=defaults, small=small, validate=validate)


def resolve_config(name: str, small: bool, overrides: dict[str, str], world_size: int) -> dict[str, Any]:
    """DEFAULTS, then SMALL when asked, then `key=value` overrides cast to the default's type,
    checked by the model for `world_size` ranks. ValueError names the offending setting."""
    from overlapscope.capture.workloads import INFO_ATTRIBUTE
    from overlapscope.capture.workloads import resolve_config as resolve

    return resolve(getattr(load(name).build, INFO_ATTRIBUTE), small, overrides, world_size)
