"""A run that started and then failed (a rank raised, a profiler broke): exit code 1, not 2."""

from __future__ import annotations


class RunFailed(Exception):
    """The run started, then a rank or the profiler failed."""
