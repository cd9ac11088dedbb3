"""Launching a workload (a reference model, or your own `package.module:factory`) on N ranks under a
profiler, and the run.json manifest.

Importing this package imports no torch (and never reference_models): the rank-side modules (launch,
worker, profilers, context) import torch when they run, and workloads are imported by name when a run
asks for them (workloads.py).
"""

from .errors import RunFailed
from .plan import RunRequest
from .runner import RunOutcome, measure_components, run_model
from .workloads import REFERENCE_MODELS, StepResult, WorkloadInfo, workload

__all__ = ["REFERENCE_MODELS", "RunFailed", "RunOutcome", "RunRequest", "StepResult", "WorkloadInfo",
           "measure_components", "run_model", "workload"]
