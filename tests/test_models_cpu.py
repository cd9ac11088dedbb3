"""Every reference model and variant on two gloo ranks on the CPU (small sizes).

Streams are no-ops on a CPU, so every op runs in program order: the buggy variants cannot race
here and reproduce their baseline too; that they fail on a GPU is measured by the GPU captures.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import reference_models  # noqa: E402
from overlapscope.capture.launch import spawn_ranks  # noqa: E402

STEPS = 3
# Beyond each model's SMALL sizes: a one-layer and a three-layer TBO block, and the NSA indexer with a straggler.
EXTRA_CASES = [("deepseek_v4_tbo", {"layers": "1"}), ("deepseek_v4_tbo", {"layers": "3", "hash_layers": "2"}),
               ("deepseek_v32_nsa_cp", {"straggler_us": "300"})]


def _cases() -> list[tuple[str, dict[str, str]]]:
    return [(name, {}) for name in reference_models.MODELS] + EXTRA_CASES


def _every_variant(ctx: Any, out: str) -> None:
    """Rank body: build each model, configuration and variant in turn, run a few steps, record every
    check and the names of the regions each step opened."""
    records = []
    for name, overrides in _cases():
        config = reference_models.resolve_config(name, True, overrides, ctx.world_size)
        module = reference_models.load(name)
        for variant in reference_models.MODELS[name].variants:
            model = module.build(config, ctx, variant)
            try:
                for step in range(STEPS):
                    with _regions_opened(module) as ranges:
                        model.forward(step)
                    result = model.check(step)
                    records.append({"model": name, "overrides": overrides, "variant": variant, "step": step,
                                    "rank": ctx.rank, "ok": result.numerics_ok, "err": result.max_abs_err,
                                    "detail": result.detail, "ranges": sorted(ranges)})
            finally:
                model.close()
    Path(out, f"rank-{ctx.rank}.json").write_text(json.dumps(records))


@contextlib.contextmanager
def _regions_opened(module: Any) -> Iterator[set[str]]:
    """The names the model passes to overlapscope.instrument.region while inside."""
    names: set[str] = set()
    original = module.region

    def recording(name: str, *args: Any, **kwargs: Any) -> Any:
        names.add(name)
        return original(name, *args, **kwargs)

    module.region = recording
    try:
        yield names
    finally:
        module.region = original


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("models")
    spawn_ranks(_every_variant, 2, "cpu", str(out))
    return [r for rank in (0, 1) for r in json.loads((out / f"rank-{rank}.json").read_text())]


def test_every_model_and_variant_ran_every_step_on_both_ranks(records: list[dict[str, Any]]) -> None:
    expected = {(m, v) for m, spec in reference_models.MODELS.items() for v in spec.variants}
    seen = {(r["model"], r["variant"]) for r in records}
    assert seen == expected
    runs = sum(len(reference_models.MODELS[m].variants) for m, _ in _cases())
    assert len(records) == 2 * STEPS * runs


def test_correct_variants_reproduce_their_baseline_bit_for_bit(records: list[dict[str, Any]]) -> None:
    for r in records:
        if r["variant"] not in reference_models.MODELS[r["model"]].buggy:
            assert r["ok"], r
            assert r["err"] == 0.0, r


def test_buggy_variants_cannot_race_on_a_cpu(records: list[dict[str, Any]]) -> None:
    """No concurrency without streams: the race is latent here, so the numbers still agree."""
    buggy = [r for r in records if r["variant"] in reference_models.MODELS[r["model"]].buggy]
    assert buggy and all(r["ok"] and math.isfinite(r["err"]) for r in buggy)


@pytest.mark.parametrize("layers", [1, 3])
def test_tbo_has_regions_per_layer_and_micro_batch_inside_the_block(records: list[dict[str, Any]], layers: int) -> None:
    runs = [r for r in records if r["model"] == "deepseek_v4_tbo" and r["overrides"].get("layers") == str(layers)]
    assert {r["variant"] for r in runs} == {"inline", "comm-stream", "wrong-join"}
    stages = ("attention", "dp_allgather", "moe", "combine_outputs")
    expected = {"tbo/block", *(f"tbo/l{i}" for i in range(layers)),
                *(f"tbo/l{i}/mb{m}/{s}" for i in range(layers) for m in (0, 1) for s in stages)}
    for r in runs:
        tbo = {n for n in r["ranges"] if n.startswith("tbo/")}
        assert tbo == expected, (r["variant"], sorted(tbo ^ expected))


def test_nsa_indexer_straggler_is_a_knob_of_every_variant(records: list[dict[str, Any]]) -> None:
    """The straggler (the last rank reaches the gather late) runs on a CPU as a host sleep; the race it
    lets bite on a GPU needs streams, so here every variant still reproduces the baseline."""
    runs = [r for r in records if r["model"] == "deepseek_v32_nsa_cp" and r["overrides"]]
    assert {r["variant"] for r in runs} == {"serial", "alt-stream", "missing-join"}
    assert all(r["ok"] for r in runs)
    straggled = {r["rank"] for r in runs if "nsa_cp/indexer/straggler" in r["ranges"]}
    assert straggled == {1}  # the last rank, in every step of every variant
    assert sum("nsa_cp/indexer/straggler" in r["ranges"] for r in runs) == 3 * STEPS
    with pytest.raises(ValueError, match="straggler_us=-1"):
        reference_models.resolve_config("deepseek_v32_nsa_cp", True, {"straggler_us": "-1"}, 2)


def test_every_reference_model_is_registered_by_name_as_a_workload() -> None:
    from overlapscope.capture.workloads import REFERENCE_MODELS, resolve

    assert set(REFERENCE_MODELS) == set(reference_models.MODELS)
    for name, spec in reference_models.MODELS.items():
        info = resolve(name).info
        assert (info.variants, info.baseline_variant, info.buggy) == (spec.variants, spec.baseline, spec.buggy)
        assert (info.overlap_region, info.head_start) == (spec.overlap_region, spec.head_start)
        assert dict(info.defaults) == reference_models.load(name).DEFAULTS


# ---- the pieces with a closed form -------------------------------------------------------------
def test_hadamard_is_the_fast_walsh_hadamard_transform_scaled_to_be_orthonormal() -> None:
    from reference_models.deepseek_v32_nsa_cp import hadamard_matrix, rotate_activation

    d = 16
    h = hadamard_matrix(d, torch.device("cpu"), torch.float64)
    x = torch.randn(5, 3, d, dtype=torch.float64)
    butterfly = x.clone()
    span = 1
    while span < d:  # the textbook in-place butterfly, as the reference
        pairs = butterfly.view(5, 3, d // (2 * span), 2, span)
        a, b = pairs[..., 0, :].clone(), pairs[..., 1, :].clone()
        pairs[..., 0, :], pairs[..., 1, :] = a + b, a - b
        span *= 2
    torch.testing.assert_close(rotate_activation(x, h), butterfly / d ** 0.5)
    torch.testing.assert_close(h @ h.t(), torch.eye(d, dtype=torch.float64))
    with pytest.raises(ValueError, match="power-of-two"):
        hadamard_matrix(12, torch.device("cpu"), torch.float32)


def test_zigzag_layout_gives_rank_r_blocks_r_and_2cp_minus_1_minus_r() -> None:
    from reference_models.deepseek_v32_nsa_cp import zigzag_order, zigzag_positions

    cp, block = 2, 2
    assert zigzag_positions(0, cp, block).tolist() == [0, 1, 6, 7]
    assert zigzag_positions(1, cp, block).tolist() == [2, 3, 4, 5]
    by_rank = torch.cat([zigzag_positions(r, cp, block) for r in range(cp)]).view(2 * cp, block)
    assert by_rank[zigzag_order(cp)].flatten().tolist() == list(range(2 * cp * block))


def test_config_overrides_are_cast_to_the_default_type_and_checked() -> None:
    config = reference_models.resolve_config("deepseek_v4_tbo", True, {"layers": "3", "dtype": "bfloat16"}, 2)
    assert config["layers"] == 3 and config["dtype"] == "bfloat16" and config["hidden"] == 64
    with pytest.raises(ValueError, match="unknown key 'nope'"):
        reference_models.resolve_config("deepseek_v4_tbo", True, {"nope": "1"}, 2)
    with pytest.raises(ValueError, match="layers='x': expected int"):
        reference_models.resolve_config("deepseek_v4_tbo", True, {"layers": "x"}, 2)
    with pytest.raises(ValueError, match="top_k=9"):
        reference_models.resolve_config("deepseek_v4_tbo", True, {"top_k": "9"}, 2)
