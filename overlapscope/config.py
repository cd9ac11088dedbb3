"""Project settings: `[tool.overlapscope]` in pyproject.toml, or an overlapscope.toml.

Keys read here: `comm_patterns` (list of regexes naming extra communication kernels).
The whole table is kept in `Config.table` for the commands that read more of it (gate).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class Config:
    comm_patterns: list[str] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    source: str | None = None


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
    return Config(comm_patterns=list(patterns), table=table, source=str(path))
