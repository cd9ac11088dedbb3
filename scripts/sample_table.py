"""The README's table of what the reference models' sample traces show, measured from the traces.

    python scripts/sample_table.py            # print the table (Markdown)
    python scripts/sample_table.py --write    # replace the table between its markers in README.md

Every number comes from `sample_traces/<model>/<variant>/<profiler>/`: overlap of the model's
region (overlapscope, per rank), GPU step time and numerics failures (the run's own run.json),
races (overlapscope's race checker). tests/test_sample_traces.py checks the README against it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from overlapscope.overlap import analyze  # noqa: E402
from overlapscope.races.check import check_races  # noqa: E402
from overlapscope.races.findings import Finding  # noqa: E402
from overlapscope.trace.load import load  # noqa: E402
from reference_models import MODELS  # noqa: E402

SAMPLES = REPO / "sample_traces"
README = REPO / "README.md"
BEGIN, END = "<!-- sample-table: scripts/sample_table.py --write -->", "<!-- /sample-table -->"
PROFILERS = ("torch", "nsys")


@dataclass
class Sample:
    model: str
    variant: str
    profiler: str
    overlap_pct: list[float | None]  # per rank, of the model's region
    step_ms: float  # mean GPU step time over ranks and steps
    failed: int  # rank-steps whose numerics check failed
    checked: int
    findings: list[Finding]  # the race checker's
    notes: list[str]

    @property
    def races(self) -> Counter:
        """(rule, kind) -> how many findings"""
        return Counter((f.rule, f.kind) for f in self.findings)


def sample_dirs() -> list[tuple[str, str, str, Path]]:
    """(model, variant, profiler, directory) of every captured sample, in registry order."""
    return [(m, v, p, SAMPLES / m / v / p) for m, spec in MODELS.items() for v in spec.variants
            for p in PROFILERS if (SAMPLES / m / v / p / "run.json").exists()]


def measure(model: str, variant: str, profiler: str, path: Path) -> Sample:
    manifest = json.loads((path / "run.json").read_text())
    trace = load([path])
    regions = analyze(trace, [manifest["overlap_region"]]).regions
    times = [t for rank in manifest["step_times_ms"] for t in rank]
    checks = [c for rank in manifest["numerics"] for c in rank]
    report = check_races(trace)
    return Sample(model, variant, profiler, [r.overlap_pct for r in sorted(regions, key=lambda r: r.rank)],
                  sum(times) / len(times), sum(not c["ok"] for c in checks), len(checks), report.findings,
                  report.notes)


def markdown(samples: list[Sample]) -> str:
    baseline = {(s.model, s.profiler): s.step_ms for s in samples if MODELS[s.model].baseline == s.variant}
    lines = ["| model | variant | profiler | overlap of the region (rank 0 / 1) | GPU step, ms (vs baseline) "
             "| numerics failed | races found (findings) |", "|---|---|---|---|---|---|---|"]
    for s in samples:
        overlap = " / ".join("n/a" if p is None else f"{p:.1f} %" for p in s.overlap_pct)
        base = baseline.get((s.model, s.profiler))
        step = f"{s.step_ms:.2f}" + ("" if base is None or s.variant == MODELS[s.model].baseline
                                     else f" ({100 * (s.step_ms / base - 1):+.1f} %)")
        races = ", ".join(f"{rule} {kind} ×{n}" for (rule, kind), n in sorted(s.races.items())) or "none"
        lines.append(f"| {s.model} | {s.variant} | {s.profiler} | {overlap} | {step} | {s.failed}/{s.checked} "
                     f"| {races} |")
    return "\n".join(lines)


def measure_all() -> list[Sample]:
    return [measure(*d) for d in sample_dirs()]


def with_table(readme: str, text: str) -> str:
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{text}\n{END}{tail}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="replace the table in README.md")
    text = markdown(measure_all())
    if p.parse_args().write:
        README.write_text(with_table(README.read_text(), text))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
