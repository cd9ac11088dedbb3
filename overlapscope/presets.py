"""Regions for the engines' own range names, as data: `--preset NAME` adds a preset's regexes to
the `--region`s given (docs/presets.md).

Each regex is a `--region` exactly as a user would write it (`re.search` on host range names,
NVTX or record_function). Every name is cited where it was seen: the engine's source file that
opens the range, or a real trace that carries it. The engines only open most of these ranges
when asked to; the environment variable that turns them on is in each preset's description.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadInput


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    regions: tuple[str, ...]
    source: str  # where the range names come from


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="sglang-tbo",
            description=(
                "SGLang two-batch overlap (TBO): the stages of micro-batches a and b, the DeepEP "
                "dispatch/combine operations and the DP-attention communicator operations inside them, "
                "and SGLang's per-forward step range. Stage and operation ranges are opened "
                "(record_function + NVTX) only with SGLANG_OPERATIONS_ENABLE_PROFILE=1 (older SGLang: "
                "SGLANG_TBO_ENABLE_PROFILE=1) and the `nvtx` package installed."
            ),
            regions=(
                # TBO stages: _StageExecutor("a" | "b").next() opens f"{debug_name}{index}": a0, a1, ..., b0, ...
                # sgl-project/sglang python/sglang/srt/batch_overlap/operations.py (_StageExecutor.next,
                # _annotate_region); before the move: python/sglang/srt/two_batch_overlap.py, same names
                r"^[ab]\d+$",
                # DeepEP dispatch / combine halves: op.debug_name = fn.__name__ with "op_" removed
                # (operations.py _decorate_operation) for layer.mlp.op_dispatch_a/_b, op_combine_a/_b:
                # sgl-project/sglang python/sglang/srt/batch_overlap/operations_strategy.py
                # (_compute_moe_deepseek_blog_prefill / _decode, _compute_moe_qwen3_*)
                r"^(?:dispatch|combine)_[ab]$",
                # the layer communicator (DP-attention gathers / scatters): layer.op_comm_prepare_attn,
                # op_comm_prepare_mlp, op_comm_postprocess_layer, same file and rule
                r"^comm_(?:prepare_attn|prepare_mlp|postprocess_layer)$",
                # one forward: step[EXTEND bs=15 toks=15360], step[DECODE bs=64], step[MIXED bs=2 ...]
                # seen in ../shared/corpus/wild/tracelens-kineto/mi300x_sglang_qwen3_8b_prefilldecode.json.gz
                # (AMD-AGI/TraceLens tests/traces), an SGLang server trace
                r"^step\[(?:EXTEND|DECODE|MIXED)\b.*\]$",
            ),
            source=(
                "sgl-project/sglang python/sglang/srt/batch_overlap/operations.py, "
                "python/sglang/srt/batch_overlap/operations_strategy.py (older: python/sglang/srt/"
                "two_batch_overlap.py); step[...]: corpus trace wild/tracelens-kineto/"
                "mi300x_sglang_qwen3_8b_prefilldecode.json.gz"
            ),
        ),
        Preset(
            name="vllm",
            description=(
                "vLLM V1: one range per engine iteration (opened by the worker's torch profiler), and "
                "the model runner's forward and the rest of the step (opened with "
                "VLLM_CUSTOM_SCOPES_FOR_PROFILING=1 as record_function, or "
                "VLLM_NVTX_SCOPES_FOR_PROFILING=1 as NVTX)."
            ),
            regions=(
                # one iteration: GPUWorker.annotate_profile(), vllm-project/vllm vllm/v1/worker/gpu_worker.py:
                # "execute_context_{n}({tokens})_generation_{n}({tokens})"; older releases
                # f"execute_new_{num_new}_cached_{num_cached}". Seen in ../shared/corpus/wild/tracelens-kineto/
                # b200_vllm_tp_eager.json.gz: "execute_context_1(888_788544)_generation_0(0)"
                r"^execute_(?:context_\d+\(.*\)_generation_\d+\(.*\)|new_\d+_cached_\d+)$",
                # the forward pass: record_function_or_nullcontext("gpu_model_runner: forward"),
                # vllm-project/vllm vllm/v1/worker/gpu_model_runner.py (helper: vllm/v1/utils.py)
                r"^gpu_model_runner: forward$",
                # the rest of the step, same file: "gpu_model_runner: preprocess", ": postprocess",
                # ": sample", ": draft"
                r"^gpu_model_runner: (?:preprocess|postprocess|sample|draft)$",
            ),
            source=(
                "vllm-project/vllm vllm/v1/worker/gpu_worker.py (annotate_profile), "
                "vllm/v1/worker/gpu_model_runner.py and vllm/v1/utils.py (record_function_or_nullcontext); "
                "corpus trace wild/tracelens-kineto/b200_vllm_tp_eager.json.gz"
            ),
        ),
        Preset(
            name="atom",
            description=(
                "ROCm/ATOM: its model runner wraps every forward in a record_function named after the "
                "batch: prefill[...] for prefills, decode[...] for CUDA-graph decodes and "
                "eager_decode[...] for decodes run eagerly."
            ),
            regions=(
                # ModelRunner.run_model(): label = f"prefill[bs={bs}" + f" tok=... ctx=...]",
                # ROCm/ATOM atom/model_engine/model_runner.py; e.g. "prefill[bs=2 tok=14721 ctx=[7803, 6918]]"
                r"^prefill\[.*\]$",
                # same function: f"decode[bs={bs}" + " tok=... [p=...] d=... [spec=...]]" around the graph
                # replay, and f"eager_decode[bs={bs}...]" when the decode runs eagerly;
                # e.g. "decode[bs=128 tok=128 d=128]" (the comment in run_model)
                r"^(?:eager_)?decode\[.*\]$",
            ),
            source=(
                "ROCm/ATOM atom/model_engine/model_runner.py (ModelRunner.run_model); the issue's "
                "prefill[...]/decode[...] (ROCm/ATOM PR #1121 measured TBO overlap on these)"
            ),
        ),
    )
}


def expand_regions(regions: list[str] | tuple[str, ...], presets: list[str] | tuple[str, ...]) -> list[str]:
    """The `--region`s given, then each `--preset`'s regions, each regex once, in that order."""
    out: list[str] = []
    for regex in list(regions) + [r for name in presets for r in preset(name).regions]:
        if regex not in out:
            out.append(regex)
    return out


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise BadInput("preset", f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})") from None
