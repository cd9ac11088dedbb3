"""Launching a reference model on N ranks under a profiler, and the run.json manifest.

Importing this package imports no torch: the rank-side modules (launch, worker, profilers) import it
when they run.
"""

from .errors import RunFailed
from .plan import RunRequest
from .runner import RunOutcome, measure_components, run_model

__all__ = ["RunFailed", "RunOutcome", "RunRequest", "measure_components", "run_model"]
