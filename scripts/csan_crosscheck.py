"""What PyTorch's CUDA sanitizer (CSAN) says about each reference model and variant, for the race
checker's cross-check table.

    python scripts/csan_crosscheck.py [--json csan.json] [--steps 4] [--only MODEL[/VARIANT]]

CSAN is switched on at `import torch` by TORCH_CUDA_SANITIZER=1, so every variant runs in a fresh
process (which spawns its ranks; they inherit the variable). CSAN raises at the first kernel of a
step whose access races an earlier one; the rank records it, drains the GPU and goes on with the next
step (every rank raises at the same op, so their collectives stay in step). Reported per variant:
how many steps CSAN flagged, how many errors it raised, and the first error's message.

CSAN only sees tensors passed through the dispatcher on the thread where it was enabled: the
staging transfer's gather and read run on the transfer engine's thread, which it does not watch
(as it could never watch a NIC's RDMA read).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import reference_models  # noqa: E402


def main() -> int:
    args = _parse()
    if args.one:
        _run_one(*args.one, args)
        return 0
    pairs = [(m, v) for m, spec in reference_models.MODELS.items() for v in spec.variants
             if not args.only or any(o in (m, f"{m}/{v}") for o in args.only)]
    report: dict[str, dict[str, Any]] = {}
    for model, variant in pairs:
        report.setdefault(model, {})[variant] = _sanitized_run(model, variant, args)
        print(f"  {model}/{variant}: {report[model][variant]}", file=sys.stderr, flush=True)
    _print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--only", action="append", default=[], metavar="MODEL[/VARIANT]")
    p.add_argument("--json", type=Path, help="also write the report here")
    p.add_argument("--timeout", type=int, default=180)
    p.add_argument("--one", nargs=3, metavar=("MODEL", "VARIANT", "RESULT_JSON"), help=argparse.SUPPRESS)
    return p.parse_args()


def _sanitized_run(model: str, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="csan-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--one", model, variant, str(result),
               "--world-size", str(args.world_size), "--steps", str(args.steps)]
        env = {**os.environ, "TORCH_CUDA_SANITIZER": "1"}
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, cwd=REPO)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {args.timeout} s"}
        if proc.returncode != 0 or not result.is_file():
            lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
            return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
        return json.loads(result.read_text())


def _run_one(model: str, variant: str, result: str, args: argparse.Namespace) -> None:
    """In the fresh process: spawn the ranks, merge what they saw."""
    from overlapscope.capture.launch import spawn_ranks

    with tempfile.TemporaryDirectory(prefix="csan-ranks-") as tmp:
        config = reference_models.resolve_config(model, False, {}, args.world_size)
        spawn_ranks(_rank, args.world_size, "cuda", (model, variant, config, args.steps, tmp))
        ranks = [json.loads(Path(tmp, f"rank-{r}.json").read_text()) for r in range(args.world_size)]
    first = next((r["first"] for r in ranks if r["first"]), None)
    Path(result).write_text(json.dumps({
        "steps": args.steps,
        "steps_flagged": max(r["steps_flagged"] for r in ranks),
        "csan_errors": sum(r["errors"] for r in ranks),
        "numerics_failures": sum(r["numerics_failures"] for r in ranks),
        "first": first,
    }))


def _rank(ctx: Any, payload: tuple[str, str, dict[str, Any], int, str]) -> None:
    import torch
    from torch.cuda._sanitizer import CUDASanitizerErrors

    model_name, variant, config, steps, out = payload
    model = reference_models.load(model_name).build(config, ctx, variant)
    flagged = errors = numerics_failures = 0
    first = None
    try:
        for step in range(steps):
            try:
                model.forward(step)
                torch.cuda.synchronize()
                numerics_failures += not model.check(step).numerics_ok
            except CUDASanitizerErrors as e:
                flagged += 1
                errors += len(e.errors)
                first = first or " | ".join(line.strip() for line in str(e.errors[0]).splitlines()[:4] if line.strip())
                torch.cuda.synchronize()
            ctx.barrier()
    finally:
        model.close()
    Path(out, f"rank-{ctx.rank}.json").write_text(json.dumps(
        {"steps_flagged": flagged, "errors": errors, "numerics_failures": numerics_failures, "first": first}))


def _print_table(report: dict[str, dict[str, Any]]) -> None:
    print(f"{'model':22s} {'variant':14s} {'CSAN steps flagged':>18s} {'errors':>7s}  first report")
    for model, variants in report.items():
        for variant, r in variants.items():
            if "error" in r:
                print(f"{model:22s} {variant:14s} {'run failed':>18s} {'':>7s}  {r['error']}")
            else:
                print(f"{model:22s} {variant:14s} {r['steps_flagged']:>11d} of {r['steps']:<4d} {r['csan_errors']:>7d}"
                      f"  {r['first'] or '-'}")


if __name__ == "__main__":
    sys.exit(main())
