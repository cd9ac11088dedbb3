"""Conformance: no race on any trace of ../shared/corpus (docs/races.md, "Corpus", says why), and
never a "none" verdict where no memory access was known: those files are "not checked"."""

from __future__ import annotations

import pytest

from corpus import CORPUS, corpus_files, corpus_path
from overlapscope.races import check_races
from overlapscope.pipeline import load

KINETO = [p.name for p in sorted((CORPUS / "kineto" / "hta").glob("*.json.gz")) if "execution_trace" not in p.name]
NSYS = [str(p.relative_to(CORPUS / "nsys")) for p in sorted((CORPUS / "nsys").rglob("*.sqlite"))]


@pytest.mark.parametrize("name", KINETO or ["(corpus missing)"])
def test_kineto_file_has_no_race(name):
    files = corpus_files("kineto/hta", name)
    report = check_races(load(files))
    assert report.findings == []
    assert (report.verdict, report.accesses_known) == ("not checked", 0)


@pytest.mark.parametrize("name", NSYS or ["(corpus missing)"])
def test_nsys_file_has_no_race(name):
    files = corpus_files("nsys", name)
    report = check_races(load(files))
    assert report.findings == []
    assert (report.verdict, report.accesses_known) == ("not checked", 0)


def test_two_rank_run_has_no_race():
    report = check_races(load([corpus_path("kineto", "hta", "trace_filter_rank-0.json.gz"),
                               corpus_path("kineto", "hta", "trace_filter_rank-1.json.gz")]))
    assert report.findings == []
    assert report.verdict == "not checked" and [c.rank for c in report.coverage] == [0, 1]


def test_simple_add_with_its_execution_trace_has_no_race():
    """Every GPU op of simple_add runs on stream 7: the ET gives accesses, none can race."""
    report = check_races(load([corpus_path("kineto", "hta", "simple_add_kineto.json.gz"),
                               corpus_path("kineto", "hta", "simple_add_execution_trace.json.gz")]))
    assert report.findings == [] and report.notes == []
    assert report.verdict == "none" and report.accesses_known > 0


def test_waits_and_syncs_of_the_corpus_are_understood():
    """event_sync_multi_stream.json.gz: its one Stream Wait Event joins stream 20 into 24."""
    from overlapscope.races.hb import happens_before

    trace = load([corpus_path("kineto", "hta", "event_sync_multi_stream.json.gz")])
    hb = happens_before(trace.for_rank(0))
    streams = [c[2] for c in hb.components]
    assert [(streams[r.src], r.covered, streams[r.dst]) for r in hb.waits.itertuples()] == [(20, 2, 24)]
