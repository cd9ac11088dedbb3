"""Generate a large Nsight Systems SQLite export for the nsys reader's speed benchmark.

The file uses the table and column names of a real `nsys export --type sqlite` (2026.2): kernels
in CUPTI_ACTIVITY_KIND_KERNEL with names in StringIds, one cudaLaunchKernel per kernel in
CUPTI_ACTIVITY_KIND_RUNTIME (same correlationId, per process as CUPTI numbers them), NVTX
push/pop ranges (ten ProfilerStep#N per process and a layer range per 50 launches), a memcpy per
step. Every process runs one GPU; every tenth kernel is an NCCL kernel on a side stream,
overlapping the compute stream.

    python benchmarks/gen_nsys.py /tmp/nsys_1m.sqlite --kernels 1000000 --analyze
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VERSION = "2026.2.1.210"
COMPUTE_STREAM, COMM_STREAM = 7, 20
COMPUTE_KERNELS = (
    "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>>(int, T2, T3)",
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel",
    "void flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4, false, false, cutlass::bfloat16_t>>"
    "(Flash_fwd_params)",
    "triton_poi_fused_add_mul_rsqrt_0",
    "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, float>>>(T3)",
    "void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_32x32_128x2_tn_align8>(T1::Params)",
)
COMM_KERNEL = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
LAUNCH = "cudaLaunchKernel_v7000"
MEMCPY = "cudaMemcpyAsync_v3020"
LAYER = "decoder_layer"

# The columns nsys 2026.2 writes, in its order (see `.schema` of any corpus file).
DDL = {
    "StringIds": "CREATE TABLE StringIds (id INTEGER NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
    "META_DATA_EXPORT": "CREATE TABLE META_DATA_EXPORT (name TEXT NOT NULL, value TEXT)",
    "ENUM_NSYS_EVENT_CLASS":
        "CREATE TABLE ENUM_NSYS_EVENT_CLASS (id INTEGER NOT NULL PRIMARY KEY, name TEXT, label TEXT)",
    "CUPTI_ACTIVITY_KIND_KERNEL": """CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (
        start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL,
        greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER,
        demangledName INTEGER NOT NULL, shortName INTEGER NOT NULL, mangledName INTEGER, launchType INTEGER,
        cacheConfig INTEGER, registersPerThread INTEGER NOT NULL, gridX INTEGER NOT NULL, gridY INTEGER NOT NULL,
        gridZ INTEGER NOT NULL, blockX INTEGER NOT NULL, blockY INTEGER NOT NULL, blockZ INTEGER NOT NULL,
        staticSharedMemory INTEGER NOT NULL, dynamicSharedMemory INTEGER NOT NULL,
        localMemoryPerThread INTEGER NOT NULL, localMemoryTotal INTEGER NOT NULL, gridId INTEGER NOT NULL,
        sharedMemoryExecuted INTEGER, graphNodeId INTEGER, sharedMemoryLimitConfig INTEGER)""",
    "CUPTI_ACTIVITY_KIND_RUNTIME": """CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (
        start INTEGER NOT NULL, end INTEGER NOT NULL, eventClass INTEGER NOT NULL, globalTid INTEGER,
        correlationId INTEGER, nameId INTEGER NOT NULL, returnValue INTEGER NOT NULL, callchainId INTEGER)""",
    "CUPTI_ACTIVITY_KIND_MEMCPY": """CREATE TABLE CUPTI_ACTIVITY_KIND_MEMCPY (
        start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, contextId INTEGER NOT NULL,
        greenContextId INTEGER, streamId INTEGER NOT NULL, correlationId INTEGER, globalPid INTEGER,
        bytes INTEGER NOT NULL, copyKind INTEGER NOT NULL, deprecatedSrcId INTEGER, srcKind INTEGER,
        dstKind INTEGER, srcDeviceId INTEGER, srcContextId INTEGER, dstDeviceId INTEGER, dstContextId INTEGER,
        migrationCause INTEGER, graphNodeId INTEGER, virtualAddress INTEGER, copyCount INTEGER)""",
    "NVTX_EVENTS": """CREATE TABLE NVTX_EVENTS (
        start INTEGER NOT NULL, end INTEGER, eventType INTEGER NOT NULL, rangeId INTEGER, category INTEGER,
        color INTEGER, text TEXT, globalTid INTEGER, endGlobalTid INTEGER, textId INTEGER, domainId INTEGER,
        uint64Value INTEGER, int64Value INTEGER, doubleValue REAL, uint32Value INTEGER, int32Value INTEGER,
        floatValue REAL, jsonTextId INTEGER, jsonText TEXT, binaryData TEXT)""",
}


def global_pid(pid: int) -> int:
    """nsys's serialized process id: (hwId << 56) | (vmId << 48) | (pid << 24); the corpus files use vmId 1."""
    return (1 << 48) | (pid << 24)


def generate(path: Path, kernels: int = 1_000_000, processes: int = 2, comm_every: int = 10,
             steps: int = 10, kernels_per_layer: int = 50, seed: int = 0) -> Path:
    """Write the export to `path` (replacing it) and return the path. `kernels` are shared out
    over `processes` (one GPU each); each process has `steps` ProfilerStep ranges and a layer
    range every `kernels_per_layer` launches."""
    path = Path(path)
    path.unlink(missing_ok=True)
    strings = [*COMPUTE_KERNELS, COMM_KERNEL, LAUNCH, MEMCPY, LAYER]
    string_id = {s: i + 1 for i, s in enumerate(strings)}
    rng = np.random.default_rng(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    for ddl in DDL.values():
        con.execute(ddl)
    con.executemany("INSERT INTO StringIds VALUES (?, ?)", [(i, s) for s, i in string_id.items()])
    con.executemany("INSERT INTO META_DATA_EXPORT VALUES (?, ?)",
                    [("EXPORT_PRODUCT_NAME", "NVIDIA Nsight Systems"), ("EXPORT_PRODUCT_VERSION", VERSION)])
    con.executemany("INSERT INTO ENUM_NSYS_EVENT_CLASS VALUES (?, ?, ?)",
                    [(0, "TRACE_PROCESS_EVENT_CUDA_RUNTIME", "CUDA runtime"),
                     (1, "TRACE_PROCESS_EVENT_CUDA_DRIVER", "CUDA driver")])
    for device in range(processes):
        share = kernels // processes + (device < kernels % processes)
        _write_process(con, rng, string_id, pid=4000 + device, device=device, kernels=share, comm_every=comm_every,
                       kernels_per_step=math.ceil(share / steps), kernels_per_layer=kernels_per_layer)
    con.commit()
    con.close()
    return path


def _write_process(con: sqlite3.Connection, rng: np.random.Generator, string_id: dict[str, int], pid: int,
                   device: int, kernels: int, comm_every: int, kernels_per_step: int, kernels_per_layer: int) -> None:
    gpid = global_pid(pid)
    gtid = gpid | pid  # the main thread
    context = device + 1
    i = np.arange(kernels)
    is_comm = i % comm_every == 0
    # compute kernels run back to back on one stream; an NCCL kernel starts with the next compute
    # kernel on the side stream and outlasts it
    duration = np.where(is_comm, rng.integers(20_000, 60_000, kernels), rng.integers(2_000, 20_000, kernels))
    advance = np.where(is_comm, 0, duration + 1_000)
    start = 1_000_000_000 + np.concatenate([[0], np.cumsum(advance)[:-1]])
    end = start + duration
    correlation = i + 1  # CUPTI numbers each process's calls from its own counter
    compute_name = np.array([string_id[n] for n in COMPUTE_KERNELS])[i % len(COMPUTE_KERNELS)]
    name = np.where(is_comm, string_id[COMM_KERNEL], compute_name)
    launch = start - 30_000 - np.where(is_comm, 4_000, 0)
    n = kernels
    con.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES "
        "(?,?,?,?,NULL,?,?,?,?,?,NULL,0,0,32,?,1,1,256,1,1,0,0,0,0,?,0,NULL,0)",
        zip(start.tolist(), end.tolist(), [device] * n, [context] * n,
            np.where(is_comm, COMM_STREAM, COMPUTE_STREAM).tolist(), correlation.tolist(), [gpid] * n,
            name.tolist(), name.tolist(), (i % 1024 + 1).tolist(), correlation.tolist()))
    con.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?,?,0,?,?,?,0,NULL)",
        zip(launch.tolist(), (launch + 3_000).tolist(), [gtid] * n, correlation.tolist(), [string_id[LAUNCH]] * n))
    _write_steps(con, string_id, gtid, gpid, device, context, launch, end, kernels_per_step, kernels_per_layer,
                 next_correlation=n + 1)


def _write_steps(con: sqlite3.Connection, string_id: dict[str, int], gtid: int, gpid: int, device: int,
                 context: int, launch: np.ndarray, end: np.ndarray, kernels_per_step: int, kernels_per_layer: int,
                 next_correlation: int) -> None:
    """ProfilerStep#N (text) and layer ranges (registered textId) around the launches, and a
    device-to-device memcpy after each step's last kernel."""
    n = launch.size
    steps = range(0, n, kernels_per_step)
    layers = range(0, n, kernels_per_layer)
    ranges = [(int(launch[a]) - 100, int(launch[min(a + kernels_per_step, n) - 1]) + 5_000, f"ProfilerStep#{k}", None)
              for k, a in enumerate(steps)]
    ranges += [(int(launch[a]) - 50, int(launch[min(a + kernels_per_layer, n) - 1]) + 4_000, None, string_id[LAYER])
               for a in layers]
    con.executemany(
        "INSERT INTO NVTX_EVENTS (start, end, eventType, text, globalTid, textId, domainId) VALUES (?,?,59,?,?,?,0)",
        [(s, e, text, gtid, text_id) for s, e, text, text_id in ranges])
    copies = [(int(end[min(a + kernels_per_step, n) - 1]) + 500, next_correlation + k) for k, a in enumerate(steps)]
    con.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY (start, end, deviceId, contextId, streamId, correlationId, globalPid,"
        " bytes, copyKind) VALUES (?,?,?,?,?,?,?,1048576,8)",
        [(t, t + 2_000, device, context, COMPUTE_STREAM, corr, gpid) for t, corr in copies])
    con.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?,?,0,?,?,?,0,NULL)",
        [(t - 40_000, t - 38_000, gtid, corr, string_id[MEMCPY]) for t, corr in copies])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--kernels", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--analyze", action="store_true", help="then time `overlapscope analyze --json` on it")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    generate(args.path, kernels=args.kernels, processes=args.processes)
    print(f"wrote {args.path} ({args.path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - began:.1f} s")
    if args.analyze:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "overlapscope", "analyze", "--json", str(args.path)],
                       check=True, stdout=subprocess.DEVNULL)
        print(f"overlapscope analyze: {time.perf_counter() - began:.2f} s")


if __name__ == "__main__":
    main()
