"""Configuration files: a misspelt or misshapen setting is one BadInput line naming the file and the key,
never ignored and never a traceback; other tools' keys in pyproject.toml are left alone."""

from __future__ import annotations

import re

import pytest

from overlapscope import config as config_module
from overlapscope.config import load_config
from overlapscope.errors import BadInput


def bad(tmp_path, name: str, text: str) -> BadInput:
    """The BadInput that reading `text` as `name` in the current directory raises."""
    (tmp_path / name).write_text(text)
    with pytest.raises(BadInput) as caught:
        load_config(cwd=tmp_path)
    err = caught.value
    assert err.source == str(tmp_path / name) and "\n" not in err.problem
    return err


@pytest.mark.parametrize("name, text, key, hint", [
    ("overlapscope.toml", "[gates]\nmin_overlap = 90\n", "gates", "did you mean 'gate'?"),
    ("overlapscope.toml", 'comm_pattern = ["x"]\n', "comm_pattern", "did you mean 'comm_patterns'?"),
    ("overlapscope.toml", 'exclude_kernel = ["x"]\n', "exclude_kernel", "did you mean 'exclude_kernels'?"),
    ("overlapscope.toml", 'presets = ["x"]\n', "presets", "known: comm_patterns, exclude_kernels, gate"),
    ("pyproject.toml", "[tool.overlapscope.gates]\nmin_overlap = 90\n", "gates", "did you mean 'gate'?"),
    ("pyproject.toml", '[tool.overlapscope]\ncomm_pattern = ["x"]\n', "comm_pattern",
     "did you mean 'comm_patterns'?"),
    ("pyproject.toml", "[tool.overlapscope.gate]\nmin_overlap_pct = 90\n", "min_overlap_pct",
     "did you mean 'min_overlap'?"),
    ("pyproject.toml", '[[tool.overlapscope.gate.regions]]\nregion = "x"\nmin_overlp = 9\n', "min_overlp",
     "did you mean 'min_overlap'?"),
])
def test_a_misspelt_key_is_named_with_a_suggestion(tmp_path, name, text, key, hint):
    err = bad(tmp_path, name, text)
    assert re.search(rf"\b{key}\b", err.problem) and hint in err.problem


@pytest.mark.parametrize("text, message", [
    ('tool = "x"\n', "tool must be a table"),
    ('[tool]\noverlapscope = "x"\n', "[tool.overlapscope] must be a table"),
    ('[tool]\noverlapscope = [1, 2]\n', "[tool.overlapscope] must be a table"),
    ("[tool.overlapscope]\ngate = 3\n", "gate must be a table"),
    ("[tool.overlapscop]\ncomm_patterns = ['x']\n", "did you mean [tool.overlapscope]?"),
])
def test_a_misshapen_pyproject_is_bad_input(tmp_path, text, message):
    assert message in bad(tmp_path, "pyproject.toml", text).problem


@pytest.mark.parametrize("key", ["comm_patterns", "exclude_kernels"])
@pytest.mark.parametrize("value, message", [
    ('"x"', "{key} must be a list of regular expressions"),
    ("[1]", "{key} must be a list of regular expressions"),
    ('["ok", "(unclosed"]', "{key}[1] is not a valid regular expression"),
])
def test_pattern_lists_are_checked(tmp_path, key, value, message):
    assert message.format(key=key) in bad(tmp_path, "overlapscope.toml", f"{key} = {value}\n").problem


def test_other_tools_keys_are_left_alone(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.black]\nline-length = 100\n[tool.overlapscope]\n'
        'comm_patterns = ["my_ar"]\nexclude_kernels = ["^warmup"]\n[tool.overlapscope.gate]\nmin_overlap = 80\n')
    config = load_config(cwd=tmp_path)
    assert config.comm_patterns == ["my_ar"] and config.exclude_kernels == ["^warmup"]
    assert config.gate.floors[0].min_overlap == 80.0


def test_pyproject_without_our_table_is_no_config(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.black]\nline-length = 100\n')
    assert load_config(cwd=tmp_path).source is None


def test_overlapscope_toml_may_hold_a_copied_pyproject_table(tmp_path):
    (tmp_path / "overlapscope.toml").write_text('[tool.overlapscope]\ncomm_patterns = ["x"]\n'
                                                '[tool.overlapscope.gate]\nmin_overlap = 70\n')
    config = load_config(cwd=tmp_path)
    assert config.comm_patterns == ["x"] and config.gate.floors[0].min_overlap == 70.0


@pytest.mark.parametrize("text, message", [
    ('comm_patterns = ["a"]\n[tool.overlapscope]\ncomm_patterns = ["b"]\n', "use one"),
    ('[tool.black]\nline-length = 1\n', "tool.black"),
    ('tool = 3\n', "tool must be a table"),
])
def test_overlapscope_toml_mixing_both_forms_is_refused(tmp_path, text, message):
    assert message in bad(tmp_path, "overlapscope.toml", text).problem


def test_the_known_keys_are_listed_in_one_place():
    assert set(config_module.KNOWN_KEYS) == {"comm_patterns", "exclude_kernels", "gate"}
