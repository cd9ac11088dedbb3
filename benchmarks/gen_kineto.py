"""Generate a large synthetic Kineto trace for benchmarks: N GPU kernels, each with its
cudaLaunchKernel (or, for NCCL kernels, cuLaunchKernelEx) host call and ac2g flow events, a
cpu_op per launch, a user_annotation per 100 kernels and a ProfilerStep per 10,000.

Every 8th kernel is an NCCL kernel on a side stream that overlaps the compute stream; times are
absolute-epoch nanoseconds printed as Kineto prints them (decimal microseconds, 3 digits).

    python benchmarks/gen_kineto.py OUT.json.gz --kernels 1000000
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

T0 = 1_712_195_495_505_583_123
COMPUTE = ("void cutlass::Kernel2<cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_128x128_32x4_tn_align8>"
           "(cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_128x128_32x4_tn_align8::Params)")
ELEMENTWISE = ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, "
               "at::detail::Array<char*, 3> >(int, at::native::CUDAFunctor_add<c10::BFloat16>, at::detail::Array<char*, 3>)")
NCCL = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"


def us(ns: int) -> str:
    return f"{ns // 1000}.{ns % 1000:03d}"


def events(n_kernels: int):
    pid, tid = 4242, 4242
    t_host = T0
    t_gpu = T0 + 50_000
    yield (f'{{"ph":"X","cat":"user_annotation","name":"ProfilerStep#0","pid":{pid},"tid":{tid},'
           f'"ts":{us(T0)},"dur":{us(1)},"args":{{"External id":1}}}}')
    for i in range(n_kernels):
        corr = 10 + i
        if i % 10_000 == 0:
            step_len = 10_000 * 2_100
            yield (f'{{"ph":"X","cat":"user_annotation","name":"ProfilerStep#{i // 10_000 + 1}","pid":{pid},"tid":{tid},'
                   f'"ts":{us(t_host)},"dur":{us(step_len)},"args":{{"External id":{corr},"Record function id":{corr}}}}}')
        if i % 100 == 0:
            yield (f'{{"ph":"X","cat":"user_annotation","name":"tbo/mb{(i // 100) % 2}","pid":{pid},"tid":{tid},'
                   f'"ts":{us(t_host)},"dur":{us(100 * 2_100)},"args":{{"External id":{corr}}}}}')
        comm = i % 8 == 0
        name, stream = (NCCL, 20) if comm else ((COMPUTE if i % 3 else ELEMENTWISE), 7)
        dur = 9_000 if comm else 1_937 + (i % 7) * 101
        start = t_gpu + (i % 8) * 13 if comm else t_gpu
        yield (f'{{"ph":"X","cat":"cpu_op","name":"aten::mm","pid":{pid},"tid":{tid},"ts":{us(t_host)},'
               f'"dur":{us(1_500)},"args":{{"External id":{corr},"Record function id":{corr},"Ev Idx":{i}}}}}')
        launch = "cuLaunchKernelEx" if comm else "cudaLaunchKernel"
        cat = "cuda_driver" if comm else "cuda_runtime"
        yield (f'{{"ph":"X","cat":"{cat}","name":"{launch}","pid":{pid},"tid":{tid},"ts":{us(t_host + 100)},'
               f'"dur":{us(1_200)},"args":{{"External id":{corr},"cbid":211,"correlation":{corr}}}}}')
        yield f'{{"ph":"s","id":{corr},"pid":{pid},"tid":{tid},"ts":{us(t_host + 100)},"cat":"ac2g","name":"ac2g"}}'
        yield (f'{{"ph":"X","cat":"kernel","name":"{name}","pid":0,"tid":{stream},"ts":{us(start)},"dur":{us(dur)},'
               f'"args":{{"External id":{corr},"queued":0,"device":0,"context":1,"stream":{stream},'
               f'"correlation":{corr},"registers per thread":128,"shared memory":49152,"blocks per SM":1.5,'
               f'"warps per SM":6.0,"grid":[132,1,1],"block":[256,1,1],"est. achieved occupancy %":12}}}}')
        yield (f'{{"ph":"f","id":{corr},"pid":0,"tid":{stream},"ts":{us(start)},"cat":"ac2g","name":"ac2g","bp":"e"}}')
        t_host += 2_100
        if not comm:
            t_gpu += dur + 150


def write(path: Path, n_kernels: int) -> Path:
    header = ('{"schemaVersion":1,"deviceProperties":[{"id":0,"name":"NVIDIA H200","totalGlobalMem":150754820096}],'
              '"distributedInfo":{"backend":"nccl","rank":0,"world_size":8},"traceEvents":[\n')
    opener = (lambda p: gzip.open(p, "wt", compresslevel=1)) if path.name.endswith(".gz") else (lambda p: open(p, "w"))
    with opener(path) as out:
        out.write(header)
        batch: list[str] = []
        first = True
        for ev in events(n_kernels):
            batch.append(ev)
            if len(batch) == 50_000:
                out.write(("" if first else ",\n") + ",\n".join(batch))
                first, batch = False, []
        if batch:
            out.write(("" if first else ",\n") + ",\n".join(batch))
        out.write("\n]}\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--kernels", type=int, default=1_000_000)
    args = ap.parse_args()
    write(args.out, args.kernels)


if __name__ == "__main__":
    main()
