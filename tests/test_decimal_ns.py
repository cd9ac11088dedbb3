"""Exact microsecond-text → nanosecond conversion against Python's Decimal."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from overlapscope.trace.decimal_ns import NotANumber, us_text_to_ns

number_text = st.one_of(
    st.tuples(st.integers(0, 8_999_999_999_999_999), st.text("0123456789", min_size=0, max_size=6)).map(
        lambda t: f"{t[0]}.{t[1]}" if t[1] else str(t[0])),
    st.decimals(min_value=-10**9, max_value=10**9, allow_nan=False, allow_infinity=False, places=4).map(str),
    st.floats(min_value=0, max_value=1e12, allow_nan=False).map(repr),
)


def oracle(text: str) -> int:
    return round(Decimal(text) * 1000)


@given(st.lists(number_text, min_size=1, max_size=20))
def test_matches_decimal(texts):
    got = us_text_to_ns(np.array([t.encode() for t in texts], dtype=bytes))
    assert got.tolist() == [oracle(t) for t in texts]


def test_absolute_epoch_timestamps_keep_their_nanoseconds():
    # float64 cannot hold these: 1712195495505583.123 us parses to ...583.125 as a float
    texts = [b"1712195495505583.123", b"1712195495505583.124", b"4458676983543.183"]
    assert us_text_to_ns(np.array(texts)).tolist() == [1712195495505583123, 1712195495505583124, 4458676983543183]
    assert round(float("1712195495505583.123") * 1000) != 1712195495505583123


def test_half_nanoseconds_round_to_even_like_python_round():
    assert us_text_to_ns(np.array([b"0.0005", b"0.0015", b"0.00051", b"2.0025"])).tolist() == [0, 2, 1, 2002]


@pytest.mark.parametrize("text", [b'"12"', b"abc", b"1.2.3", b"9999999999999999.999", b"null"])
def test_non_numbers_and_overflow_are_refused(text):
    with pytest.raises(NotANumber):
        us_text_to_ns(np.array([text]))
