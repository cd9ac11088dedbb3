"""The pipeline regression test: every sample trace and corpus file gives, through the real
command, exactly the output recorded in tests/golden/pipeline/ (scripts/pipeline_golden.py).

A deliberate behaviour change is recorded again with `python scripts/pipeline_golden.py --write`
and named in the commit; anything else that moves a byte here is a regression."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from corpus import CORPUS, REPO

_spec = importlib.util.spec_from_file_location("pipeline_golden", REPO / "scripts" / "pipeline_golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

CASES = golden.cases()


def test_every_case_has_a_record():
    recorded = {p.stem for p in golden.GOLDEN.glob("*.json")}
    if not CORPUS.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"corpus missing in CI: {CORPUS}")
        pytest.skip("corpus missing")
    assert set(CASES) == recorded


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_output_as_recorded(name, monkeypatch):
    args = CASES[name]
    if any(a.startswith("@corpus/") for a in args) and not CORPUS.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"corpus missing in CI: {CORPUS}")
        pytest.skip("corpus missing")
    monkeypatch.chdir(REPO)
    expected = json.loads((golden.GOLDEN / f"{name}.json").read_text())
    assert golden.record(args) == expected
