"""Small, structurally faithful reproductions of the overlaps (and races) that overlapscope measures.

The registry below is static data and imports no torch, so a command line can check a model name,
a variant or a `--set` key quickly. Each model module (torch) provides:

    DEFAULTS: dict        sizes for two H200s (docs/reference_models.md gives the arithmetic)
    SMALL: dict           overrides that make the same structure run in a second on a CPU
    validate(config, world_size)   raises ValueError naming a setting that cannot work
    build(config, ctx, variant) -> common.ReferenceModel: forward(step), check(step), components(), close()
"""

from __future__ import annotations

import importlib
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


def resolve_config(name: str, small: bool, overrides: dict[str, str], world_size: int) -> dict[str, Any]:
    """DEFAULTS, then SMALL when asked, then `key=value` overrides cast to the default's type,
    checked by the model for `world_size` ranks. ValueError names the offending setting."""
    module = load(name)
    config = dict(module.DEFAULTS)
    if small:
        config.update(module.SMALL)
    for key, text in overrides.items():
        if key not in config:
            raise ValueError(f"unknown key {key!r} for {name} (keys: {', '.join(sorted(config))})")
        config[key] = _cast(key, text, config[key])
    module.validate(config, world_size)
    return config


def _cast(key: str, text: str, default: Any) -> Any:
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
