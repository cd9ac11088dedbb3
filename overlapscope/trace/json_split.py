"""Split a Chrome-trace JSON document into runs of complete `traceEvents` items while it streams in.

Holding a 2 GB trace's text, or a Python object per event, is what makes trace tools need
tens of GB. Instead the decompressed text arrives in chunks, and each run of whole events is
decoded (by the caller's decoder) and reduced to columns before the next chunk is read.

Where a run of events ends is found in two ways. Fast: cut after the last `},` in the chunk
and let the decoder judge `[` + text + `]`: the text starts at an event boundary, so it parses as
a list only if the cut lies between events too (a cut inside a string or a nested value leaves
brackets or quotes unbalanced). When that fails, and at the end of the list: a vectorised scan
(numpy over the bytes: unescaped quotes, then braces and brackets outside strings, then their
running depth) finds the boundaries exactly. Everything outside the traceEvents list
(distributedInfo, deviceProperties, ...) is kept as a small "skeleton" document with an empty
list in its place.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN = (ord("{"), ord("["))
_CLOSE = (ord("}"), ord("]"))
_KEY = b'"traceEvents"'
_EVENT_END = re.compile(rb"\}\s*,")
_TAIL = 1 << 20  # look for the last event end within this many bytes of the chunk's end


class SplitError(ValueError):
    """The text is not a complete JSON object with a traceEvents list."""


# byte class: 1 quote, 2 backslash, 3 opening brace/bracket, 4 closing one, 0 anything else
_CLASS = np.zeros(256, dtype=np.int8)
_CLASS[_QUOTE], _CLASS[_BACKSLASH] = 1, 2
_CLASS[list(_OPEN)], _CLASS[list(_CLOSE)] = 3, 4


@dataclass
class _Structure:
    pos: np.ndarray  # positions of braces/brackets outside strings
    closes: np.ndarray  # whether each of them closes
    depth_after: np.ndarray  # nesting depth just after each of them
    quotes: np.ndarray  # positions of the quotes that open or close strings

    def inside_string(self, at: int) -> bool:
        return bool(np.searchsorted(self.quotes, at) % 2)

    def depth_at(self, at: int, depth0: int) -> int:
        i = int(np.searchsorted(self.pos, at))
        return int(self.depth_after[i - 1]) if i else depth0


def _scan(buf: bytes | bytearray | memoryview, depth0: int) -> _Structure:
    """Braces and brackets outside strings, with the depth after each, starting at depth0 and
    outside any string (the callers only ever start a scan at such a point)."""
    # a copy, not a view: a live view would pin the bytearray, which feed() resizes afterwards
    # (profilers that keep frames alive, Dask's among them, made that a BufferError)
    a = np.frombuffer(bytes(buf), dtype=np.uint8)
    cls = _CLASS[a]  # one pass over the text; the rest works on the few special bytes
    pos = np.flatnonzero(cls)
    kind = cls[pos]
    is_quote = kind == 1
    if (kind == 2).any():
        quote_idx = np.flatnonzero(is_quote)
        is_quote[quote_idx[_escaped(a, pos[quote_idx])]] = False
    in_string = np.cumsum(is_quote) % 2 == 1  # after an odd number of quotes
    struct = (kind >= 3) & ~in_string
    closes = kind[struct] == 4
    return _Structure(pos[struct], closes, depth0 + np.cumsum(np.where(closes, -1, 1)), pos[is_quote])


def _escaped(a: np.ndarray, quotes: np.ndarray) -> np.ndarray:
    """Which quotes an odd run of backslashes precedes (rare: only inside names)."""
    escaped = np.zeros(quotes.size, dtype=bool)
    for i in np.flatnonzero((quotes > 0) & (a[np.maximum(quotes - 1, 0)] == _BACKSLASH)):
        q, run = int(quotes[i]), 0
        while q - run - 1 >= 0 and a[q - run - 1] == _BACKSLASH:
            run += 1
        escaped[i] = run % 2 == 1
    return escaped


class EventSplitter:
    """Feed decompressed chunks with `feed`; it yields the decoded runs of whole events, each
    `decode([ev, ev, ...])`. `decode` raises `malformed` for text that is not JSON (and may raise
    other errors, which pass through). After `close`, `skeleton` is the document with
    `"traceEvents": []`."""

    def __init__(self, decode: Callable[[bytearray], Any], malformed: type[Exception],
                 not_malformed: tuple[type[Exception], ...] = ()) -> None:
        self._decode = decode
        self._malformed = malformed
        self._not_malformed = not_malformed  # subclasses of `malformed` that mean "valid JSON, wrong content"
        self._prefix = bytearray()  # text before the traceEvents list (still looking for it)
        self._carry = bytearray()  # an incomplete event, waiting for the next chunk
        self._suffix = bytearray()  # text after the list
        self._state = "prefix"  # -> "events" -> "suffix"
        self.skeleton: bytes = b""

    def feed(self, chunk: bytes | bytearray) -> Iterator[Any]:
        if self._state == "prefix":
            self._prefix += chunk
            start = self._find_list_start()
            if start is None:
                return
            self._carry = self._prefix[start:]
            del self._prefix[start:]
            self._state = "events"
        elif self._state == "events":
            self._carry += chunk
        else:
            self._suffix += chunk
            return
        decoded = self._fast_cut()
        if decoded is not None:
            yield decoded
        elif len(self._carry) > len(chunk):  # a chunk without a usable cut: settle it exactly
            yield from self._cut_events()

    def close(self) -> Iterator[Any]:
        if self._state == "events":
            yield from self._cut_events()
        if self._state == "prefix":
            raise SplitError("no traceEvents list")
        if self._state == "events":
            raise SplitError("the traceEvents list never ends (truncated file?)")
        # the prefix ends with the list's '[' and the suffix starts with its ']'
        self.skeleton = bytes(self._prefix) + bytes(self._suffix)

    def _fast_cut(self) -> Any | None:
        """Decode the events before the last `},` if they parse as a list; None if they do not."""
        tail = max(0, len(self._carry) - _TAIL)
        last = deque(_EVENT_END.finditer(self._carry, tail), maxlen=1)
        if not last:
            return None
        cut = last[0].start() + 1
        batch = _as_list(self._carry, cut)
        if batch is None:
            return None
        try:
            decoded = self._decode(batch)
        except self._not_malformed:
            raise
        except self._malformed:
            return None
        del self._carry[:cut]
        return decoded

    def _find_list_start(self) -> int | None:
        """Index just after the '[' that opens the root-level traceEvents list, or None."""
        struct = _scan(self._prefix, 0)
        at = self._prefix.find(_KEY)
        while at != -1:
            if struct.depth_at(at, 0) == 1 and not struct.inside_string(at):
                bracket = self._prefix.find(b"[", at + len(_KEY))
                if bracket == -1:
                    return None  # the key is here, its list is in the next chunk
                if bytes(self._prefix[at + len(_KEY):bracket]).strip() == b":":
                    return bracket + 1
            at = self._prefix.find(_KEY, at + 1)
        return None

    def _cut_events(self) -> Iterator[Any]:
        struct = _scan(self._carry, 2)  # inside the root object (1) and the list (2)
        ends = struct.pos[(struct.depth_after == 2) & struct.closes]
        list_end = struct.pos[struct.depth_after == 1]
        if list_end.size:
            end = int(list_end[0])
            batch = _as_list(self._carry, end)
            self._suffix = self._carry[end:]  # from the list's ']' on
            self._carry = bytearray()
            self._state = "suffix"
            if batch is not None:
                yield self._decode(batch)
            return
        if ends.size:
            cut = int(ends[-1]) + 1
            batch = _as_list(self._carry, cut)
            del self._carry[:cut]
            if batch is not None:
                yield self._decode(batch)


def _as_list(buf: bytearray, end: int) -> bytearray | None:
    """`[` + the events in buf[:end] + `]`, copied once; None when there are none."""
    begin = 0
    while begin < end and buf[begin] in b" \t\r\n,":
        begin += 1
    if begin == end:
        return None
    out = bytearray(b"[")
    out += memoryview(buf)[begin:end]
    out += b"]"
    return out


def split_events(chunks: Iterable[bytes | bytearray], decode: Callable[[bytearray], Any],
                 malformed: type[Exception], not_malformed: tuple[type[Exception], ...] = ()
                 ) -> tuple[Iterator[Any], EventSplitter]:
    """(iterator over decoded event runs, the splitter whose skeleton is set once it is exhausted)."""
    splitter = EventSplitter(decode, malformed, not_malformed)

    def batches() -> Iterator[Any]:
        for chunk in chunks:
            yield from splitter.feed(chunk)
        yield from splitter.close()

    return batches(), splitter
