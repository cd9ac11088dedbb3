"""Access to ../shared/corpus: real traces nobody here wrote. Never copied into the repository.

A missing corpus skips on a developer's machine and fails in CI (CI=true)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"  # ../shared beside the checkout


def corpus_path(*parts: str) -> Path:
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        message = f"corpus file missing: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def corpus_files(folder: str, pattern: str) -> list[Path]:
    """Files for parametrize at import time: an empty list (the tests skip) when the corpus is
    missing on a developer's machine; in CI a missing corpus stops the run."""
    files = sorted(CORPUS.joinpath(folder).rglob(pattern))
    if not files and os.environ.get("CI") == "true":
        raise RuntimeError(f"corpus missing in CI: {CORPUS / folder} has no {pattern}")
    return files
