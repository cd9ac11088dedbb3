"""The analyzer's speed and memory, side by side with the parse floor and with HTA 0.5.0.

    python benchmarks/bench_analyze.py [--kernels 1000000] [--skip-hta]

1. A generated Kineto trace of N GPU kernels (with matching launches, cpu_ops, annotations and
   flow events): overlapscope load+analyze against the floor (gzip decompression + orjson.loads of
   the same file) and against HTA 0.5.0 (parse + get_comm_comp_overlap), wall time and peak RSS.
2. A generated nsys SQLite of N kernels: overlapscope load+analyze.
3. `overlapscope --help` start-up time.
Prints a Markdown table (the README's Performance section is a copy of it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "bench-data"
sys.path.insert(0, str(HERE))


def measure(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(HERE / "measure.py"), *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{args}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def decompressed_size(path: Path) -> int:
    with gzip.open(path, "rb") as fh:
        return sum(len(chunk) for chunk in iter(lambda: fh.read(1 << 24), b""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", type=int, default=1_000_000)
    ap.add_argument("--skip-hta", action="store_true")
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    n = args.kernels
    rows: list[tuple[str, str]] = []

    import gen_kineto
    import gen_nsys

    kineto = DATA / f"kineto_{n}.json.gz"
    if not kineto.exists():
        gen_kineto.write(kineto, n)
    text_mb = decompressed_size(kineto) / 2**20
    floor = measure("floor", str(kineto))
    ours = measure("analyze", str(kineto))
    rows.append((f"Kineto, {n:,} kernels ({text_mb:,.0f} MiB of JSON, {floor['events']:,} events)", ""))
    rows.append(("floor: gunzip + orjson.loads", f"{floor['wall_s']:.1f} s, peak {floor['peak_rss_mb']:,.0f} MiB"))
    rows.append(("overlapscope load + analyze",
                 f"{ours['wall_s']:.1f} s ({ours['wall_s'] / floor['wall_s']:.2f}× the floor), "
                 f"peak {ours['peak_rss_mb']:,.0f} MiB ({ours['peak_rss_mb'] / text_mb:.2f}× the JSON text)"))
    if not args.skip_hta:
        hta_dir = DATA / f"hta_{n}"
        hta_dir.mkdir(exist_ok=True)
        link = hta_dir / kineto.name
        if not link.exists():
            os.symlink(kineto, link)
        hta = measure("hta", str(hta_dir))
        rows.append(("HTA 0.5.0 parse + get_comm_comp_overlap",
                     f"{hta['wall_s']:.1f} s (overlapscope is {hta['wall_s'] / ours['wall_s']:.1f}× faster), "
                     f"peak {hta['peak_rss_mb']:,.0f} MiB; HTA says {hta['overlap_pct'][0]:.2f} %, "
                     f"overlapscope {ours['overlap_pct'][0]:.2f} %"))

    nsys = DATA / f"nsys_{n}.sqlite"
    if not nsys.exists():
        gen_nsys.generate(nsys, n)
    ours_nsys = measure("analyze", str(nsys))
    rows.append((f"nsys SQLite, {n:,} kernels ({nsys.stat().st_size / 2**20:,.0f} MiB)",
                 f"overlapscope load + analyze {ours_nsys['wall_s']:.1f} s, peak {ours_nsys['peak_rss_mb']:,.0f} MiB"))

    t = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "overlapscope"), "--help"], capture_output=True, check=True)
    rows.append(("`overlapscope --help`", f"{time.perf_counter() - t:.2f} s"))

    print("| what | measured |\n|---|---|")
    for what, value in rows:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()
