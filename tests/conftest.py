"""Shared test settings."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """`analyze` caches parsed traces by default: keep the tests' entries out of ~/.cache."""
    monkeypatch.setenv("OVERLAPSCOPE_CACHE", str(tmp_path_factory.getbasetemp() / "overlapscope-cache"))
