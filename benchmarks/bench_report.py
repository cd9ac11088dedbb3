"""How long `overlapscope report` takes, how big its page is, and how long a browser takes to draw it,
for a run of R ranks × N kernels (gen_ranks.py; default 8 × 200,000).

    python benchmarks/bench_report.py [--ranks 8] [--kernels 200000]

The browser step needs Playwright and Debian's /usr/bin/chromium; it is skipped without them.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "bench-data"
CHROMIUM = Path("/usr/bin/chromium")
sys.path.insert(0, str(HERE))


def run_report(run: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of the report command in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "overlapscope", "report", str(run), "--region", "tbo", "-o", str(out)],
                   check=True, capture_output=True)
    wall = time.perf_counter() - start
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def open_in_browser(page_path: Path) -> tuple[float, float, float] | None:
    """Seconds until the page has loaded (plotly.js parsed, charts in view drawn), the slowest chart
    to draw once scrolled into view (charts are drawn lazily), and the time to draw them all;
    None without a browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not CHROMIUM.exists():
        return None
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        page = context.new_page()
        start = time.perf_counter()
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        loaded = time.perf_counter() - start
        slowest = 0.0
        for plot in page.locator(".plot").all():
            t = time.perf_counter()
            plot.scroll_into_view_if_needed()
            plot.locator(".main-svg").first.wait_for(timeout=120_000)
            slowest = max(slowest, time.perf_counter() - t)
        every = time.perf_counter() - start
        context.close()
    return loaded, slowest, every


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--kernels", type=int, default=200_000)
    args = ap.parse_args()
    import gen_ranks

    run = DATA / f"ranks{args.ranks}x{args.kernels}"
    if not run.exists():
        gen_ranks.write_run(run, args.ranks, args.kernels)
    out = DATA / f"report_{args.ranks}x{args.kernels}.html"
    wall, rss = run_report(run, out)
    draw = open_in_browser(out)
    print(f"| report, {args.ranks} ranks × {args.kernels:,} kernels | |\n|---|---|")
    print(f"| `overlapscope report` (load, analyze, races, page) | {wall:.1f} s, peak {rss:,.0f} MiB |")
    print(f"| HTML size (plotly.js inlined: 4.6 MiB of it) | {out.stat().st_size / 2**20:.1f} MiB |")
    if draw is None:
        print("| headless chromium | skipped (no Playwright or no /usr/bin/chromium) |")
    else:
        print(f"| headless chromium: page loaded (plotly.js parsed) | {draw[0]:.1f} s |")
        print(f"| headless chromium: slowest chart, from scrolled into view to drawn | {draw[1]:.2f} s |")
        print(f"| headless chromium: every chart drawn (scrolling through the page) | {draw[2]:.1f} s |")


if __name__ == "__main__":
    main()
