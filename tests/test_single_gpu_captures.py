"""Real captures on one H200 (scripts/gpu_single_h200.sh, 2026-12-02; tests/data/h200_single_gpu/):
the staging transfer at world size 1. `unsynced` corrupted 6 of 6 steps under both profilers (the
run.json numerics checks); before #11.4 the race checker called all 6 of its host-consumer findings
*latent*, because the GPU gather and the host read never overlapped in time: the read ran before the
gather it was issued after. They are manifest now. `synced` has no finding."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from corpus import REPO
from overlapscope.pipeline import load
from overlapscope.races import check_races

DATA = REPO / "tests" / "data" / "h200_single_gpu"


def numerics_failed(run) -> int:
    manifest = json.loads((run / "run.json").read_text())
    return sum(check["ok"] is False for rank in manifest["numerics"] for check in rank)


@pytest.mark.parametrize("capture", ["staging-unsynced-torch", "staging-unsynced-nsys"])
def test_unsynced_corrupts_every_step_and_every_finding_is_manifest(capture):
    run = DATA / capture
    assert numerics_failed(run) == 6
    report = check_races(load([run]))
    assert report.verdict == "races"
    assert Counter((f.rule, f.kind) for f in report.findings) == {("host-consumer", "manifest"): 6}
    # the race bit by order, not by overlap: the read ran entirely before the gather issued ahead of it
    assert {f.timing for f in report.findings} == {"inverted"}
    assert all(f.second.end_ns <= f.first.start_ns for f in report.findings)
    assert len({f.step for f in report.findings}) == 6


def test_synced_has_no_finding():
    run = DATA / "staging-synced-nsys"
    assert numerics_failed(run) == 0
    report = check_races(load([run]))
    assert report.verdict == "none" and not report.findings
