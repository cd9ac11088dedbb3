"""The streaming traceEvents splitter against orjson on the whole document, for any chunking."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overlapscope.trace.json_split import SplitError, split_events

json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(alphabet='ab"\\{}[],: \n\t', max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='k"\\{[', max_size=4), inner,
                                                                  max_size=3),
    max_leaves=8,
)
events = st.lists(st.dictionaries(st.sampled_from(["ph", "name", "args", "ts", "x"]), json_value, max_size=4),
                  max_size=12)


def split(raw: bytes, size: int) -> tuple[list, dict]:
    batches, splitter = split_events((raw[i:i + size] for i in range(0, len(raw), size)), orjson.loads,
                                     orjson.JSONDecodeError)
    out: list = []
    for batch in batches:
        out += batch
    return out, orjson.loads(splitter.skeleton)


@given(events, json_value, json_value, st.integers(1, 200), st.booleans())
@settings(max_examples=300)
def test_any_document_any_chunking(evs, before, after, size, indent):
    doc = {"before": before, "traceEvents": evs, "after": after}
    raw = orjson.dumps(doc, option=orjson.OPT_INDENT_2 if indent else 0)
    got, skeleton = split(raw, size)
    assert got == evs
    assert skeleton == {**doc, "traceEvents": []}


def test_a_key_named_traceEvents_inside_a_string_or_deeper_is_not_the_list():
    doc = {"note": 'say "traceEvents": [1]', "meta": {"traceEvents": [9]}, "traceEvents": [{"a": 1}]}
    got, skeleton = split(orjson.dumps(doc), 5)
    assert got == [{"a": 1}] and skeleton["meta"] == {"traceEvents": [9]}


@pytest.mark.parametrize("raw", [b'{"traceEvents": [{"a": 1}, {"b":', b'{"x": 1}'])
def test_truncated_or_listless_documents_are_refused(raw):
    batches, splitter = split_events([raw], orjson.loads, orjson.JSONDecodeError)
    with pytest.raises(SplitError):
        list(batches)
