"""overlapscope: how much communication is really hidden under compute, and did the overlap race?

Library first: `load` a run, `analyze` it; the command line is a thin layer over these.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load", "analyze", "BadInput"]


def __getattr__(name: str):
    # keep `import overlapscope` (and so `overlapscope --help`) free of pandas until it is needed
    if name == "load":
        from .pipeline import load

        return load
    if name == "analyze":
        from .overlap import analyze

        return analyze
    if name == "BadInput":
        from .errors import BadInput

        return BadInput
    raise AttributeError(name)
