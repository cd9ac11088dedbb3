"""Capture a real 2-rank Kineto trace in which one rank joins its first collective late: the sample
for `overlapscope analyze --skew` (tests/test_skew.py reads it from sample_traces/late_rank/).

    python benchmarks/capture_late_rank.py OUT_DIR [--late-ms 30] [--steps 4]

Needs 2 CUDA GPUs and PyTorch with NCCL (set NCCL_NVLS_ENABLE=0 on machines where NVLink multicast
must stay off). Both ranks warm up, meet at a barrier and start the profiler; then the late rank
(the last one) sleeps --late-ms on the host before its first step, so every other rank's first
all-reduce kernel waits that long on the GPU. Each step: matmuls on the default stream and an
all-reduce of the previous result on a side stream, overlapping the next matmul.
Writes OUT_DIR/rank-R.json.gz.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import time
from pathlib import Path


def worker(rank: int, world: int, out: str, late_ms: float, steps: int) -> None:
    import torch
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=torch.device("cuda", rank))
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    grads = torch.randn(32 << 20, device="cuda", dtype=torch.bfloat16)
    side = torch.cuda.Stream()

    def step() -> None:
        b = a @ a
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            dist.all_reduce(grads)
        for _ in range(4):
            b = b @ a
        torch.cuda.current_stream().wait_stream(side)

    for _ in range(3):  # warm-up: lazy module loading and the communicator's set-up stay out of the trace
        step()
    torch.cuda.synchronize()
    dist.barrier()
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        if rank == world - 1:
            time.sleep(late_ms / 1e3)
        for i in range(steps):
            with torch.profiler.record_function(f"step{i}"):
                step()
        torch.cuda.synchronize()
    path = Path(out) / f"rank-{rank}.json"
    prof.export_chrome_trace(str(path))
    with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--late-ms", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    import torch
    import torch.multiprocessing as mp

    world = torch.cuda.device_count()
    if world < 2:
        raise SystemExit("needs at least 2 GPUs")
    args.out.mkdir(parents=True, exist_ok=True)
    mp.spawn(worker, args=(world, str(args.out), args.late_ms, args.steps), nprocs=world)


if __name__ == "__main__":
    main()
