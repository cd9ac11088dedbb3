"""Run one benchmark subject in this process and print {"wall_s", "peak_rss_mb", ...} as JSON.

    python benchmarks/measure.py floor FILE.json.gz     gzip decompression + orjson.loads
    python benchmarks/measure.py analyze PATH...        overlapscope load + analyze (the CLI's work)
    python benchmarks/measure.py hta DIR                HTA 0.5.0: parse + get_comm_comp_overlap

Each subject runs in a fresh interpreter (the caller starts one per measurement), so the peak
resident set (ru_maxrss) is that subject's alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def floor(path: str) -> dict:
    import gzip

    import orjson

    with open(path, "rb") as fh:
        raw = fh.read()
    doc = orjson.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    return {"events": len(doc["traceEvents"])}


def analyze(*paths: str) -> dict:
    from overlapscope.overlap import analyze as run
    from overlapscope.pipeline import load

    result = run(load(list(paths)))
    return {"overlap_pct": [r.overlap_pct for r in result.ranks]}


def hta(directory: str) -> dict:
    import logging

    logging.disable(logging.WARNING)
    from hta.trace_analysis import TraceAnalysis

    frame = TraceAnalysis(trace_dir=directory, include_last_profiler_step=True).get_comm_comp_overlap(visualize=False)
    return {"overlap_pct": frame["comp_comm_overlap_pctg"].tolist()}


SUBJECTS = {"floor": floor, "analyze": analyze, "hta": hta}

if __name__ == "__main__":
    subject, args = sys.argv[1], sys.argv[2:]
    t = time.perf_counter()
    out = SUBJECTS[subject](*args)
    out["wall_s"] = time.perf_counter() - t
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
