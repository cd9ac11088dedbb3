"""Matching names (kernels, host ranges) against regular expressions: the one helper every
reader and analysis uses. Each distinct name is tested once (`re.search`) and the answer is
broadcast through the categorical codes, so a million rows cost as many tests as there are
distinct names."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..errors import BadInput


def compile_regex(text: str, parameter: str) -> re.Pattern[str]:
    """`text` compiled; a bad one is BadInput naming the library `parameter` it came from."""
    try:
        return re.compile(text)
    except re.error as e:
        raise BadInput(parameter, f"invalid regular expression {text!r}: {e}") from None


def compile_all(texts: Iterable[str], parameter: str) -> list[re.Pattern[str]]:
    return [compile_regex(t, parameter) for t in texts]


def names_matching(names: pd.Series | pd.Categorical,
                   pattern: re.Pattern[str] | list[re.Pattern[str]]) -> np.ndarray:
    """Boolean mask: the rows whose name matches `pattern` (or any of a list of patterns); a
    missing name never matches."""
    cat = names.cat if isinstance(names, pd.Series) else names
    codes = np.asarray(cat.codes)
    hit = distinct_matching(cat.categories, pattern if isinstance(pattern, list) else [pattern])
    if not hit.size:
        return np.zeros(codes.size, dtype=bool)
    return np.where(codes >= 0, hit[np.clip(codes, 0, None)], False)


def distinct_matching(categories: Iterable[str], patterns: list[re.Pattern[str]]) -> np.ndarray:
    """For each distinct name: whether any of `patterns` matches it."""
    names = list(categories)
    return np.fromiter((any(p.search(str(n)) for p in patterns) for n in names), dtype=bool, count=len(names))
