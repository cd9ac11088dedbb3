"""What the reference models' sample traces (2 x H200) show, and that the README says exactly that.

The numerics checks in each run.json are the independent oracle for the race checker: a buggy
variant's check fails only when its race bit, so every failed rank-step must have a manifest
finding of the intended rule, and the correct variants and baselines must have none.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_traces"
SIZE_BUDGET = 40 * 1024 * 1024

# The rule each buggy variant must trigger, and the buffers its marks name. Kineto traces from
# PyTorch 2.11 / CUDA 13 do not say which stream a wait waited for, so the wrong join (a join into
# another stream) cannot be told from having no join there: the same pair is a cross-stream race.
INTENDED = {
    ("deepseek_v4_tbo", "wrong-join", "nsys"): ("wrong-join", ("gathered_hidden", "gathered_ids")),
    ("deepseek_v4_tbo", "wrong-join", "torch"): ("cross-stream", ("gathered_hidden", "gathered_ids")),
    ("deepseek_v32_nsa_cp", "missing-join", "nsys"): ("cross-stream", ("keys",)),
    ("deepseek_v32_nsa_cp", "missing-join", "torch"): ("cross-stream", ("keys",)),
    ("staging_transfer", "unsynced", "nsys"): ("host-consumer", ("staging",)),
    ("staging_transfer", "unsynced", "torch"): ("host-consumer", ("staging",)),
}


def _load_sample_table():
    spec = importlib.util.spec_from_file_location("sample_table", REPO / "scripts" / "sample_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sample_table"] = module
    spec.loader.exec_module(module)
    return module


sample_table = _load_sample_table()


@pytest.fixture(scope="module")
def samples() -> dict:
    found = sample_table.measure_all()
    assert found, "no sample traces under sample_traces/"
    return {(s.model, s.variant, s.profiler): s for s in found}


def test_every_model_and_variant_is_captured_with_both_profilers_under_the_budget():
    from reference_models import MODELS

    for model, spec in MODELS.items():
        for variant in spec.variants:
            for profiler, files in (("torch", {"rank-0.trace.json.gz", "rank-1.trace.json.gz", "rank-0.et.json.gz",
                                               "rank-1.et.json.gz", "run.json"}),
                                    ("nsys", {"trace.sqlite", "run.json"})):
                path = SAMPLES / model / variant / profiler
                assert {p.name for p in path.iterdir()} == files, path
    assert sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file()) < SIZE_BUDGET


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*/*/*/run.json")), ids=lambda p: str(p.parent.relative_to(SAMPLES)))
def test_run_json_says_where_and_how_it_was_captured(path: Path):
    manifest = json.loads(path.read_text())
    model, variant, profiler = path.parent.relative_to(SAMPLES).parts
    assert (manifest["model"], manifest["variant"], manifest["profiler"]) == (model, variant, profiler)
    assert (manifest["device"], manifest["world_size"], manifest["gpu_name"]) == ("cuda", 2, "NVIDIA H200")
    assert all(manifest["versions"][k] for k in ("driver", "cuda", "torch", "nccl", "python"))
    assert manifest["command"][:3] == ["overlapscope", "run", model]
    assert [len(r) for r in manifest["numerics"]] == [len(r) for r in manifest["step_times_ms"]] == [6, 6]


def test_correct_variants_and_baselines_have_no_race(samples):
    clean = {k: s for k, s in samples.items() if k not in INTENDED}
    assert len(clean) == 12
    for key, s in clean.items():
        assert s.findings == [], (key, s.findings[:1])
        assert s.failed == 0, key


def test_nsys_captures_leave_no_pair_unchecked(samples):
    """With the event records nsys keeps, every wait resolves: "none" there means none."""
    nsys = [s for (_, _, profiler), s in samples.items() if profiler == "nsys"]
    assert len(nsys) == 9
    assert [s.unchecked_pairs for s in nsys] == [0] * 9


@pytest.mark.parametrize("key", sorted(INTENDED), ids="/".join)
def test_buggy_variant_yields_the_intended_finding_manifest_where_numerics_failed(samples, key):
    rule, buffers = INTENDED[key]
    s = samples[key]
    assert s.findings, key
    assert {f.rule for f in s.findings} == {rule}
    assert all(any(b in f.buffer for b in buffers) for f in s.findings)
    manifest = {(f.rank, f.step) for f in s.findings if f.kind == "manifest"}
    found = {(f.rank, f.step) for f in s.findings}
    run = json.loads((SAMPLES.joinpath(*key) / "run.json").read_text())
    world = run["world_size"]
    for rank, checks in enumerate(run["numerics"]):
        for i, check in enumerate(checks):
            # the staging receiver checks what the previous rank's transfer wrote into it
            culprit = (rank - 1) % world if key[0] == "staging_transfer" else rank
            where = (culprit, f"ProfilerStep#{i + 1}")
            assert where in found, (key, where)
            if not check["ok"]:
                assert where in manifest, (key, where)


def test_overlap_targets_of_the_issue(samples):
    def pcts(model, variant):
        return [p for prof in ("torch", "nsys") for p in samples[(model, variant, prof)].overlap_pct]

    assert min(pcts("deepseek_v4_tbo", "comm-stream")) >= 85.0
    assert max(pcts("deepseek_v4_tbo", "inline")) <= 15.0
    assert min(pcts("deepseek_v32_nsa_cp", "alt-stream")) >= 80.0
    assert max(pcts("deepseek_v32_nsa_cp", "serial")) <= 10.0


def test_readme_table_is_what_the_traces_show(samples):
    text = sample_table.markdown(list(samples.values()))
    readme = (REPO / "README.md").read_text()
    assert sample_table.with_table(readme, text) == readme, "run: python scripts/sample_table.py --write"
