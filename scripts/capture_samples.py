"""Capture the sample traces: every reference model and variant on the GPUs of this host, under the
torch profiler and under Nsight Systems, into OUT/<model>/<variant>/{torch,nsys}/, then one table.

    python scripts/capture_samples.py                  # everything (about 5 minutes on 2 x H200)
    python scripts/capture_samples.py --timings        # each overlapped part alone, to check the sizes
    python scripts/capture_samples.py --only deepseek_v4_tbo/wrong-join --profilers torch

Each run is its own `overlapscope run` process with a time limit, so a run that fails or hangs is
recorded in the table and the others go on. Run from the project root (after `source .device/env.sh`
on the GPU machines).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import reference_models  # noqa: E402

SIZE_BUDGET_MB = 40


@dataclass
class Row:
    model: str
    variant: str
    profiler: str
    seconds: float
    step_ms: float | None = None
    failures: str = "-"
    overlap: str = "-"
    size_mb: float = 0.0
    error: str = ""


def main() -> int:
    args = _parse()
    selected = _select(args.only)
    if args.timings:
        _print_timings(selected, args)
        return 0
    rows = []
    for model, variant in selected:
        for profiler in args.profilers.split(","):
            row = _capture(model, variant, profiler, args)
            print(f"  {model}/{variant}/{profiler}: {row.seconds:.0f} s {row.error}", file=sys.stderr, flush=True)
            rows.append(row)
    _print_table(rows)
    total = sum(r.size_mb for r in rows)
    print(f"\n{len(rows)} runs, {sum(bool(r.error) for r in rows)} failed, {total:.1f} MB in {args.out}"
          + (f"  (over the {SIZE_BUDGET_MB} MB budget)" if total > SIZE_BUDGET_MB else ""))
    return 0


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "sample_traces")
    p.add_argument("--profilers", default="torch,nsys")
    p.add_argument("--only", action="append", default=[], metavar="MODEL[/VARIANT]")
    p.add_argument("--world-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="size override, passed to every selected model (use with --only)")
    p.add_argument("--timeout", type=int, default=150, help="seconds before one run counts as hung")
    p.add_argument("--timings", action="store_true", help="time each overlapped part alone instead of capturing")
    return p.parse_args()


def _select(only: list[str]) -> list[tuple[str, str]]:
    pairs = [(m, v) for m, spec in reference_models.MODELS.items() for v in spec.variants]
    if not only:
        return pairs
    wanted = [tuple(item.split("/", 1)) for item in only]
    return [(m, v) for m, v in pairs if any(w[0] == m and (len(w) == 1 or w[1] == v) for w in wanted)]


def _capture(model: str, variant: str, profiler: str, args: argparse.Namespace) -> Row:
    out = args.out / model / variant / profiler
    cmd = [sys.executable, "-m", "overlapscope", "run", model, "--variant", variant, "--profiler", profiler,
           "--world-size", str(args.world_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--device", "cuda", "--out", str(out), *(a for item in args.set for a in ("--set", item))]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return Row(model, variant, profiler, time.monotonic() - start, error=f"timed out after {args.timeout} s")
    row = Row(model, variant, profiler, time.monotonic() - start, size_mb=_size_mb(out))
    if proc.returncode != 0:
        row.error = _last_line(proc.stderr or proc.stdout)
        return row
    manifest = json.loads((out / "run.json").read_text())
    times = [t for rank in manifest["step_times_ms"] for t in rank]
    checks = [c for rank in manifest["numerics"] for c in rank]
    row.step_ms = sum(times) / len(times)
    row.failures = f"{sum(not c['ok'] for c in checks)}/{len(checks)}"
    row.overlap = _overlap(out, manifest["overlap_region"])
    return row


def _overlap(out: Path, region: str) -> str:
    """Mean over ranks of the overlap % of the model's region, measured by overlapscope."""
    from overlapscope.errors import BadInput
    from overlapscope.overlap import analyze
    from overlapscope.pipeline import load

    try:
        rows = analyze(load([out]), [region]).regions
    except BadInput as e:
        return f"error: {e.problem}"
    pcts = [r.overlap_pct for r in rows if r.overlap_pct is not None]
    if not pcts:
        return "n/a (no comm)"
    return f"{sum(pcts) / len(pcts):.1f} %" + (f" ({min(pcts):.1f}-{max(pcts):.1f})" if len(pcts) > 1 else "")


def _print_table(rows: list[Row]) -> None:
    head = ("model", "variant", "profiler", "step ms", "numerics fail", "overlap of region", "MB", "s")
    body = [(r.model, r.variant, r.profiler, "-" if r.step_ms is None else f"{r.step_ms:.3f}", r.failures,
             r.overlap, f"{r.size_mb:.1f}", f"{r.seconds:.0f}") for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    for line in (head, *body):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))
    for r in rows:
        if r.error:
            print(f"FAILED {r.model}/{r.variant}/{r.profiler}: {r.error}")


def _print_timings(selected: list[tuple[str, str]], args: argparse.Namespace) -> None:
    """Each model's overlapped parts alone (its baseline variant), in ms: comm and compute should be comparable."""
    from overlapscope.capture import RunFailed, RunRequest, measure_components
    from overlapscope.errors import BadInput

    for model in dict.fromkeys(m for m, _ in selected):
        request = RunRequest(model, world_size=args.world_size, device="cuda", warmup=args.warmup,
                             overrides=list(args.set))
        try:
            ranks = measure_components(request)
        except (BadInput, RunFailed) as e:
            print(f"{model}: {e}")
            continue
        print(f"{model} on {ranks[0]['gpu_name']}: ms per run, max over {len(ranks)} ranks "
              "(GPU time queued behind a head start; host time to launch it)")
        for name in ranks[0]["components_ms"]:
            gpu = max(r["components_ms"][name]["gpu"] for r in ranks)
            launch = max(r["components_ms"][name]["launch"] for r in ranks)
            print(f"  {name:45s} GPU {gpu:8.3f}   launch {launch:8.3f}")


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6 if path.exists() else 0.0


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


if __name__ == "__main__":
    sys.exit(main())
