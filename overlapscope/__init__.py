"""overlapscope: how much communication is really hidden under compute, and did the overlap race?

Library first: `load` a run, `analyze` it; the command line is a thin layer over these. The public
API is `__all__`; everything else (`overlapscope.report`, `overlapscope.renderers`, ...) may change.
"""

from __future__ import annotations

from typing import Any, Sequence

__version__ = "0.1.0"

__all__ = ["__version__", "load", "analyze", "check_races", "attribute", "timeline_svg", "format_ns",
           "format_pct", "BadInput"]

# name -> (module, attribute), imported on first use
_LAZY = {
    "load": (".pipeline", "load"),
    "analyze": (".overlap", "analyze"),
    "check_races": (".races", "check_races"),
    "attribute": (".attribution", "attribute"),
    "BadInput": (".errors", "BadInput"),
}


def __getattr__(name: str):
    # keep `import overlapscope` (and so `overlapscope --help`) free of pandas until it is needed
    if name in _LAZY:
        from importlib import import_module

        module, attr = _LAZY[name]
        return getattr(import_module(module, __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def timeline_svg(trace: Any, rank: int, regions: Sequence[str] = (), step: str | None = None, *,
                 races: Any = None, width: int = 960) -> str:
    """A static SVG (a string) of one rank's timeline: a lane per stream, comm hidden / exposed, a lane
    per region regex and the profiler steps, windowed to the `ProfilerStep#N` named `step` (default:
    the median step by GPU span; the whole trace when there are no steps). `races`: a RaceReport
    (`check_races`) whose findings on the rank are marked. In a notebook: `IPython.display.SVG(...)`."""
    from .renderers.svg import rank_svg

    return rank_svg(trace, rank, regions, step, races=races, width=width)


def format_ns(ns: Any) -> str:
    """A duration in ns as the reports print it ("850 ns", "12.3 µs", "1.25 ms"); "n/a" for None/NaN."""
    from .renderers.format import NOT_APPLICABLE, duration

    return NOT_APPLICABLE if ns is None or ns != ns else duration(int(ns))


def format_pct(value: Any) -> str:
    """A percentage as the reports print it ("87.6 %"); "n/a" for None/NaN (overlap not applicable)."""
    from .renderers.format import pct

    return pct(None if value is None or value != value else float(value))
