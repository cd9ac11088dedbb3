"""One renderer per output format; `render(result, fmt)` is the one door the command line uses.

"json" prints `result.to_dict()` (every JSON contract is a result's to_dict); "console" finds the
console renderer registered for the result's type. Renderers format only: every number they show
was computed by an analysis.
"""

from __future__ import annotations

import importlib
from typing import Any

# result type name -> "module:function" in this package, imported when used (--help stays fast)
CONSOLE = {
    "RunAnalysis": "console:print_run_analysis",
    "Analysis": "console:print_analysis",
    "RaceReport": "races_console:print_races",
    "Diff": "diff_console:print_diff",
    "Trend": "markdown:print_trend",
    "GateResult": "markdown:print_gate",
    "RunResult": "console:print_run",
    "Report": "console:print_report_written",
    "RangeTable": "console:print_ranges",
    "Exported": "console:print_exported",
}
FORMATS = ("console", "json")


def render(result: Any, fmt: str = "console") -> None:
    """Print `result` in `fmt` on standard output."""
    if fmt == "json":
        from .json import dumps

        print(dumps(result.to_dict()))
        return
    name = CONSOLE.get(type(result).__name__)
    if fmt != "console" or name is None:
        raise ValueError(f"no {fmt} renderer for {type(result).__name__}")
    module, function = name.split(":")
    getattr(importlib.import_module(f"{__name__}.{module}"), function)(result)
