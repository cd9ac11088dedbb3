"""How every renderer writes numbers and trace-derived text: one place for durations,
percentages and the escaping that keeps a kernel or range name from being read as markup.

Trace strings come from other people's programs: a region named `^(nothing|x)[a-z]+` or a
kernel holding `[/]` must print as written, not as rich markup; a file name must not carry
terminal control sequences; a bidirectional override must not reorder the report's text.
"""

from __future__ import annotations

import re

from rich.markup import escape as _rich_escape

NOT_APPLICABLE = "n/a"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Unicode bidirectional embeddings, overrides and isolates (Trojan Source)
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def pct(value: float | None, missing: str = NOT_APPLICABLE) -> str:
    """A percentage to one decimal; `missing` where overlap is not applicable (no communication)."""
    return missing if value is None else f"{value:.1f} %"


def points(delta: float | None) -> str:
    """A change in percentage points, signed."""
    return NOT_APPLICABLE if delta is None else f"{delta:+.1f} pts"


def duration(ns: int) -> str:
    """Durations in the unit that keeps them readable, exact ns below a microsecond."""
    if abs(ns) < 1_000:
        return f"{ns} ns"
    if abs(ns) < 1_000_000:
        return f"{ns / 1e3:.1f} µs"
    if abs(ns) < 1_000_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.3f} s"


def signed_duration(ns: int) -> str:
    return ("+" if ns > 0 else "-" if ns < 0 else "") + duration(abs(ns))


def plain(text: object) -> str:
    """Text from a trace or a user, safe for a terminal: control characters (escape sequences,
    carriage returns) shown as `?`, bidirectional overrides removed."""
    return _BIDI.sub("", _CONTROL.sub("?", str(text)))


def console_text(text: object) -> str:
    """`plain`, then escaped for rich markup: what every console renderer prints a trace string with."""
    return _rich_escape(plain(text))


def isolate_bidi(text: str) -> str:
    """For HTML: each bidirectional control character is removed so no name reorders the page."""
    return _BIDI.sub("", text)
