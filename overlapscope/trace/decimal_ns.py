"""Exact conversion of Kineto's decimal microsecond timestamps to int64 nanoseconds.

Kineto prints `ts`/`dur` as decimal microseconds with up to three (sometimes more) fraction
digits. Parsing them as float64 loses nanoseconds once timestamps are absolute (1.7e15 us has a
float spacing of 0.25 us), so we convert the JSON number *text* instead: digits are weighted by
their power of ten in one vectorised pass, and the rare number that does not fit the fast path
(exponent notation, sign, more than 18 integer digits in ns) goes through `decimal.Decimal`.
Rounding below a nanosecond is Python's `round` (half to even), as DESIGN.md's round(ts * 1000).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import numpy as np

_DOT, _ZERO, _NINE, _PAD = ord("."), ord("0"), ord("9"), 0
_MAX_NS_POWER = 18  # 10**18 is the largest power of ten in int64


class NotANumber(ValueError):
    """A timestamp that is not a JSON number."""


def us_text_to_ns(texts: np.ndarray) -> np.ndarray:
    """Convert a fixed-width bytes array (numpy `S` dtype) of decimal microseconds to int64 ns."""
    n = texts.size
    if n == 0:
        return np.empty(0, np.int64)
    width = texts.dtype.itemsize
    chars = texts.view(np.uint8).reshape(n, width)
    length = (chars != _PAD).sum(axis=1)
    is_dot = chars == _DOT
    has_dot = is_dot.any(axis=1)
    dot = np.where(has_dot, is_dot.argmax(axis=1), length)
    col = np.arange(width)[None, :]
    in_text = col < length[:, None]
    is_digit = (chars >= _ZERO) & (chars <= _NINE)
    # a row is simple when it is digits with at most one dot, and no more digits than int64 holds
    bad_char = in_text & ~is_digit & ~is_dot
    top_power = dot + 2  # power of ten of the leading digit, in ns
    fits = (top_power < _MAX_NS_POWER) | ((top_power == _MAX_NS_POWER) & (chars[:, 0] < ord("9")))
    simple = ~bad_char.any(axis=1) & (is_dot.sum(axis=1) <= 1) & fits & (length > 0)
    # power of ten, in ns, of each column: left of the dot dot-1-j (+3), right of it dot-j (+3)
    power = np.where(col < dot[:, None], dot[:, None] - 1 - col, dot[:, None] - col) + 3
    digit = chars.astype(np.int64) - _ZERO
    whole = in_text & is_digit & (power >= 0)
    weights = 10 ** np.clip(power, 0, _MAX_NS_POWER)
    ns = np.where(whole, digit * weights, 0).sum(axis=1)
    # below a nanosecond: the first digit decides, ties go to the even neighbour
    tenth = np.where(in_text & is_digit & (power == -1), digit, 0).sum(axis=1)
    rest_nonzero = (in_text & is_digit & (power <= -2) & (digit > 0)).any(axis=1)
    round_up = (tenth > 5) | ((tenth == 5) & (rest_nonzero | (ns % 2 == 1)))
    ns = ns + round_up
    for i in np.flatnonzero(~simple):
        ns[i] = _slow(texts[i])
    return ns


def _slow(text: bytes) -> int:
    try:
        value = round(Decimal(text.decode("ascii")) * 1000)
    except (InvalidOperation, UnicodeDecodeError, ValueError, OverflowError):
        raise NotANumber(text[:40].decode("ascii", "replace")) from None
    if not -(2**63) <= value < 2**63:
        raise NotANumber(f"{text[:40].decode('ascii', 'replace')} us is outside the int64 nanosecond range")
    return value
