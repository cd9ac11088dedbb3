"""Every reference model and variant on two gloo ranks on the CPU (small sizes).

Streams are no-ops on a CPU, so every op runs in program order: the buggy variants cannot race
here and reproduce their baseline too; that they fail on a GPU is measured by the GPU captures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import reference_models  # noqa: E402
from overlapscope.capture.launch import spawn_ranks  # noqa: E402

STEPS = 3


def _every_variant(ctx: Any, out: str) -> None:
    """Rank body: build each model and variant in turn, run a few steps, record every check."""
    records = []
    for name, spec in reference_models.MODELS.items():
        config = reference_models.resolve_config(name, True, {}, ctx.world_size)
        for variant in spec.variants:
            model = reference_models.load(name).build(config, ctx, variant)
            try:
                for step in range(STEPS):
                    model.forward(step)
                    result = model.check(step)
                    records.append({"model": name, "variant": variant, "step": step, "ok": result.numerics_ok,
                                    "err": result.max_abs_err, "detail": result.detail})
            finally:
                model.close()
    Path(out, f"rank-{ctx.rank}.json").write_text(json.dumps(records))


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("models")
    spawn_ranks(_every_variant, 2, "cpu", str(out))
    return [r for rank in (0, 1) for r in json.loads((out / f"rank-{rank}.json").read_text())]


def test_every_model_and_variant_ran_every_step_on_both_ranks(records: list[dict[str, Any]]) -> None:
    expected = {(m, v) for m, spec in reference_models.MODELS.items() for v in spec.variants}
    seen = {(r["model"], r["variant"]) for r in records}
    assert seen == expected
    assert len(records) == 2 * STEPS * len(expected)


def test_correct_variants_reproduce_their_baseline_bit_for_bit(records: list[dict[str, Any]]) -> None:
    for r in records:
        if r["variant"] not in reference_models.MODELS[r["model"]].buggy:
            assert r["ok"], r
            assert r["err"] == 0.0, r


def test_buggy_variants_cannot_race_on_a_cpu(records: list[dict[str, Any]]) -> None:
    """No concurrency without streams: the race is latent here, so the numbers still agree."""
    buggy = [r for r in records if r["variant"] in reference_models.MODELS[r["model"]].buggy]
    assert buggy and all(r["ok"] and math.isfinite(r["err"]) for r in buggy)


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
