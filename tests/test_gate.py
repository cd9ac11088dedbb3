"""`overlapscope gate`: pass, fail by threshold, fail closed, bad input, JUnit and Markdown, config files."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from overlapscope.cli import app
from overlapscope.config import Floor, GateSettings, load_config
from overlapscope.errors import BadInput
from overlapscope.gate import evaluate_gate, gate_settings
from overlapscope.pipeline import load
from run_builders import no_comm_run, no_gpu_run, tbo_run

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    return {
        "overlapped": tbo_run(tmp / "overlapped", overlapped=True),  # tbo region: 100 %
        "inline": tbo_run(tmp / "inline", overlapped=False),  # tbo region: 0 %, 45 µs exposed per rank
        "racy": tbo_run(tmp / "racy", overlapped=True, race=True),
        "marked": tbo_run(tmp / "marked", overlapped=True, marked=True),  # accesses known, ordered: no race
        "no_comm": no_comm_run(tmp / "no_comm"),
        "no_gpu": no_gpu_run(tmp / "no_gpu"),
    }


def gate(*args: str, cwd=None):
    return runner.invoke(app, ["gate", *map(str, args)])


def test_pass(runs):
    result = gate(runs["overlapped"], "--min-overlap", "90", "--region", "tbo")
    assert result.exit_code == 0, result.output
    assert "passed" in result.stdout


def test_fail_by_threshold(runs):
    result = gate(runs["inline"], "--min-overlap", "90", "--region", "tbo")
    assert result.exit_code == 1
    assert "FAILED (2 of 2 checks)" in result.stdout
    assert "0.00 % of 45.0 us of comm is hidden" in result.stdout


def test_whole_trace_floor_without_region(runs):
    assert gate(runs["overlapped"], "--min-overlap", "100").exit_code == 0
    assert gate(runs["inline"], "--min-overlap", "1").exit_code == 1


def test_fails_closed_without_communication(runs):
    result = gate(runs["no_comm"], "--min-overlap", "0", "--region", "tbo")
    assert result.exit_code == 1
    assert "no communication in region /tbo/" in result.stdout and "failing closed" in result.stdout


def test_fails_closed_without_gpu_ops(runs):
    result = gate(runs["no_gpu"], "--min-overlap", "0")
    assert result.exit_code == 1
    assert "no GPU ops on this rank" in result.stdout


def test_fails_closed_when_no_range_matches_the_region(runs):
    result = gate(runs["overlapped"], "--min-overlap", "0", "--region", "no_such_region")
    assert result.exit_code == 1
    assert "no host range matches /no_such_region/" in result.stdout


def test_max_races_runs_the_race_checker(runs):
    assert gate(runs["marked"], "--max-races", "0").exit_code == 0
    result = gate(runs["racy"], "--max-races", "0")
    assert result.exit_code == 1
    assert "1 race finding(s) in 1 group(s): cross-stream (manifest) ×1 on ids" in result.stdout
    assert gate(runs["racy"], "--max-races", "1").exit_code == 0  # one finding on each rank


@pytest.mark.parametrize("args, message", [
    (["MISSING", "--min-overlap", "50"], "MISSING: no such file or directory"),
    (["RUN"], "nothing to check"),
    (["RUN", "--region", "tbo"], "--region: a region needs an overlap floor"),
    (["RUN", "--min-overlap", "150"], "--min-overlap: must be a percentage from 0 to 100"),
    (["RUN", "--min-overlap", "50", "--region", "("], "--region: invalid regular expression"),
    (["RUN", "--config", "missing.toml"], "missing.toml: no such configuration file"),
    (["RUN", "--min-overlap", "50", "--junit", "no/such/dir/j.xml"], "cannot write"),
])
def test_bad_input_is_exit_2(runs, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = gate(*[runs["overlapped"] if a == "RUN" else a for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_junit_parses_back_with_one_case_per_rank_and_check(runs, tmp_path):
    junit = tmp_path / "gate.xml"
    result = gate(runs["racy"], "--min-overlap", "90", "--region", "tbo", "--max-races", "0", "--junit", junit)
    assert result.exit_code == 1
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("overlapscope.gate.rank0", "overlap >= 90 % in region /tbo/"),
        ("overlapscope.gate.rank0", "race findings <= 0"),
        ("overlapscope.gate.rank1", "overlap >= 90 % in region /tbo/"),
        ("overlapscope.gate.rank1", "race findings <= 0"),
    ]
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["race findings <= 0", "race findings <= 0"]
    assert suite.get("tests") == "4" and suite.get("failures") == "2"
    assert "ids" in cases[1].find("failure").get("message")


def test_markdown_summary(runs, tmp_path):
    md = tmp_path / "summary.md"
    assert gate(runs["inline"], "--min-overlap", "50", "--region", "tbo|<x>", "--markdown", md).exit_code == 1
    text = md.read_text()
    assert text.startswith("## overlapscope gate: ❌ FAILED (2 of 2 checks)")
    assert "| ❌ FAIL | 0 | overlap &gt;= 50 % in region /tbo\\|&lt;x&gt;/ |" in text  # pipes and HTML escaped


CONFIG = """
[tool.overlapscope]
comm_patterns = []

[tool.overlapscope.gate]
max_races = 0
allow_unchecked = true

[[tool.overlapscope.gate.regions]]
region = "tbo"
min_overlap = 90

[[tool.overlapscope.gate.regions]]
region = "ProfilerStep"
min_overlap = 50
max_exposed_comm_us = 10
"""


def test_config_with_several_regions(runs, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    junit = tmp_path / "gate.xml"
    assert gate(runs["overlapped"], "--junit", junit).exit_code == 0
    names = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert names == ["overlap >= 90 % in region /tbo/", "overlap >= 50 % in region /ProfilerStep/",
                     "exposed comm <= 10 us in region /ProfilerStep/", "race findings <= 0"] * 2
    result = gate(runs["inline"])
    assert result.exit_code == 1
    assert "45.000 us of comm is exposed" in result.stdout
    # flags win: --min-overlap replaces the configured floors
    assert gate(runs["inline"], "--min-overlap", "0", "--region", "tbo").exit_code == 0


def test_config_file_option_reads_an_overlapscope_toml(runs, tmp_path):
    config = tmp_path / "ci.toml"
    config.write_text('[gate]\n[[gate.regions]]\nregion = "tbo"\nmin_overlap = 95\n')
    assert gate(runs["overlapped"], "--config", config).exit_code == 0
    assert gate(runs["inline"], "--config", config).exit_code == 1


@pytest.mark.parametrize("table, message", [
    ("[gate]\nmin_overlap_pct = 90\n", "gate: unknown key(s) min_overlap_pct"),
    ("[gate]\nmin_overlap = 120\n", "gate.min_overlap must be a number from 0 to 100"),
    ("[gate]\nmax_races = -1\n", "gate.max_races must be a whole number >= 0"),
    ("[[gate.regions]]\nmin_overlap = 90\n", "gate.regions[0]: region must be a non-empty regular expression"),
    ("[[gate.regions]]\nregion = \"tbo\"\n", "give min_overlap and/or max_exposed_comm_us"),
    ("[[gate.regions]]\nregion = \"tbo\"\nmin_overlap = \"90\"\n", "must be a number"),
])
def test_malformed_gate_config_is_bad_input(tmp_path, table, message):
    config = tmp_path / "overlapscope.toml"
    config.write_text(table)
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config(config)


def test_config_without_gate_keeps_its_other_settings(tmp_path):
    (tmp_path / "overlapscope.toml").write_text('comm_patterns = ["my_allreduce"]\n')
    config = load_config(cwd=tmp_path)
    assert config.comm_patterns == ["my_allreduce"] and config.gate.is_empty()


def test_library_api(runs):
    settings = gate_settings(GateSettings(floors=[Floor("tbo", min_overlap=50, max_exposed_comm_us=1)]))
    result = evaluate_gate(load([runs["inline"]]), settings)
    assert not result.passed
    assert [(c.rank, c.passed) for c in result.checks] == [(0, False), (0, False), (1, False), (1, False)]
    assert result.analysis.regions[0].overlap_pct == 0.0


def test_max_races_fails_closed_when_no_access_is_known(runs, tmp_path):
    """#11.3: a run without Execution Trace or access marks cannot be race-checked: the gate fails,
    says how to get the accesses, and with --allow-unchecked passes as "not checked", never "pass"."""
    result = gate(runs["overlapped"], "--max-races", "0")
    assert result.exit_code == 1
    assert "not checked, failing closed: no memory access of this rank is known" in result.stdout
    assert "Execution Trace" in result.stdout and "--allow-unchecked" in result.stdout
    junit, markdown = tmp_path / "g.xml", tmp_path / "g.md"
    allowed = gate(runs["overlapped"], "--max-races", "0", "--allow-unchecked", "--junit", junit, "--markdown", markdown)
    assert allowed.exit_code == 0
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert [c.find("skipped") is not None for c in cases] == [True, True]
    assert "⚠️ not checked" in markdown.read_text() and "✅ pass" not in markdown.read_text()


def test_every_region_is_gated(runs):
    """#11.1: repeated --region gates each region, not only the last one."""
    result = gate(runs["overlapped"], "--min-overlap", "90", "--region", "tbo", "--region", "no_such_region")
    assert result.exit_code == 1
    assert "region /tbo/" in result.stdout and "region /no_such_region/" in result.stdout
    assert gate(runs["overlapped"], "--min-overlap", "90", "--region", "no_such_region", "--region", "tbo").exit_code == 1
