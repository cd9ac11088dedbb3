"""`overlapscope diff` on a before/after pair: the all-reduce inline, then on a side stream."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overlapscope.cli import app
from overlapscope.diff import WHOLE_TRACE, compare_findings, diff_runs
from overlapscope.races.findings import Access, Finding, RaceReport
from overlapscope.pipeline import load
from overlapscope.renderers.diff_verdict import verdict_sentence
from run_builders import COMM_NS, tbo_run

runner = CliRunner()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff")
    before = tbo_run(tmp / "inline", overlapped=False, race=True)
    after = tbo_run(tmp / "comm_stream", overlapped=True)
    return before, after


def test_overlap_before_after_and_delta(pair):
    result = diff_runs(load([pair[0]]), load([pair[1]]), ["tbo"])
    rows = {(r.rank, r.scope): r for r in result.rows}
    assert [(r.rank, r.scope) for r in result.rows] == [(0, WHOLE_TRACE), (0, "tbo"), (1, WHOLE_TRACE), (1, "tbo")]
    tbo = rows[(0, "tbo")]
    assert (tbo.before.overlap_pct, tbo.after.overlap_pct, tbo.overlap_delta) == (0.0, 100.0, 100.0)
    assert (tbo.before.exposed_comm_ns, tbo.after.exposed_comm_ns) == (3 * COMM_NS, 0)
    assert tbo.exposed_delta_ns == -3 * COMM_NS
    # the race of the "before" run is gone in the "after" run
    assert [(f.rank, f.rule, f.buffer) for f in result.gone_findings] == [(0, "cross-stream", "ids"),
                                                                          (1, "cross-stream", "ids")]
    assert result.new_findings == [] and result.unchanged_findings == 0


def test_json_output(pair):
    result = runner.invoke(app, ["diff", str(pair[1]), str(pair[0]), "--region", "tbo", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    row = next(r for r in data["rows"] if r["rank"] == 1 and r["scope"] == "tbo")
    assert row["before"]["overlap_pct"] == 100.0 and row["after"]["overlap_pct"] == 0.0
    assert row["overlap_delta_pct"] == -100.0 and row["exposed_comm_delta_ns"] == 3 * COMM_NS
    assert [f["rule"] for f in data["races"]["new"]] == ["cross-stream", "cross-stream"]
    assert data["races"]["gone"] == [] and data["races"]["unchanged"] == 0


def test_console_output(pair):
    result = runner.invoke(app, ["diff", str(pair[0]), str(pair[1]), "--region", "tbo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "+100.0 pts" in result.stdout and "-45.0 µs" in result.stdout
    assert "race findings: 0 new, 2 gone, 0 unchanged" in result.stdout


def test_not_applicable_and_missing_ranks(tmp_path):
    """A region without comm has no delta (n/a, never 0); a rank present on one side only has no other side."""
    one = tbo_run(tmp_path / "one", overlapped=True, ranks=1)
    two = tbo_run(tmp_path / "two", overlapped=True, ranks=2)
    result = diff_runs(load([one]), load([two]), ["ProfilerStep#9"])
    rows = {(r.rank, r.scope): r for r in result.rows}
    assert rows[(0, "ProfilerStep#9")].overlap_delta is None
    assert rows[(1, WHOLE_TRACE)].before is None and rows[(1, WHOLE_TRACE)].overlap_delta is None
    out = runner.invoke(app, ["diff", str(one), str(two)], env={"COLUMNS": "200"}).stdout
    assert "(no such rank)" in out


def finding(rank: int, buffer: str, first: str, second: str, start: int = 0) -> Finding:
    return Finding("cross-stream", "manifest", rank, buffer, Access(first, 7, start, start + 10, ""),
                   Access(second, 13, start + 5, start + 15, ""), "hint")


def test_findings_match_by_rank_rule_buffer_and_op_names_not_by_time():
    before = RaceReport([finding(0, "ids", "gather", "consume"), finding(0, "ids", "gather", "consume", 100),
                         finding(1, "kv", "a", "b")], [])
    after = RaceReport([finding(0, "ids", "gather", "consume", 999), finding(0, "staging", "gather", "rdma")], [])
    new, gone, unchanged = compare_findings(before, after)
    assert [(f.rank, f.buffer) for f in new] == [(0, "staging")]
    assert [(f.rank, f.buffer, f.first.start_ns) for f in gone] == [(0, "ids", 100), (1, "kv", 0)]
    assert unchanged == 1


def test_bad_input(pair, tmp_path):
    result = runner.invoke(app, ["diff", str(pair[0]), str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such file or directory" in result.stderr


# --- the diff that explains: hand-computed deltas, movers, race groups, regressions, the card ---
#
# tbo_run, per rank and step (µs from the step's start): compute 5-25 on stream 7, then
#   inline (before): all-reduce 25-40 on stream 7, compute 40-60 and 60-80;   step span 5-80 = 75 µs
#   overlapped (after): all-reduce 26-41 on stream 20 under compute 25-45 and 45-65; span 5-65 = 60 µs
# The racy / marked variants add, in step 0 only, an all-gather 50-52 and a reader 51-53 (52-53
# when marked), launched outside the region "tbo/mb0": hidden under compute in both runs.

@pytest.fixture(scope="module")
def checked_pair(tmp_path_factory):
    """Before: inline with a race; after: overlapped, accesses known, no race (verdict "none")."""
    tmp = tmp_path_factory.mktemp("diff_checked")
    return (load([tbo_run(tmp / "inline", overlapped=False, race=True,
                          manifest={"model": "m", "variant": "inline", "profiler": "torch"})]),
            load([tbo_run(tmp / "comm_stream", overlapped=True, marked=True,
                          manifest={"model": "m", "variant": "comm-stream", "profiler": "torch"})]))


def test_every_number_before_after_and_delta(checked_pair):
    result = diff_runs(*checked_pair, ["tbo"])
    rows = {(r.rank, r.scope): r for r in result.rows}
    for rank in (0, 1):
        whole, tbo = rows[(rank, WHOLE_TRACE)], rows[(rank, "tbo")]
        # whole trace: 3 all-reduces + the all-gather (2 µs, hidden in both runs)
        assert (whole.before.comm_ns, whole.before.overlap_ns) == (3 * COMM_NS + 2_000, 2_000)
        assert (whole.after.comm_ns, whole.after.overlap_ns) == (3 * COMM_NS + 2_000, 3 * COMM_NS + 2_000)
        assert whole.before.compute_ns == whole.after.compute_ns == 3 * 60_000  # 5-25 and 40-80 / 25-65
        assert whole.delta("compute_ns") == 0 and whole.delta("comm_ns") == 0
        assert whole.exposed_delta_ns == -3 * COMM_NS
        assert whole.before.steps == whole.after.steps == 3
        assert whole.before.exposed_per_step_ns == COMM_NS and whole.after.exposed_per_step_ns == 0
        assert whole.before.step_ns == 75_000 and whole.after.step_ns == 60_000
        assert whole.delta("step_ns") == -15_000
        # the region: the all-reduce only; its ops span the same 5-80 / 5-65 per step
        assert (tbo.before.overlap_pct, tbo.after.overlap_pct, tbo.overlap_delta) == (0.0, 100.0, 100.0)
        assert tbo.before.compute_ns == 3 * 60_000  # K is the rank's compute, whatever the scope
        assert tbo.delta("exposed_per_step_ns") == -COMM_NS
        assert (tbo.before.step_ns, tbo.after.step_ns) == (75_000, 60_000)
    data = result.to_dict()
    row = next(r for r in data["rows"] if r["rank"] == 0 and r["scope"] == "tbo")
    assert row["step_delta_ns"] == -15_000 and row["exposed_per_step_delta_ns"] == -COMM_NS
    assert row["before"]["step_ns"] == 75_000 and row["compute_delta_ns"] == 0
    assert data["labels"] == ["m/inline (torch)", "m/comm-stream (torch)"]


def test_movers_are_the_exposed_tree_nodes_that_changed_most(checked_pair):
    result = diff_runs(*checked_pair, ["tbo"])
    # the all-reduce's path lost its 45 µs of exposure on each rank; the all-gather's path
    # (osacc:dp_allgather, hidden in both) did not move and is not listed
    assert [(m.rank, m.path, m.exposed_before_ns, m.exposed_after_ns, m.delta_ns) for m in result.movers] == [
        (0, "tbo/mb0", 3 * COMM_NS, 0, -3 * COMM_NS), (1, "tbo/mb0", 3 * COMM_NS, 0, -3 * COMM_NS)]
    assert diff_runs(*checked_pair, ["tbo"], top=1).movers[0].rank == 0
    assert result.to_dict()["movers"][0]["exposed_delta_ns"] == -3 * COMM_NS


def test_race_groups_new_and_gone_counting_occurrences(checked_pair):
    forward = diff_runs(*checked_pair)
    assert forward.race_verdicts == ("races", "none")
    [gone] = forward.gone_groups
    assert (gone.rule, gone.before, gone.after, gone.status) == ("cross-stream", 2, 0, "gone")  # one per rank
    assert forward.new_groups == []
    backward = diff_runs(checked_pair[1], checked_pair[0])
    [new] = backward.new_groups
    assert (new.before, new.after, new.kind) == (0, 2, "manifest")
    groups = backward.to_dict()["races"]["groups"]
    assert [(g["status"], g["after"]) for g in groups] == [("new", 2)]


def test_regressions_give_the_exit_code_reasons(checked_pair):
    forward = diff_runs(*checked_pair, ["tbo"])
    assert forward.regressions(5, True) == []
    backward = diff_runs(checked_pair[1], checked_pair[0], ["tbo"])
    assert backward.regressions(None, False) == []
    # whole trace fell 100 -> 4.3 % (-95.7 pts), the region 100 -> 0 % (-100 pts): 99 pts catches the region only
    reasons = backward.regressions(99, False)
    assert reasons == [f"rank {r}, tbo: overlap fell from 100.0 % to 0.0 % (-100.0 pts, more than 99 pts)"
                       for r in (0, 1)]
    assert len(backward.regressions(5, False)) == 4
    [race] = backward.regressions(None, True)
    assert race.startswith("new race: cross-stream between ") and "(2 occurrence(s), manifest)" in race


def test_regressions_fail_closed(pair, checked_pair):
    """Unmeasurable after (a missing rank, no comm) and unchecked races fail when asked to gate."""
    after_unchecked = diff_runs(load([pair[0]]), load([pair[1]]))  # after: no memory access known
    assert after_unchecked.race_verdicts[1] == "not checked"
    assert any("races not checked" in r for r in after_unchecked.regressions(None, True))
    assert "races not checked" in verdict_sentence(after_unchecked)


def test_verdict_sentence(checked_pair):
    result = diff_runs(*checked_pair, ["tbo"])
    assert verdict_sentence(result) == ("Overlap of `tbo` rose from 0.0 % to 100.0 % on every rank; exposed "
                                           "communication fell by 15.0 µs per step; no new race, 1 race group(s) "
                                           "gone.")
    assert verdict_sentence(diff_runs(checked_pair[1], checked_pair[0])).startswith(
        "Overlap of the whole trace fell from 100.0 % to 4.3 % on every rank; exposed communication rose by "
        "15.0 µs per step; 1 new race group(s)")


def test_markdown_card(checked_pair):
    from overlapscope.renderers.diff_markdown import render_diff_markdown

    card = render_diff_markdown(diff_runs(*checked_pair, ["tbo"]))
    assert "| 0 | `tbo` | 0.0 % → 100.0 % (+100.0 pts) | 15.0 µs → 0 ns (-15.0 µs) |" in card
    assert "| 0 | `tbo/mb0` | 45.0 µs → 0 ns | -45.0 µs |" in card
    assert "✅ gone manifest | `cross-stream` |" in card
    assert card.count("Overlap of `tbo` rose") == 1


def test_markdown_escapes_hostile_names():
    from overlapscope.diff import Diff, DiffRow, Mover, Side
    from overlapscope.renderers.diff_markdown import code, render_diff_markdown

    hostile = "a|b`c``<script>alert(1)</script>\n| x |"
    side = Side(10, 5, 50.0, 5, 20, 1, 5.0, 100.0)
    diff = Diff([DiffRow(0, hostile, side, side)], movers=[Mover(0, hostile, 1, 5, 3, 10, 10)], regions=[hostile],
                labels=(hostile, "after"))
    card = render_diff_markdown(diff)
    table_rows = [line for line in card.splitlines() if line.startswith("| 0 |")]
    assert len(table_rows) == 2
    for line in table_rows:  # no unescaped pipe beyond the table's own
        cells = re.split(r"(?<!\\)\|", line)[1:-1]
        assert len(cells) in (4, 6), line
    assert "\n| x |" not in card
    assert code("a`b") == "``a`b``" and code("`x") == "`` `x ``" and code("p|q") == "`p\\|q`"


SAMPLES = Path(__file__).resolve().parent.parent / "sample_traces" / "deepseek_v4_tbo"
EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "diff-inline-vs-comm-stream.md"


@pytest.mark.skipif(not (SAMPLES / "inline" / "nsys").is_dir(), reason="needs the sample traces")
def test_committed_card_example_is_current():
    """docs/examples/diff-inline-vs-comm-stream.md is `diff --markdown` of the V4 nsys samples: regenerate it
    with `python tests/test_diff.py` when the numbers or the card change."""
    assert EXAMPLE.read_text(encoding="utf-8") == sample_card()


def sample_card() -> str:
    from overlapscope import commands
    from overlapscope.renderers.diff_markdown import render_diff_markdown

    return render_diff_markdown(commands.diff(SAMPLES / "inline" / "nsys", SAMPLES / "comm-stream" / "nsys",
                                              ["^tbo/block$"]))


def test_cli_markdown(tmp_path):
    """`diff --markdown FILE` writes the same card."""
    out = tmp_path / "card.md"
    result = runner.invoke(app, ["diff", str(SAMPLES / "inline" / "nsys"), str(SAMPLES / "comm-stream" / "nsys"),
                                 "--region", "^tbo/block$", "--markdown", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")


if __name__ == "__main__":  # regenerate the committed example
    EXAMPLE.parent.mkdir(parents=True, exist_ok=True)
    EXAMPLE.write_text(sample_card(), encoding="utf-8")


def test_cli_html_shows_both_runs_representative_steps(tmp_path):
    """`diff --html FILE`: one offline page, the verdict, and per rank two static timelines, before above after."""
    import xml.etree.ElementTree as ET

    out = tmp_path / "diff.html"
    result = runner.invoke(app, ["diff", str(SAMPLES / "inline" / "nsys"), str(SAMPLES / "comm-stream" / "nsys"),
                                 "--region", "^tbo/block$", "--html", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page and "default-src 'none'" in page
    assert "Overlap of ^tbo/block$ rose from 0.0 % to 88.0 % on every rank" in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 4  # 2 ranks x (before, after)
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    assert page.index("deepseek_v4_tbo/inline") < page.index("deepseek_v4_tbo/comm-stream")
    bad = runner.invoke(app, ["diff", str(SAMPLES / "inline" / "nsys"), str(SAMPLES / "comm-stream" / "nsys"),
                              "--html", str(SAMPLES / "inline" / "nsys" / "trace.sqlite")])
    assert bad.exit_code == 2 and "refusing to overwrite" in bad.stderr
