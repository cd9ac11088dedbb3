"""Project settings: `[tool.overlapscope]` in pyproject.toml, or an overlapscope.toml.

Keys read here (KNOWN_KEYS): `comm_patterns` (regexes naming extra communication kernels),
`exclude_kernels` (regexes naming kernels to leave out) and the `gate` table (thresholds for
`overlapscope gate`, docs/gate.md). Any other key in overlapscope's own table is bad input with a
did-you-mean; other tools' tables in pyproject.toml are never looked at. An overlapscope.toml may
also hold a `[tool.overlapscope]` table copied from a pyproject.toml (then nothing else). The whole
table is kept in `Config.table`.
"""

from __future__ import annotations

import math
import re
import sys
from difflib import get_close_matches
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
    allow_unchecked: bool = False  # let max_races pass when memory accesses could not be checked

    def is_empty(self) -> bool:
        return not self.floors and self.max_races is None


@dataclass
class Config:
    comm_patterns: list[str] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    gate: GateSettings = field(default_factory=GateSettings)
    exclude_kernels: list[str] = field(default_factory=list)


# Every key overlapscope reads from its own table. Any other key there is an error (a misspelt setting
# must never pass silently), so a new setting is added here and read in _build.
KNOWN_KEYS = ("comm_patterns", "exclude_kernels", "gate")
_GATE_KEYS = ("min_overlap", "max_exposed_comm_us", "max_races", "allow_unchecked", "regions")
_REGION_KEYS = ("region", "min_overlap", "max_exposed_comm_us")
_FLOOR_KEYS = {"min_overlap", "max_exposed_comm_us"}
_OWN = "overlapscope"  # our name under [tool]
_PYPROJECT_PREFIX = "tool.overlapscope."


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
        raise BadInput(path, f"not valid TOML: {_one_line(str(e))}") from None
    except OSError as e:
        raise BadInput(path, f"cannot read it: {e.strerror}") from None
    if path.name == "pyproject.toml":
        table, prefix = _tool_table(path, doc.get("tool", {})), _PYPROJECT_PREFIX
    else:
        table, prefix = _own_file_table(path, doc)
    if table is None:
        if required:
            raise BadInput(path, "has no [tool.overlapscope] table")
        return Config()
    return _build(path, table, prefix)


def _tool_table(path: Path, tool: Any) -> dict[str, Any] | None:
    """[tool.overlapscope] of a `tool` table: None when absent, an error when misshapen or misspelt."""
    if not isinstance(tool, dict):
        raise BadInput(path, f"tool must be a table (as in [tool.overlapscope]), not {_kind(tool)}")
    if _OWN not in tool:
        # a near miss such as [tool.overlapscop] is ours misspelt, not another tool's: never ignore it
        near = get_close_matches(_OWN, [k for k in tool], n=1, cutoff=0.8)
        if near:
            raise BadInput(path, f"[tool.{_name(near[0])}]: did you mean [tool.overlapscope]?")
        return None
    table = tool[_OWN]
    if not isinstance(table, dict):
        raise BadInput(path, f"[tool.overlapscope] must be a table, not {_kind(table)}")
    return table


def _own_file_table(path: Path, doc: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """An overlapscope.toml holds our keys at the top level, or (copied from a pyproject.toml) under
    [tool.overlapscope]; never both, and never other tools' tables."""
    if "tool" not in doc:
        return doc, ""
    table = _tool_table(path, doc["tool"])
    others = sorted(set(doc) - {"tool"})
    if others:
        raise BadInput(path, f"holds both [tool.overlapscope] and top-level keys ({_names(others)}): use one")
    foreign = sorted(set(doc["tool"]) - {_OWN})
    if foreign:
        raise BadInput(path, f"[tool.{_name(foreign[0])}]: an overlapscope file holds only [tool.overlapscope]; "
                             "other tools' settings belong in pyproject.toml")
    return table, _PYPROJECT_PREFIX


def _build(path: Path, table: dict[str, Any], prefix: str) -> Config:
    _refuse_unknown(path, prefix.rstrip("."), table, KNOWN_KEYS)
    return Config(comm_patterns=_patterns(path, f"{prefix}comm_patterns", table.get("comm_patterns")),
                  exclude_kernels=_patterns(path, f"{prefix}exclude_kernels", table.get("exclude_kernels")),
                  table=table, source=str(path), gate=_gate_settings(path, table.get("gate", {}), prefix))


def _patterns(path: Path, key: str, value: Any) -> list[str]:
    """A list of regexes, each compiled here so that a bad one names this file, not a flag."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise BadInput(path, f"{key} must be a list of regular expressions (strings)")
    for i, pattern in enumerate(value):
        try:
            re.compile(pattern)
        except re.error as e:
            raise BadInput(path, f"{key}[{i}] is not a valid regular expression: {e}") from None
    return list(value)


def _refuse_unknown(path: Path, where: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
    """One line naming every unknown key of `table`, each with its nearest known key when there is one."""
    unknown = sorted(set(table) - set(known))
    if not unknown:
        return
    named = []
    for key in unknown:
        near = get_close_matches(key, known, n=1)
        named.append(f"{_name(key)} (did you mean '{near[0]}'?)" if near else _name(key))
    label = f"{where}: " if where else ""
    raise BadInput(path, f"{label}unknown key(s) {', '.join(named)}; known: {', '.join(known)}")


def _gate_settings(path: Path, gate: Any, prefix: str = "") -> GateSettings:
    """The gate table; unknown keys are errors, so a misspelt threshold never passes silently."""
    where = f"{prefix}gate"
    if not isinstance(gate, dict):
        raise BadInput(path, f"{where} must be a table ([tool.overlapscope.gate], or [gate] in overlapscope.toml), "
                             f"not {_kind(gate)}")
    _refuse_unknown(path, where, gate, _GATE_KEYS)
    floors = []
    if _FLOOR_KEYS & set(gate):
        floors.append(_floor(path, where, None, gate))
    regions = gate.get("regions", [])
    if not isinstance(regions, list):
        raise BadInput(path, f"{where}.regions must be an array of tables ([[tool.overlapscope.gate.regions]])")
    for i, entry in enumerate(regions):
        floors.append(_region_floor(path, f"{where}.regions[{i}]", entry))
    max_races = gate.get("max_races")
    if max_races is not None and (isinstance(max_races, bool) or not isinstance(max_races, int) or max_races < 0):
        raise BadInput(path, f"{where}.max_races must be a whole number >= 0")
    allow_unchecked = gate.get("allow_unchecked", False)
    if not isinstance(allow_unchecked, bool):
        raise BadInput(path, f"{where}.allow_unchecked must be true or false")
    return GateSettings(floors=floors, max_races=max_races, allow_unchecked=allow_unchecked)


def _region_floor(path: Path, where: str, entry: Any) -> Floor:
    if not isinstance(entry, dict):
        raise BadInput(path, f"{where} must be a table with region, min_overlap and/or max_exposed_comm_us")
    _refuse_unknown(path, where, entry, _REGION_KEYS)
    region = entry.get("region")
    if not isinstance(region, str) or not region:
        raise BadInput(path, f"{where}: region must be a non-empty regular expression (string)")
    if not _FLOOR_KEYS & set(entry):
        raise BadInput(path, f"{where} ({region!r}): give min_overlap and/or max_exposed_comm_us")
    return _floor(path, where, region, entry)


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


def _kind(value: Any) -> str:
    """What a TOML value is, for messages: 'a string', 'an array', ..."""
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "an array"}
    return names.get(type(value), f"a {type(value).__name__}")


def _name(key: str) -> str:
    """A key as it can be printed on one line: quoted TOML keys may hold anything."""
    return key if re.fullmatch(r"[\w.-]+", key) else repr(key)


def _names(keys: list[str]) -> str:
    return ", ".join(_name(k) for k in keys)


def _one_line(text: str) -> str:
    return " ".join(text.split())
