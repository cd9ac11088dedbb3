"""Presets: each engine's regions compile and match the real range names they were written for
(each name cited where it was seen), and an unknown preset is bad input."""

from __future__ import annotations

import re

import pytest

from corpus import corpus_path
from overlapscope.errors import BadInput
from overlapscope.overlap import analyze
from overlapscope.pipeline import load
from overlapscope.presets import PRESETS, expand_regions

# name -> the preset regex (by index) it must match
REAL_NAMES = {
    "sglang-tbo": [
        # sgl-project/sglang python/sglang/srt/batch_overlap/operations.py, _StageExecutor.next():
        # f"{self._debug_name}{self._index}" with executors "a" and "b"
        ("a0", 0), ("a4", 0), ("b0", 0), ("b12", 0),
        # same file, _decorate_operation: fn.__name__.replace("op_", ""), for the operations listed in
        # python/sglang/srt/batch_overlap/operations_strategy.py (_compute_moe_deepseek_blog_decode)
        ("dispatch_a", 1), ("dispatch_b", 1), ("combine_a", 1), ("combine_b", 1),
        ("comm_prepare_attn", 2), ("comm_prepare_mlp", 2), ("comm_postprocess_layer", 2),
        # ../shared/corpus/wild/tracelens-kineto/mi300x_sglang_qwen3_8b_prefilldecode.json.gz
        ("step[EXTEND bs=15 toks=15360]", 3),
    ],
    "vllm": [
        # ../shared/corpus/wild/tracelens-kineto/b200_vllm_tp_eager.json.gz (vllm/v1/worker/gpu_worker.py
        # annotate_profile: "execute_context_" n "(" tokens ")_generation_" n "(" tokens ")")
        ("execute_context_1(888_788544)_generation_0(0)", 0),
        ("execute_context_0(0)_generation_64(64)", 0),
        # older vllm/v1/worker/gpu_worker.py annotate_profile: f"execute_new_{num_new}_cached_{num_cached}"
        ("execute_new_2_cached_30", 0),
        # vllm/v1/worker/gpu_model_runner.py record_function_or_nullcontext(...)
        ("gpu_model_runner: forward", 1),
        ("gpu_model_runner: preprocess", 2), ("gpu_model_runner: postprocess", 2),
        ("gpu_model_runner: sample", 2), ("gpu_model_runner: draft", 2),
    ],
    "atom": [
        # ROCm/ATOM atom/model_engine/model_runner.py, ModelRunner.run_model(): f"prefill[bs={bs}" ...
        ("prefill[bs=2 tok=14721 ctx=[7803, 6918]]", 0),
        ("prefill[bs=1 tok=8192 ctx=8192]", 0),
        # same function: f"decode[bs={bs}" ... (its comment: "decode[bs=128 tok=128 p=2 d=126 spec=3]")
        ("decode[bs=128 tok=128 d=128]", 1), ("decode[bs=128 tok=128 p=2 d=126 spec=3]", 1),
        # same function, eager decodes: f"eager_decode[bs={bs}" + f" tok=... ctx=...]"
        ("eager_decode[bs=3 tok=3 ctx=[10, 12, 9]]", 1),
    ],
}
# names of neighbouring ranges that must not be swept in
NOT_MATCHED = {
    "sglang-tbo": ["primary0", "ab0", "a", "experts", "gate", "dispatch", "step_align", "tbo/block"],
    "vllm": ["execute_model", "gpu_model_runner: forwardx", "ProfilerStep#3"],
    "atom": ["prefill", "decode_step_3", "draft[1/3 bs=4]", "predecode[bs=1]"],
}


def test_every_preset_is_cited_and_tested():
    assert set(PRESETS) == set(REAL_NAMES) == {"sglang-tbo", "vllm", "atom"}
    for name, p in PRESETS.items():
        assert p.name == name and p.description and p.source and p.regions


@pytest.mark.parametrize("name", sorted(REAL_NAMES))
def test_regions_compile_and_match_the_real_names(name):
    regexes = [re.compile(r) for r in PRESETS[name].regions]
    for real, index in REAL_NAMES[name]:
        hits = [i for i, rx in enumerate(regexes) if rx.search(real)]
        assert hits == [index], (real, hits)
    assert {i for _, i in REAL_NAMES[name]} == set(range(len(regexes)))  # every region is exercised
    for other in NOT_MATCHED[name]:
        assert not any(rx.search(other) for rx in regexes), other


def test_expand_regions_keeps_order_and_drops_repeats():
    vllm = list(PRESETS["vllm"].regions)
    assert expand_regions(["^tbo$"], []) == ["^tbo$"]
    assert expand_regions(["^tbo$", vllm[1]], ["vllm"]) == ["^tbo$", vllm[1], vllm[0], vllm[2]]
    assert expand_regions([], ["atom", "atom"]) == list(PRESETS["atom"].regions)


def test_unknown_preset_is_bad_input():
    with pytest.raises(BadInput) as e:
        expand_regions(["x"], ["vllm", "trtllm"])
    assert e.value.source == "preset"
    assert e.value.problem == "unknown preset 'trtllm' (known: atom, sglang-tbo, vllm)"


@pytest.mark.parametrize("file, preset, region", [
    ("b200_vllm_tp_eager.json.gz", "vllm", 0),
    ("mi300x_sglang_qwen3_8b_prefilldecode.json.gz", "sglang-tbo", 3),
])
def test_presets_find_their_ranges_in_real_engine_traces(file, preset, region):
    trace = load([corpus_path("wild", "tracelens-kineto", file)])
    rows = {r.region: r for r in analyze(trace, expand_regions([], [preset])).regions}
    assert rows[PRESETS[preset].regions[region]].ranges >= 1
