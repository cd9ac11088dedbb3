"""JSON output (DESIGN.md, "Command line contract")."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode()
