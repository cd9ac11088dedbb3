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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from overlapscope import intervals as iv  # noqa: E402
from overlapscope.overlap import analyze  # noqa: E402
from overlapscope.trace.links import launch_points, launched_in_region  # noqa: E402
from overlapscope.races.check import check_races  # noqa: E402
from overlapscope.races.findings import Finding  # noqa: E402
from overlapscope.pipeline import load  # noqa: E402
from reference_models import MODELS  # noqa: E402

SAMPLES = REPO / "sample_traces"
README = REPO / "README.md"
BEGIN, END = "<!-- sample-table: scripts/sample_table.py --write -->", "<!-- /sample-table -->"
PROFILERS = ("torch", "nsys")
# the variants whose overlap the README explains: where their exposed communication is
OVERLAPPED = {"deepseek_v4_tbo": ("comm-stream",), "deepseek_v32_nsa_cp": ("alt-stream",)}
# the buggy variant whose race never bit in the captures: the README shows why, from these traces
LATENT = ("deepseek_v32_nsa_cp", "missing-join")
# The parts each model overlaps, as region regexes: (what, communication, what, compute it hides under).
# Measured in the baseline, where they run one after the other, so neither slows the other down.
PARTNERS = {
    "deepseek_v4_tbo": ("DP all-gathers + TP all-reduces", r"^tbo/l\d+/mb\d+/(?:dp_allgather|combine_outputs)$",
                        "attention + MoE", r"^tbo/l\d+/mb\d+/(?:attention|moe)$"),
    "deepseek_v32_nsa_cp": ("key all-gather", r"^nsa_cp/indexer/key_allgather$",
                            "query RoPE + rotation", r"^nsa_cp/indexer/query_rotation$"),
}


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
    unchecked_pairs: int  # access pairs it could not order either way (unresolved waits)
    partners_ms: tuple[float, float] | None  # baselines: (comm, compute) of PARTNERS per rank-step
    exposed_us: tuple[float, float, float] | None  # overlapped variants: (comm, exposed, exposed in the
    # step's last collective) of the model's region, per rank-step
    latent_us: tuple[float, float, float] | None  # V3.2 missing-join: see _latent_timing_us

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
    partners = None
    if model in PARTNERS and variant == MODELS[model].baseline:
        _, comm, _, compute = PARTNERS[model]
        partners = (_busy_ms(trace, comm, "comm") / len(times), _busy_ms(trace, compute, "compute") / len(times))
    exposed = _exposed_us(trace, manifest["overlap_region"]) if variant in OVERLAPPED.get(model, ()) else None
    return Sample(model, variant, profiler, [r.overlap_pct for r in sorted(regions, key=lambda r: r.rank)],
                  sum(times) / len(times), sum(not c["ok"] for c in checks), len(checks), report.findings,
                  report.unchecked_pairs, partners, exposed,
                  _latent_timing_us(trace) if (model, variant) == LATENT else None)


def _rank_steps(trace, launch):
    """(ops of the rank, ops launched in the step) masks over trace.gpu_ops, for each rank and step."""
    ops, ranges = trace.gpu_ops, trace.ranges
    for rank in np.unique(ops["rank"].to_numpy()):
        mine = (ops["rank"] == rank).to_numpy()
        steps = ranges[(ranges["rank"] == rank).to_numpy() & (ranges["source"] == "profiler_step").to_numpy()]
        for step in steps.itertuples(index=False):
            yield mine, (launch.time >= step.start) & (launch.time < step.end)


def _exposed_us(trace, regex: str) -> tuple[float, float, float]:
    """Mean per rank-step (µs): the region's comm time, the part of it no compute covered, and the
    part of that in the step's last collective (which has no compute after it to hide under)."""
    ops, launch = trace.gpu_ops, launch_points(trace)
    comm_in_region = launched_in_region(trace, regex, launch) & (ops["op_class"] == "comm").to_numpy()
    is_compute = (ops["op_class"] == "compute").to_numpy()
    start, end = ops["start"].to_numpy(), ops["end"].to_numpy()
    rows = []
    for mine, in_step in _rank_steps(trace, launch):
        compute = iv.union(start[mine & is_compute], end[mine & is_compute])
        comm = np.flatnonzero(mine & in_step & comm_in_region)
        if not comm.size:
            continue
        last = comm[np.argmax(start[comm])]
        rows.append((iv.measure(iv.union(start[comm], end[comm])),
                     iv.measure(iv.difference(iv.union(start[comm], end[comm]), compute)),
                     iv.measure(iv.difference(iv.union(start[[last]], end[[last]]), compute))))
    return tuple(float(x) / 1e3 for x in np.mean(rows, axis=0))


def _latent_timing_us(trace) -> tuple[float, float, float]:
    """V3.2 missing-join, median over rank-steps (µs after the key all-gather began): when the
    gather ended, when the re-arrangement that writes the keys ended, when the first logits kernel
    (the unjoined reader of the keys) started. The race bites only if the last comes before the second."""
    ops, launch = trace.gpu_ops, launch_points(trace)
    start, end = ops["start"].to_numpy(), ops["end"].to_numpy()
    gather = launched_in_region(trace, r"^nsa_cp/indexer/key_allgather$", launch) & (ops["op_class"] == "comm").to_numpy()
    rearrange = launched_in_region(trace, r"^osacc:zigzag_rearrange\|", launch)
    logits = launched_in_region(trace, r"^nsa_cp/indexer/logits$", launch) & (ops["op_class"] == "compute").to_numpy()
    rows = []
    for mine, in_step in _rank_steps(trace, launch):
        g, r, q = (np.flatnonzero(mine & in_step & m) for m in (gather, rearrange, logits))
        t0 = start[g].min()
        rows.append((end[g].max() - t0, end[r].max() - t0, start[q].min() - t0))
    return tuple(float(x) / 1e3 for x in np.median(rows, axis=0))


def _busy_ms(trace, regex: str, op_class: str) -> float:
    """Time (ms, summed over ranks) the GPU ran ops of `op_class` launched inside the region."""
    ops = trace.gpu_ops
    mask = launched_in_region(trace, regex) & (ops["op_class"] == op_class).to_numpy()
    total = 0
    for rank in np.unique(ops["rank"].to_numpy()):
        mine = mask & (ops["rank"] == rank).to_numpy()
        total += iv.measure(iv.union(ops["start"].to_numpy()[mine], ops["end"].to_numpy()[mine]))
    return total / 1e6


def markdown(samples: list[Sample]) -> str:
    baseline = {(s.model, s.profiler): s.step_ms for s in samples if MODELS[s.model].baseline == s.variant}
    lines = ["| model | variant | profiler | overlap of the region (rank 0 / 1) | GPU step, ms (vs baseline) "
             "| numerics failed | races found (findings; pairs left unchecked) |", "|---|---|---|---|---|---|---|"]
    for s in samples:
        overlap = " / ".join("n/a" if p is None else f"{p:.1f} %" for p in s.overlap_pct)
        base = baseline.get((s.model, s.profiler))
        step = f"{s.step_ms:.2f}" + ("" if base is None or s.variant == MODELS[s.model].baseline
                                     else f" ({100 * (s.step_ms / base - 1):+.1f} %)")
        races = ", ".join(f"{rule} {kind} ×{n}" for (rule, kind), n in sorted(s.races.items())) or "none"
        if s.unchecked_pairs:
            races += f" ({s.unchecked_pairs} pairs unchecked)"
        lines.append(f"| {s.model} | {s.variant} | {s.profiler} | {overlap} | {step} | {s.failed}/{s.checked} "
                     f"| {races} |")
    lines += ["", "The parts each model overlaps, measured in its baseline, where they run one after the other "
              "(GPU time per rank and step):", "",
              "| model (baseline) | profiler | communication | ms | compute it hides under | ms | compute / comm |",
              "|---|---|---|---|---|---|---|"]
    for s in samples:
        if s.partners_ms:
            comm_what, _, compute_what, _ = PARTNERS[s.model]
            comm, compute = s.partners_ms
            lines.append(f"| {s.model} ({s.variant}) | {s.profiler} | {comm_what} | {comm:.3f} | {compute_what} "
                         f"| {compute:.3f} | {compute / comm:.2f} |")
    lines += ["", "Where the overlapped variants' exposed communication is (in the region, µs per rank and step):", "",
              "| model | variant | profiler | communication | exposed | of it, in the step's last collective |",
              "|---|---|---|---|---|---|"]
    for s in samples:
        if s.exposed_us:
            comm, exposed, last = s.exposed_us
            lines.append(f"| {s.model} | {s.variant} | {s.profiler} | {comm:,.0f} | {exposed:,.0f} "
                         f"({100 * exposed / comm:.1f} %) | {last:,.0f} |")
    lines += ["", "Why `missing-join` never bit: µs after its key all-gather began (median over rank-steps):", "",
              "| profiler | gather ended | re-arrangement (writes the keys) ended | first logits kernel (reads them) "
              "started |", "|---|---|---|---|"]
    for s in samples:
        if s.latent_us:
            lines.append(f"| {s.profiler} | " + " | ".join(f"{t:.0f}" for t in s.latent_us) + " |")
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
