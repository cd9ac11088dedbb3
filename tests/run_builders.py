"""Hand-built runs shared by the report, gate, diff and history tests (answers known by construction).

`tbo_run(overlapped=True)`: each step's all-reduce runs on a side stream under attention, fully
hidden (100 %); `overlapped=False`: the same kernels inline on the compute stream (0 %). A racy
variant adds a cross-stream race on an `ids` buffer (access marks, overlapscope.instrument).
"""

from __future__ import annotations

import json
from pathlib import Path

from builders import KinetoBuilder
from overlapscope.instrument import encode_access_mark
from overlapscope.trace.load import MANIFEST_MARK

T0 = 1_712_195_495_505_583_123
STEP = 100_000
COMPUTE_NS = 3 * 20_000  # per step: three compute kernels of 20 µs
COMM_NS = 15_000  # per step: one all-reduce
IDS = {"ids": (0x7F00_0000_0000, 4096)}
HOSTILE = [
    "<script>window.__pwned = 1; alert('kernel')</script>",
    "\"><img src=x onerror=\"window.__pwned=2;alert(2)\">",
    "'; alert(3); '</div></td></tr></table><h1>broken</h1>",
    "</script><script>window.__pwned=4;alert(4)</script>",
    "ncclDevKernel_<svg onload=alert(5)>\u2028\u2029&amp;&lt;",
]
LONG_NAME = "void very_long_template_kernel<" + "cutlass::bfloat16_t, " * 600 + ">(Params)"


def tbo_run(out: Path, overlapped: bool, ranks: int = 2, steps: int = 3, race: bool = False,
            region: str = "tbo/mb0", comm_name: str = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL",
            compute_names: tuple[str, str, str] = ("attention_fwd_kernel", "moe_grouped_gemm", "attention_fwd_kernel"),
            manifest: dict | None = None, marked: bool = False) -> Path:
    """A two-batch-overlap-like run; `race` adds a cross-stream race on `ids` in step 0, `marked` the
    same two accesses on one stream (ordered by the stream: checked, no race)."""
    out.mkdir(parents=True, exist_ok=True)
    for rank in range(ranks):
        b = KinetoBuilder(rank=rank, world_size=ranks, device=rank)
        for step in range(steps):
            base = T0 + rank * 41 + step * STEP
            b.annotation(f"ProfilerStep#{step}", base, base + 90_000)
            b.annotation(region, base + 100, base + 3_000)
            b.kernel(compute_names[0], 7, base + 5_000, base + 25_000, launch_at=base + 200)
            if overlapped:  # the all-reduce on stream 20, under the next two compute kernels
                b.kernel(comm_name, 20, base + 26_000, base + 41_000, launch_at=base + 300, api="cuda_driver")
                b.kernel(compute_names[1], 7, base + 25_000, base + 45_000, launch_at=base + 400)
                b.kernel(compute_names[2], 7, base + 45_000, base + 65_000, launch_at=base + 500)
            else:  # inline: the all-reduce between the compute kernels, on the same stream
                b.kernel(comm_name, 7, base + 25_000, base + 40_000, launch_at=base + 300, api="cuda_driver")
                b.kernel(compute_names[1], 7, base + 40_000, base + 60_000, launch_at=base + 400)
                b.kernel(compute_names[2], 7, base + 60_000, base + 80_000, launch_at=base + 500)
            if (race or marked) and step == 0:
                _cross_stream_race(b, base, reader_stream=13 if marked else 14)
        b.write(out / f"rank-{rank}.trace.json.gz")
    if manifest is not None:
        (out / "run.json").write_text(json.dumps({MANIFEST_MARK: 1, **manifest}))
    return out


def _cross_stream_race(b: KinetoBuilder, base: int, reader_stream: int = 14) -> None:
    """An all-gather writes `ids` on stream 13 while a kernel on stream 14 reads them, with no event
    between (on stream 13 the stream orders them: no race)."""
    b.annotation(encode_access_mark("dp_allgather", None, IDS, "gpu"), base + 3_100, base + 3_300)
    b.kernel("ncclDevKernel_AllGather_RING_LL", 13, base + 50_000, base + 52_000, launch_at=base + 3_200,
             api="cuda_driver")
    b.annotation(encode_access_mark("consume_ids", IDS, None, "gpu"), base + 3_400, base + 3_600)
    b.kernel("index_select_kernel", reader_stream, base + 52_000 if reader_stream == 13 else base + 51_000,
             base + 53_000, launch_at=base + 3_500)


def hostile_run(out: Path) -> Path:
    """Kernel, range, step-like and file names and run.json values that try to break out of HTML and JS."""
    out.mkdir(parents=True, exist_ok=True)
    b = KinetoBuilder(rank=0, world_size=1, device=0)
    base = T0
    b.annotation(HOSTILE[2], base, base + 90_000)  # a region name
    b.kernel(HOSTILE[0], 7, base + 5_000, base + 25_000, launch_at=base + 200)
    b.kernel(HOSTILE[4], 20, base + 10_000, base + 30_000, launch_at=base + 300, api="cuda_driver")
    b.kernel(HOSTILE[1], 7, base + 25_000, base + 45_000, launch_at=base + 400)
    b.kernel(HOSTILE[3], 7, base + 45_000, base + 46_000, launch_at=base + 500)
    b.kernel(LONG_NAME, 7, base + 46_000, base + 47_000, launch_at=base + 600)
    b.write(out / "rank-0 <img src=x onerror=alert(6)>.trace.json")
    manifest = {MANIFEST_MARK: 1, "model": HOSTILE[0], "variant": HOSTILE[3],
                "config": {"note": HOSTILE[1], "long": LONG_NAME}}
    (out / "run.json").write_text(json.dumps(manifest))
    return out


def no_comm_run(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    b = KinetoBuilder(rank=0, world_size=1, device=0)
    b.annotation("tbo/mb0", T0, T0 + 3_000)
    b.kernel("attention_fwd_kernel", 7, T0 + 5_000, T0 + 25_000, launch_at=T0 + 200)
    b.write(out / "rank-0.trace.json.gz")
    return out


def no_gpu_run(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    b = KinetoBuilder(rank=0, world_size=1, device=0)
    b.annotation("tbo/mb0", T0, T0 + 3_000)
    b.write(out / "rank-0.trace.json.gz")
    return out


def nested_run(out: Path, ranks: int = 3, steps: int = 2) -> Path:
    """A block of nested ranges whose exposed comm sits in `l0 > mb1 > combine` (answers by hand):

    per step, inside `tbo/block` > `l0`: `mb0` > `dispatch` launches an all-gather on stream 20 at
    [10, 20) µs, `mb1` > `combine` an all-reduce at [30, 40) µs; one compute kernel (launched in the
    block) runs on stream 7 at [5, 32) µs, on rank 1 at [5, 34) µs. Outside the block, `step_align`
    launches a 1 µs all-reduce at [50, 51) µs that nothing hides."""
    out.mkdir(parents=True, exist_ok=True)
    for rank in range(ranks):
        b = KinetoBuilder(rank=rank, world_size=ranks, device=rank)
        compute_end = 34_000 if rank == 1 else 32_000
        for step in range(steps):
            base = T0 + rank * 41 + step * STEP
            b.annotation(f"ProfilerStep#{step}", base, base + 90_000)
            b.annotation("tbo/block", base + 100, base + 5_000)
            b.kernel("attention_fwd_kernel", 7, base + 5_000, base + compute_end, launch_at=base + 120)
            b.annotation("l0", base + 150, base + 2_000)
            b.annotation("mb0", base + 160, base + 900)
            b.annotation("dispatch", base + 170, base + 800)
            b.kernel("ncclDevKernel_AllGather_RING_LL", 20, base + 10_000, base + 20_000, launch_at=base + 200,
                     api="cuda_driver")
            b.annotation("mb1", base + 1_000, base + 1_900)
            b.annotation("combine", base + 1_100, base + 1_800)
            b.kernel("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 20, base + 30_000, base + 40_000,
                     launch_at=base + 1_200, api="cuda_driver")
            b.annotation("step_align", base + 6_000, base + 6_500)
            b.kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL", 20, base + 50_000, base + 51_000,
                     launch_at=base + 6_100, api="cuda_driver")
        b.write(out / f"rank-{rank}.trace.json.gz")
    return out
