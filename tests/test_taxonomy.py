"""The communication taxonomy (overlapscope/trace/taxonomy.py): every family caught with real
kernel names, near misses left alone, the suspect heuristic on real names, and the corpus traces
read independently (plain json) against the table."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from corpus import corpus_path
from overlapscope.trace.taxonomy import (
    FAMILIES,
    SUSPECT,
    Family,
    families_of,
    family_of,
    family_pattern,
    looks_like_comm,
    suggested_pattern,
)

# (family, real kernel name, where it was seen). Names from source files are written the way
# Kineto/nsys demangle them (return type, namespace, template arguments, parameter list);
# names from traces are copied from the trace.
REAL_NAMES = [
    # NVIDIA/nccl src/collectives/device/common.h (NCCL_KERN_NAME, NCCL <= 2.18); corpus
    # kineto/hta/nccl_parser_config.json.gz
    ("nccl", "ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)"),
    # corpus kineto/hta/df_index_resolver.json.gz (older NCCL parameter list)
    ("nccl", "ncclKernel_AllReduce_RING_LL_Sum_float(ncclWorkElem)"),
    # corpus kineto/hta/nccl_parser_config.json.gz
    ("nccl", "ncclKernel_Broadcast_RING_LL_Sum_int8_t(ncclDevComm*, unsigned long, ncclWork*)"),
    # NVIDIA/nccl src/device/generate.py (ncclDevKernel_<coll>...); corpus
    # wild/tracelens-kineto/b200_vllm_tp_eager.json.gz
    ("nccl", "ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)"),
    # NVIDIA/nccl src/device/generate.py best_kernel ("Generic" for Nop); corpus
    # wild/tracelens-kineto/mi300_resnet_act_checkpoint.json.gz (RCCL 2.22.3 writes it too)
    ("nccl", "ncclDevKernel_Generic(ncclDevKernelArgsStorage<4096ul>)"),
    # NVIDIA/nccl src/device/symmetric/generate.py (kernel_cname: ncclSymkDevKernel_...)
    ("nccl", "ncclSymkDevKernel_AllReduce_RSxLD_AGxST_sum_bf16(ncclSymkDevWorkArgs4K)"),
    # NCCL 2.27 symmetric kernels (generated ncclSymDevKernel_... as quoted in vLLM profiles)
    ("nccl", "ncclSymDevKernel_AllReduce_RSxLD_AGxST_sum_bf16(ncclSymDevArgs)"),
    # ROCm/rccl src/device/common.cu (ncclDevKernel_Generic_1/2/4); corpus
    # wild/tracelens-rocprofv3/908_results.json.gz (1,310 of them)
    ("rccl", "ncclDevKernel_Generic_1"),
    ("rccl", "ncclDevKernel_Generic_4(ncclDevKernelArgsStorage<4096ul>)"),
    # ROCm/rccl src/include/msccl/msccl_kernel.h (MSCCL_KERNEL_ENTRY_NAME(devredop, type, proto, fullOps))
    ("rccl", "mscclKernel_Sum_hip_bfloat16_Simple_false(ncclDevComm*, mscclAlgo*, mscclWork*)"),
    # NVIDIA/nccl src/device/generate.py (SendRecv kernel, what torch's all_to_all launches);
    # corpus nsys/nsys-ai/mfu_2gpu_before.sqlite
    ("nccl-alltoall", "ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<(unsigned long)4096>)"),
    # corpus kineto/hta/negative_queue_rank0.json.gz (80 P2P kernels, NCCL <= 2.18 naming)
    ("nccl-alltoall", "ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t(ncclDevComm*, unsigned long, ncclWork*)"),
    # xman1979/torchcomms comms/ctran/algos/AllToAll/AllToAllvDynamic.cuh (Meta ctran)
    ("nccl-alltoall", "void ncclKernelAllToAllvDynamic<float>(int*, CtranAlgoDeviceState*, "
                      "CtranKernelAllToAllvDynamicArgs)"),
    # torchcomms ctran AllToAllvDedup (namespace ctran::alltoallvdedup)
    ("nccl-alltoall", "void ctran::alltoallvdedup::ncclKernelAllToAllvDedup<__nv_bfloat16>(int*, "
                      "CtranAlgoDeviceState*, ctran::alltoallvdedup::ExecKernArgs)"),
    # corpus wild/tracelens-kineto/b200_vllm_tp_eager.json.gz (73 of them); source
    # pytorch/pytorch torch/csrc/distributed/c10d/symm_mem/CUDASymmetricMemoryOps.cu
    ("torch-symm-mem", "void (anonymous namespace)::multimem_all_reduce_kernel<c10::BFloat16, 16>"
                       "(c10::BFloat16*, unsigned long, unsigned int**, unsigned long, unsigned long)"),
    # pytorch/pytorch .../symm_mem/CUDASymmetricMemoryOps.cu (multimem_one_shot_all_reduce_kernel)
    ("torch-symm-mem", "void (anonymous namespace)::multimem_one_shot_all_reduce_kernel<float, 16>"
                       "(float*, float*, unsigned long, unsigned int**, unsigned long, unsigned long)"),
    # same file: multimem_all_gather_kernel<alignment>
    ("torch-symm-mem", "void (anonymous namespace)::multimem_all_gather_kernel<16>(char*, char*, "
                       "unsigned long, unsigned int**, unsigned long, unsigned long)"),
    # same file: one_shot_all_reduce_kernel<T, alignment, k_world_size>
    ("torch-symm-mem", "void (anonymous namespace)::one_shot_all_reduce_kernel<c10::BFloat16, 16, 8>"
                       "(c10::BFloat16**, c10::BFloat16*, c10::BFloat16*, unsigned long, unsigned long, "
                       "unsigned int**, unsigned long, unsigned long)"),
    # same file: two_shot_all_reduce_kernel_inplace<T, alignment, k_world_size>
    ("torch-symm-mem", "void (anonymous namespace)::two_shot_all_reduce_kernel_inplace<float, 16, 4>"
                       "(float**, unsigned long, unsigned long, unsigned int**, unsigned long, unsigned long)"),
    # the namespace as the issue quotes it (c10d::symmetric_memory::)
    ("torch-symm-mem", "void c10d::symmetric_memory::(anonymous namespace)::multimem_all_reduce_kernel"
                       "<c10::BFloat16, 16>(c10::BFloat16*, unsigned long, unsigned int**, unsigned long, "
                       "unsigned long)"),
    # pytorch/pytorch torch/csrc/distributed/c10d/symm_mem/nvshmem_extension.cu (allToAllV)
    ("torch-symm-mem", "c10d::nvshmem_extension::allToAllV(void*, void*, long*, unsigned long, int)"),
    # deepseek-ai/DeepEP csrc/kernels/intranode.cu (namespace deep_ep::intranode)
    ("deepep", "void deep_ep::intranode::notify_dispatch<8>(int const*, int*, int const*, int*, int, int, "
               "int, bool const*, int*, int*, int, int, void**, int**, int, int)"),
    # deepseek-ai/DeepEP csrc/kernels/internode_ll.cu, as an SGLang decode trace names it
    ("deepep", "void deep_ep::internode_ll::dispatch<true, 3, 10, 7168>(void*, float*, int*, long*, int*, "
               "void*, int*, void*, void const*, long const*, int*, int*, int*, int, int, int, int, int, "
               "int, int, int)"),
    # deepseek-ai/DeepEP csrc/kernels/internode.cu
    ("deepep", "void deep_ep::internode::combine<false, 4, __nv_bfloat16, 16, 4, 4, 16, 24>(int4*, float*, "
               "bool const*, int4 const*, float const*, int const*, int const*, "
               "deep_ep::internode::SourceMeta const*, int const*, int const*, int const*, int, int, int, "
               "int, void*, int, int, void**, int, int, int, int)"),
    # deepseek-ai/profile-data prefill.json @449602428a1b (line 175934): DeepSeek's own build
    ("deepep", "void dpsk::ep::internode::dispatch<false, 4, false, 4>(int4*, float*, long*, float*, "
               "dpsk::ep::internode::SourceMeta*, int4 const*, float const*, long const*, float const*, "
               "int*, int*, int*, int*, int const*, int const*, int const*, int const*, int, int, int, int, "
               "int, bool const*, void*, int, int, void**, int, int, int, int, int*)"),
    # deepseek-ai/profile-data prefill.json @449602428a1b (line 178406)
    ("deepep", "void dpsk::ep::internode::cached_notify<false>(int, int, int, int, int*, int, int, int const*, "
               "int const*, int*, void*, void**, int**, int, int, int, int*, bool, int)"),
    # deepseek-ai/profile-data decode.json @449602428a1b (low-latency kernels)
    ("deepep", "void dpsk::ep::internode::combine_ll<3, 10, 7168, 9>(void*, void*, int*, void*, void const*, "
               "long const*, float const*, int const*, long const*, int*, int, int*, int, int, int, int, "
               "int, int, int, int*, int)"),
    # NVIDIA/nvshmem src/host/stream/coll/alltoall/alltoall.cu (alltoall_on_stream_kernel<TYPE>)
    ("nvshmem", "void alltoall_on_stream_kernel<float>(int, float*, float const*, unsigned long, int)"),
    # NVIDIA/nvshmem src/host/stream/coll/barrier/barrier.cu (barrier_on_stream_kernel_threadgroup<SCOPE>)
    ("nvshmem", "void barrier_on_stream_kernel_threadgroup<(threadgroup_t)3>(int, int)"),
    # ROCm/mori src/ops/dispatch_combine/intranode.hpp (EpDispatchIntraNodeKernel<T>)
    ("mori", "void mori::moe::EpDispatchIntraNodeKernel<__hip_bfloat16>(mori::moe::EpDispatchCombineArgs"
             "<__hip_bfloat16>)"),
    # ROCm/mori collective kernels (namespace mori::collective)
    ("mori", "void mori::collective::TwoShotAllReduceSdmaKernel<float>(int, int, float*, "
             "mori::application::SymmMemObjPtr, unsigned long)"),
    # ROCm/aiter csrc/include/custom_all_reduce.cuh (namespace aiter); as MI355X profiles show it
    ("aiter-allreduce", "void aiter::cross_device_reduce_2stage<__hip_bfloat16, 8, false>(aiter::RankData*, "
                        "aiter::RankData*, aiter::RankSignals, aiter::Signal*, __hip_bfloat16*, int, int)"),
    # vllm-project/vllm csrc/quickreduce/quick_reduce.h; ROCm/aiter csrc/include/quick_all_reduce.cuh
    ("aiter-allreduce", "void quickreduce::allreduce_prototype_twoshot<quickreduce::AllReduceTwoshot<__half, "
                        "quickreduce::CodecQ4<__half, 8>, true>, __half>(__half const*, __half*, unsigned int, "
                        "unsigned int, int, unsigned char**, unsigned int, unsigned int*, long)"),
    # vllm-project/vllm csrc/custom_all_reduce.cuh (namespace vllm)
    ("vllm-sglang-custom-allreduce", "void vllm::cross_device_reduce_1stage<__half, 2>(vllm::RankData*, "
                                     "vllm::RankSignals, vllm::Signal*, __half*, int, int)"),
    # sgl-project/sglang sgl-kernel/csrc/allreduce/custom_all_reduce.cuh (namespace sglang)
    ("vllm-sglang-custom-allreduce", "void sglang::cross_device_reduce_2stage<__nv_bfloat16, 8>("
                                     "sglang::RankData*, sglang::RankSignals, sglang::Signal*, "
                                     "__nv_bfloat16*, int, int)"),
    # NVIDIA/TensorRT-LLM cpp/tensorrt_llm/kernels/customAllReduceKernels.cu
    ("trtllm-allreduce", "void tensorrt_llm::kernels::oneShotAllReduceKernel<__nv_bfloat16, 8, true, false>"
                         "(tensorrt_llm::kernels::AllReduceParams)"),
    ("trtllm-allreduce", "void tensorrt_llm::kernels::twoShotAllReduceKernel<half, 4, true, false>"
                         "(tensorrt_llm::kernels::AllReduceParams)"),
    # NVIDIA/TensorRT-LLM cpp/tensorrt_llm/kernels/communicationKernels/allReduceFusionKernels.cu
    ("trtllm-allreduce-fusion", "void tensorrt_llm::kernels::ar_fusion::allreduce_fusion_kernel_oneshot_lamport"
                                "<(tensorrt_llm::kernels::ar_fusion::AllReduceFusionPattern)1, __nv_bfloat16, 8, "
                                "true, true>(tensorrt_llm::kernels::ar_fusion::AllReduceFusionParams)"),
    # flashinfer-ai/flashinfer include/flashinfer/comm/trtllm_allreduce_fusion.cuh
    ("trtllm-allreduce-fusion", "void flashinfer::trtllm_allreduce_fusion::allreduce_fusion_kernel_twoshot_sync"
                                "<__nv_bfloat16, 4, true>(flashinfer::trtllm_allreduce_fusion::"
                                "AllReduceFusionParams<__nv_bfloat16>, std::array<int, 4>, std::array<int, 4>)"),
    # microsoft/mscclpp apps/nccl/src/allreduce.hpp (allreduce8, global namespace in older versions)
    ("mscclpp", "void allreduce8<__nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*, "
                "mscclpp::DeviceHandle<mscclpp::SmChannel>*, mscclpp::DeviceHandle<mscclpp::SmChannel>*, "
                "unsigned long, int, int, int, unsigned long)"),
    # microsoft/mscclpp (namespace mscclpp::collective in newer versions)
    ("mscclpp", "void mscclpp::collective::allreduceAllPairs<(mscclpp::ReduceOp)0, float, float>(float*, "
                "float*, float*, mscclpp::DeviceHandle<mscclpp::MemoryChannel>*, unsigned long, unsigned long, "
                "int, int, int, unsigned long, unsigned int)"),
    # NVIDIA/TransformerEngine transformer_engine/common/comm_gemm_overlap/userbuffers/userbuffers.cu
    ("userbuffers", "void userbuffers_fp16_sum_inplace_gpu_rr_rs<8>(int, int, int, int, int, int, int, void**, "
                    "int, unsigned long)"),
    ("userbuffers", "kuserbuffers_pullsend(int, int, int*, int*)"),
]


@pytest.mark.parametrize(("family", "name"), REAL_NAMES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(REAL_NAMES)])
def test_real_name_caught_by_its_family(family, name):
    found = family_of(name)
    assert found is not None, name
    assert found.name == family


def test_every_family_has_a_real_name_here():
    assert {f.name for f in FAMILIES} == {family for family, _ in REAL_NAMES}


def test_table_well_formed():
    names = [f.name for f in FAMILIES]
    assert len(names) == len(set(names))
    for family in FAMILIES:
        assert isinstance(family, Family)
        assert family.op_class in ("comm", "fused")
        assert family.library and family.patterns and family.sources
        for pattern in family.patterns:
            re.compile(pattern)
        re.compile(family_pattern(family))
        for source in family.sources:
            # "owner/repo path" or a corpus file
            assert re.match(r"[\w.-]+/[\w.-]+ \S", source) or source.endswith((".gz", ".sqlite")), source


def test_fused_is_its_own_class():
    assert {f.name for f in FAMILIES if f.op_class == "fused"} == {"trtllm-allreduce-fusion"}


# Names that must NOT be caught by any family: compute kernels, some with communication words.
NEAR_MISSES = [
    # DeepSeek's profile-data prefill.json: CUB scan kernels in namespace cdpsk::ep::CUB_... (a
    # substring search for "dpsk::ep::" counts 596 kernels instead of DeepEP's 580)
    "void cdpsk::ep::CUB_200200_900_NS::DeviceScanByKeyKernel<int*, int*, int*>(int*, int*, int*, int)",
    # deepseek-ai/profile-data prefill.json: DeepEP's layout kernel only counts tokens locally
    "void dpsk::ep::cuda::get_dispatch_layout<256, 32, 8>(long const*, int*, int*, int*, bool*, int, int, int, int)",
    # deepseek-ai/DeepEP (older internode.cu layout kernel, as an SGLang trace names it)
    "void deep_ep::internode::get_dispatch_layout<256, 32, 8>(long const*, int*, int*, int*, bool*, int, int, int, int)",
    # a GEMM whose template arguments name an all-reduce fusion pattern (constructed)
    "void cutlass::device_kernel<flux::GemmAllReduce<AllReduceFusionPattern::kAllReduce, allreduce8>>(Params)",
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_allreduce_fusion_kernel_cublas",
    # corpus kernels with communication words (wild/tracelens-kineto, kineto/hta)
    "void cub::DeviceReduceByKeyKernel<cub::DispatchReduceByKey<long*, long*, cub::ConstantInputIterator<int, "
    "int>, int*, int*, cub::Equality, cub::Sum, int>::PtxReduceByKeyPolicy, long*, long*>(long*)",
    "void at::native::vectorized_gather_kernel<16, long>(char*, char*, long*, int, long, long, long, long, bool)",
    "sum_and_scatter",
    # corpus wild/tracelens-kineto/mi300x_sglang_qwen3_8b_prefilldecode.json.gz: aiter compute
    "_ZN5aiter24add_rmsnorm_quant_kernelIDF16bDF16bLi256ELi16ELb0ELb0ELb1ELi1EEEvPT0_PT_PfS4_S4_S4_diiiiiiib",
    # corpus: a spin kernel in an anonymous namespace
    "at::cuda::(anonymous namespace)::spin_kernel(long)",
    # a compute kernel whose name merely contains "nccl" later on must not be read as NCCL
    "void my_ext::pack_for_nccl<float>(float*, int)",
]


@pytest.mark.parametrize("name", NEAR_MISSES)
def test_near_miss_not_caught(name):
    assert family_of(name) is None


def test_first_match_in_table_order():
    # RCCL's Generic_N and NCCL send/recv also start with "nccl": the specific family wins
    assert family_of("ncclDevKernel_Generic_2").name == "rccl"
    assert family_of("ncclDevKernel_SendRecv").name == "nccl-alltoall"
    # a narrower table answers with what it has
    nccl_only = [f for f in FAMILIES if f.name == "nccl"]
    assert family_of("ncclDevKernel_SendRecv", nccl_only).name == "nccl"
    assert family_of("vllm::cross_device_reduce_1stage", nccl_only) is None


def test_families_of_each_distinct_name_once(monkeypatch):
    import overlapscope.trace.taxonomy as taxonomy

    calls = []
    real = taxonomy.family_of
    monkeypatch.setattr(taxonomy, "family_of", lambda name, families=FAMILIES: calls.append(name) or real(name, families))
    names = ["ncclDevKernel_Generic_1", "volta_sgemm_64x64_nn", "ncclDevKernel_Generic_1", "volta_sgemm_64x64_nn"]
    out = taxonomy.families_of(names)
    assert [f.name if f else None for f in out] == ["rccl", None, "rccl", None]
    assert sorted(calls) == sorted(set(names))


# --- the suspect heuristic ---------------------------------------------------------------------

# Real communication kernels that no family catches: the suspect list must name them.
SUSPECTS = [
    # NVIDIA/Fuser (extern "C" alltoallv_kernel in its multidevice CUDA sources)
    "alltoallv_kernel",
    # Meta torchcomms comms/pipes collectives (AllToAllv kernel)
    "comms::pipes::allToAllvKernel(void*, void const*, int, DeviceSpan<Transport>, DeviceSpan<ChunkInfo>, "
    "DeviceSpan<ChunkInfo>, Timeout)",
    # PyTorch ROCm nvshmem_extension (rocSHMEM all-to-all push, kernel allToAllVPush)
    "allToAllVPush(void*, void*, long*, long*, unsigned long, rocshmem::rocshmem_team*)",
    # an unknown engine's MoE dispatch kernel (constructed: the words the heuristic is for)
    "void myengine::moe_dispatch_kernel<__nv_bfloat16>(__nv_bfloat16*, int)",
    "void myengine::ep_combine<__nv_bfloat16>(__nv_bfloat16*, int)",
    "void pipeline::p2p_send_kernel(float*, int)",
    "void myengine::ring_allreduce<float>(float*, int)",
    "void myengine::reduce_scatter_kernel<float>(float*, int)",
]

NOT_SUSPECTS = [
    # deepseek-ai/profile-data decode trace (FlashMLA split-KV combine is attention math)
    "void flash::flash_fwd_splitkv_mla_combine_kernel<cutlass::bfloat16_t, float, long, 512, 64>(Flash_fwd_mla_params)",
    # CUB's DispatchReduceByKey (corpus wild/param-dlrm)
    "void cub::DeviceReduceByKeyKernel<cub::DispatchReduceByKey<long*, long*, cub::ConstantInputIterator<int, "
    "int>, int*, int*, cub::Equality, cub::Sum, int>::PtxReduceByKeyPolicy, long*>(long*)",
    # DeepEP's local layout kernel (deepseek-ai/profile-data prefill.json)
    "void dpsk::ep::cuda::get_dispatch_layout<256, 32, 8>(long const*, int*, int*, int*, bool*, int, int, int, int)",
    # CUTLASS epilogues that broadcast a bias vector
    "void cutlass::Kernel<cutlass::gemm::kernel::GemmWithFusedEpilogue<cutlass::epilogue::threadblock::"
    "EpilogueWithBroadcast<float>>>(Params)",
    # an elementwise kernel broadcasting its operands (index math, not communication)
    "void at::native::elementwise_kernel<128, 4, broadcast_add<float>>(int, broadcast_add<float>)",
    # corpus names with near words
    "void at::native::_scatter_gather_elementwise_kernel<128, 4>(int)",
    "void at::native::vectorized_gather_kernel<16, long>(char*, char*, long*, int, long, long, long, long, bool)",
    "radix_sort_block_sort_kernel",
    "void cutlass::Kernel<cutlass_80_tensorop_s16816gemm_bf16_128x64_64x4_tn_align8>(Params)",
]


@pytest.mark.parametrize("name", SUSPECTS)
def test_suspect_flagged(name):
    assert family_of(name) is None
    assert looks_like_comm(name)
    assert SUSPECT.search(name)


@pytest.mark.parametrize("name", NOT_SUSPECTS)
def test_not_suspect(name):
    assert not looks_like_comm(name)


@pytest.mark.parametrize(("name", "expected"), [
    ("void (anonymous namespace)::multimem_all_reduce_kernel<c10::BFloat16, 16>(c10::BFloat16*, unsigned long)",
     r"multimem_all_reduce_kernel\b"),
    ("void dpsk::ep::internode::dispatch<false, 4, false, 4>(int4*, float*)", r"internode::dispatch\b"),
    ("alltoallv_kernel", r"alltoallv_kernel\b"),
    ("void myengine::moe_dispatch_kernel<__nv_bfloat16>(__nv_bfloat16*, int)", r"moe_dispatch_kernel\b"),
])
def test_suggested_pattern(name, expected):
    assert suggested_pattern(name) == expected


@pytest.mark.parametrize("name", SUSPECTS + [n for _, n in REAL_NAMES] + NEAR_MISSES)
def test_suggested_pattern_counts_its_name(name):
    pattern = suggested_pattern(name)
    assert re.search(pattern, name)
    assert len(pattern) <= 2 * 60


def test_suggested_pattern_not_too_broad():
    # the DeepEP dispatch pattern must not also catch the layout kernel
    pattern = suggested_pattern("void deep_ep::intranode::dispatch<8, 768, 8192>(int4*, float*)")
    assert not re.search(pattern, "void deep_ep::layout::get_dispatch_layout<256, 32, 8>(long const*)")
    assert not re.search(pattern, "void deep_ep::intranode::notify_dispatch<8>(int const*)")


# --- the corpus, read independently ------------------------------------------------------------

def _kineto_kernels(*parts):
    with gzip.open(corpus_path(*parts), "rt") as f:
        events = json.load(f)["traceEvents"]
    return [e for e in events if isinstance(e, dict) and e.get("cat") == "kernel"]


# The corpus README's NCCL kernel counts per Kineto file.
README_NCCL = [
    (("kineto", "hta", "trace_filter_rank-0.json.gz"), 10),
    (("kineto", "hta", "trace_filter_rank-1.json.gz"), 10),
    (("kineto", "hta", "trace_diff_control.json.gz"), 60),
    (("kineto", "hta", "trace_diff_test.json.gz"), 64),
    (("kineto", "hta", "nccl_parser_config.json.gz"), 21),
    (("kineto", "hta", "negative_queue_rank0.json.gz"), 80),
    (("kineto", "hta", "df_index_resolver.json.gz"), 2020),
    (("wild", "param-dlrm", "worker0_step_12.1694128201545.pt.trace.json.gz"), 8),
    (("wild", "param-dlrm", "worker7_step_12.1694128201553.pt.trace.json.gz"), 8),
    (("wild", "tracelens-kineto", "mi300_resnet_act_checkpoint.json.gz"), 17),
    (("wild", "tracelens-kineto", "b200_vllm_tp_eager.json.gz"), 1),
]


@pytest.mark.parametrize(("parts", "count"), README_NCCL, ids=[p[-1] for p, _ in README_NCCL])
def test_corpus_nccl_kernels_caught(parts, count):
    kernels = _kineto_kernels(*parts)
    names = [k["name"] for k in kernels]
    nccl = [n for n in names if n.startswith("nccl")]
    assert len(nccl) == count
    found = families_of(names)
    assert all(f is not None and f.op_class == "comm" for n, f in zip(names, found) if n.startswith("nccl"))
    # no compute kernel of these traces is read as communication (the b200 symmetric-memory
    # kernels are communication)
    assert all(f is None for n, f in zip(names, found) if not n.startswith("nccl") and "multimem" not in n)
    # and none of their compute kernels floods the suspect list
    assert [n for n, f in zip(names, found) if f is None and looks_like_comm(n)] == []


def test_rocprofv3_rccl_kernels_caught():
    with gzip.open(corpus_path("wild", "tracelens-rocprofv3", "908_results.json.gz"), "rt") as f:
        tool = json.load(f)["rocprofiler-sdk-tool"][0]
    symbols = {s["kernel_id"]: s.get("truncated_kernel_name") or s.get("formatted_kernel_name")
               for s in tool["kernel_symbols"]}
    names = [symbols[r["dispatch_info"]["kernel_id"]] for r in tool["buffer_records"]["kernel_dispatch"]]
    assert len(names) == 43_915
    found = families_of(names)
    rccl = [n for n, f in zip(names, found) if f is not None]
    assert len(rccl) == 1_310
    assert {f.name for f in found if f is not None} == {"rccl"}
    assert [n for n, f in zip(names, found) if f is None and looks_like_comm(n)] == []


def test_b200_symmetric_memory_time_matches_independent_sum():
    kernels = _kineto_kernels("wild", "tracelens-kineto", "b200_vllm_tp_eager.json.gz")
    # independent: plain substring test over the raw events, durations in integer ns
    symm = [k for k in kernels if "multimem" in k["name"] or "one_shot_all_reduce" in k["name"]
            or "two_shot_all_reduce" in k["name"]]
    assert len(symm) == 73
    expected_ns = sum(round(k["dur"] * 1000) for k in symm)
    assert 2_000_000 < expected_ns < 2_200_000  # the README's "about 2.1 ms"
    found = families_of([k["name"] for k in kernels])
    symm_ns = sum(round(k["dur"] * 1000) for k, f in zip(kernels, found) if f is not None and f.name == "torch-symm-mem")
    assert symm_ns == expected_ns
    comm_ns = sum(round(k["dur"] * 1000) for k, f in zip(kernels, found) if f is not None)
    nccl_ns = sum(round(k["dur"] * 1000) for k in kernels if k["name"].startswith("nccl"))
    assert comm_ns == expected_ns + nccl_ns
