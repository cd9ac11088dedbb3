"""Scale, measured side by side on this machine: ranks in parallel, the cache, bounded memory.

    python benchmarks/bench_scale.py [--ranks 16] [--kernels 200000] [--big-kernels 2000000]
                                     [--repeat 3] [--skip-hta] [--skip-big]

1. A run of R ranks × N kernels (gen_ranks.py; 200,000 kernels make about 210 MB of JSON per rank):
   `overlapscope analyze DIR --json --no-cache` with --jobs 1 and with --jobs 2, and HTA 0.5.0 (parse +
   get_comm_comp_overlap; it parses ranks in parallel too) on the same directory.
2. The same run through the cache: loading every file the first time (parse + store) against the second
   time (read the cache); and the whole `analyze --jobs 2` command with a cold and a warm cache.
3. One Kineto trace of M kernels (2,000,000 make 2.0 GiB of JSON): peak RSS of `analyze` with a 1 GiB
   memory budget, without one, and through the cache.

Every measurement runs in a fresh interpreter (peak RSS: the largest of its processes), the runs of
the compared subjects interleaved so they share the machine's noise; times are medians of --repeat
runs. Prints a Markdown table (docs/scale.md holds a copy).
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "bench-data" / "scale"
OVERLAPSCOPE = Path(sys.executable).parent / "overlapscope"
BUDGET = "1G"
sys.path.insert(0, str(HERE))


# --- subjects: each runs in its own interpreter (`bench_scale.py --measure SUBJECT ARG...`) ---

def subject_cli(*args: str) -> dict:
    """The `overlapscope` command; peak RSS of the largest of its processes (workers included)."""
    subprocess.run([str(OVERLAPSCOPE), *args], check=True, stdout=subprocess.DEVNULL)
    return {}


def subject_load(directory: str, cache_dir: str) -> dict:
    """Every trace file of the run through the cache, one after another (no analysis)."""
    from overlapscope.pipeline import read_file
    from overlapscope.trace.load import run_files

    for f in run_files([directory]).traces:
        read_file(f, use_cache=True, cache_dir=cache_dir)
    return {}


def subject_big(path: str, budget: str, cache_dir: str) -> dict:
    """One file analysed in this process (a single file needs no worker)."""
    from overlapscope.pipeline import ScaleOptions, analyze_run, parse_size

    options = ScaleOptions(jobs=1, memory_budget=parse_size(budget) if budget != "none" else None,
                           use_cache=cache_dir != "none", cache_dir=Path(cache_dir) if cache_dir != "none" else None)
    result = analyze_run([path], options=options)
    return {"overlap_pct": result.analysis.ranks[0].overlap_pct}


SUBJECTS = {"cli": subject_cli, "load": subject_load, "big": subject_big}


def measure(subject: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", subject, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{subject} {args}: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_measurement(subject: str, args: list[str]) -> None:
    start = time.perf_counter()
    result = SUBJECTS[subject](*args)
    result["wall_s"] = time.perf_counter() - start
    peak_kb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    result["peak_rss_mb"] = peak_kb / 1024
    print(json.dumps(result))


def hta(directory: Path) -> dict:
    """HTA 0.5.0 through measure.py (the analyzer benchmark's subject)."""
    out = subprocess.run([sys.executable, str(HERE / "measure.py"), "hta", str(directory)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"hta: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the benchmark ---

def median_wall(runs: list[dict]) -> float:
    return statistics.median(r["wall_s"] for r in runs)


def decompressed_size(path: Path) -> int:
    with gzip.open(path, "rb") as fh:
        return sum(len(chunk) for chunk in iter(lambda: fh.read(1 << 24), b""))


def fresh(folder: Path) -> str:
    shutil.rmtree(folder, ignore_errors=True)
    return str(folder)


def bench_ranks(args: argparse.Namespace, row: Callable[..., None]) -> None:
    import gen_ranks

    run = DATA / f"ranks{args.ranks}x{args.kernels}"
    if not (run / f"rank-{args.ranks - 1}.json.gz").exists():
        gen_ranks.write_run(run, args.ranks, args.kernels)
    files = sorted(run.glob("rank-*.json.gz"))
    text_gb = decompressed_size(files[0]) * len(files) / 1e9
    gz_mb = sum(f.stat().st_size for f in files) / 1e6
    row(f"**{args.ranks} ranks × {args.kernels:,} kernels** ({text_gb:.1f} GB of JSON, {gz_mb:,.0f} MB gzipped)", "", "")

    jobs: dict[int, list[dict]] = {1: [], 2: []}
    hta_runs: list[dict] = []
    for i in range(args.repeat):
        for n in (1, 2):
            jobs[n].append(measure("cli", "analyze", str(run), "--json", "--no-cache", "--jobs", str(n)))
        if not args.skip_hta and i < args.hta_repeat:
            hta_runs.append(hta(run))
    one, two = median_wall(jobs[1]), median_wall(jobs[2])
    row("`analyze --jobs 1 --no-cache`", f"{one:.1f} s", "")
    row("`analyze --jobs 2 --no-cache`", f"{two:.1f} s", f"**{one / two:.2f}×** faster than --jobs 1")
    if hta_runs:
        h = median_wall(hta_runs)
        row(f"HTA 0.5.0 parse + get_comm_comp_overlap ({len(hta_runs[0]['overlap_pct'])} ranks read)", f"{h:.1f} s",
            f"overlapscope --jobs 2 is **{h / two:.1f}×** faster (--jobs 1: {h / one:.1f}×)")

    cache = DATA / "cache"
    cold_load, warm_load, cold_cli, warm_cli = [], [], [], []
    for _ in range(args.repeat):
        cold_load.append(measure("load", str(run), fresh(cache)))
        warm_load.append(measure("load", str(run), str(cache)))
        cold_cli.append(measure("cli", "analyze", str(run), "--json", "--jobs", "2", "--cache-dir", fresh(cache)))
        warm_cli.append(measure("cli", "analyze", str(run), "--json", "--jobs", "2", "--cache-dir", str(cache)))
    size_mb = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e6
    row(f"load all {len(files)} files, first time (parse + store; cache: {size_mb:,.0f} MB)",
        f"{median_wall(cold_load):.1f} s", "")
    row("load all files, second time (from the cache)", f"{median_wall(warm_load):.2f} s",
        f"**{median_wall(cold_load) / median_wall(warm_load):.0f}×** faster than the first")
    row("`analyze --jobs 2`, cold cache", f"{median_wall(cold_cli):.1f} s", "")
    row("`analyze --jobs 2`, warm cache", f"{median_wall(warm_cli):.2f} s",
        f"{median_wall(cold_cli) / median_wall(warm_cli):.1f}× faster than cold")


def bench_big(args: argparse.Namespace, row: Callable[..., None]) -> None:
    import gen_kineto

    big = DATA / f"kineto_{args.big_kernels}.json.gz"
    if not big.exists():
        gen_kineto.write(big, args.big_kernels)
    text = decompressed_size(big)
    row(f"**one trace of {args.big_kernels:,} kernels** ({text / 2**30:.2f} GiB of JSON)", "", "")
    cache = DATA / "big-cache"
    for label, budget, cache_dir in (("no budget (32 MiB of text per step)", "none", "none"),
                                     (f"--memory-budget {BUDGET}", BUDGET, "none"),
                                     (f"--memory-budget {BUDGET}, cold cache (read + store)", BUDGET, fresh(cache)),
                                     (f"--memory-budget {BUDGET}, warm cache", BUDGET, str(cache))):
        r = measure("big", str(big), budget, cache_dir)
        row(f"peak RSS, {label}", f"{r['peak_rss_mb'] / 1024:.2f} GiB",
            f"{r['wall_s']:.1f} s; {r['peak_rss_mb'] * 2**20 / text:.2f}× the JSON text")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--measure":
        run_measurement(sys.argv[2], sys.argv[3:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=16)
    ap.add_argument("--kernels", type=int, default=200_000)
    ap.add_argument("--big-kernels", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hta-repeat", type=int, default=1, help="HTA runs (each takes minutes)")
    ap.add_argument("--skip-hta", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    print("| measurement | value | ratio |\n|---|---|---|", flush=True)
    bench_ranks(args, print_row)
    if not args.skip_big:
        bench_big(args, print_row)


def print_row(*cells: str) -> None:
    """Each row as soon as it is measured: a long run that fails late keeps what it measured."""
    print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
