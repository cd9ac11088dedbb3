"""Project settings: `[tool.overlapscope]` in pyproject.toml, or an overlapscope.toml.

Keys read here: `comm_patterns` (list of regexes naming extra communication kernels) and the
`gate` table (thresholds for `overlapscope gate`, docs/gate.md). The whole table is kept in
`Config.table` for commands that read more of it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Floor:
    """Thresholds for one scope: the whole trace of every rank (region None) or one region regex."""

    region: str | None
    min_overlap: float | None = None  # percent
    max_exposed_comm_us: float | None = None


@dataclass
class GateSettings:
    floors: list[Floor] = field(default_factory=list)
    max_races: int | None = None  # race findings allowed per rank

    def is_empty(self) -> bool:
        return not self.floors and self.max_races is None


@dataclass
class Config:
    comm_patterns: list[str] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    gate: GateSettings = field(default_factory=GateSettings)


def load_config(path: str | Path | None = None, cwd: str | Path | None = None) -> Config:
    """An explicit file wins; else overlapscope.toml, then pyproject.toml, in `cwd`."""
    if path is not None:
        return _read(Path(path), required=True)
    here = Path(cwd or Path.cwd())
    for candidate in (here / "overlapscope.toml", here / "pyproject.toml"):
        if candidate.is_file():
            config = _read(candidate, required=False)
            if config.source:
                return config
    return Config()


def _read(path: Path, required: bool) -> Config:
    if not path.is_file():
        raise BadInput(path, "no such configuration file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInput(path, f"not valid TOML: {e}") from None
    table = doc.get("tool", {}).get("overlapscope") if path.name == "pyproject.toml" else doc
    if table is None:
        if required:
            raise BadInput(path, "has no [tool.overlapscope] table")
        return Config()
    patterns = table.get("comm_patterns", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise BadInput(path, "comm_patterns must be a list of regular expressions (strings)")
    gate = _gate_settings(path, table.get("gate", {}))
    return Config(comm_patterns=list(patterns), table=table, source=str(path), gate=gate)


_FLOOR_KEYS = {"min_overlap", "max_exposed_comm_us"}


def _gate_settings(path: Path, gate: Any) -> GateSettings:
    """The gate table; unknown keys are errors, so a misspelt threshold never passes silently."""
    if not isinstance(gate, dict):
        raise BadInput(path, "gate must be a table ([tool.overlapscope.gate])")
    unknown = set(gate) - _FLOOR_KEYS - {"max_races", "regions"}
    if unknown:
        raise BadInput(path, f"gate: unknown key(s) {', '.join(sorted(unknown))} "
                             "(known: min_overlap, max_exposed_comm_us, max_races, regions)")
    floors = []
    if _FLOOR_KEYS & set(gate):
        floors.append(_floor(path, "gate", None, gate))
    regions = gate.get("regions", [])
    if not isinstance(regions, list):
        raise BadInput(path, "gate.regions must be an array of tables ([[tool.overlapscope.gate.regions]])")
    for i, entry in enumerate(regions):
        where = f"gate.regions[{i}]"
        if not isinstance(entry, dict):
            raise BadInput(path, f"{where} must be a table with region, min_overlap and/or max_exposed_comm_us")
        unknown = set(entry) - _FLOOR_KEYS - {"region"}
        if unknown:
            raise BadInput(path, f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                                 "(known: region, min_overlap, max_exposed_comm_us)")
        region = entry.get("region")
        if not isinstance(region, str) or not region:
            raise BadInput(path, f"{where}: region must be a non-empty regular expression (string)")
        if not _FLOOR_KEYS & set(entry):
            raise BadInput(path, f"{where} ({region!r}): give min_overlap and/or max_exposed_comm_us")
        floors.append(_floor(path, where, region, entry))
    max_races = gate.get("max_races")
    if max_races is not None and (isinstance(max_races, bool) or not isinstance(max_races, int) or max_races < 0):
        raise BadInput(path, "gate.max_races must be a whole number >= 0")
    return GateSettings(floors=floors, max_races=max_races)


def _floor(path: Path, where: str, region: str | None, entry: dict[str, Any]) -> Floor:
    min_overlap = _number(path, f"{where}.min_overlap", entry.get("min_overlap"), 0.0, 100.0)
    max_exposed = _number(path, f"{where}.max_exposed_comm_us", entry.get("max_exposed_comm_us"), 0.0, math.inf)
    return Floor(region=region, min_overlap=min_overlap, max_exposed_comm_us=max_exposed)


def _number(path: Path, key: str, value: Any, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise BadInput(path, f"{key} must be a number from {lo:g} to {hi:g}, not {value!r}")
    return float(value)
