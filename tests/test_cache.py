"""The columnar cache: a cached read equals the read it stored; damaged, stale and foreign entries are
never trusted; `cache show` and `cache clear`."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import orjson
import pandas.testing as pdt
import pytest
from typer.testing import CliRunner

from builders import KinetoBuilder
from corpus import corpus_path
from overlapscope import pipeline as parallel
from overlapscope import cache as cache_module
from overlapscope.cache import TraceCache, cache_stats, clear_cache, format_version
from overlapscope.cli import app
from overlapscope.errors import BadInput
from overlapscope.pipeline import ScaleOptions, analyze_run
from overlapscope.renderers.json import dumps
from overlapscope.trace.load import TraceFile, read_trace_file, run_files
from overlapscope.trace.model import FRAME_COLUMNS
from test_parallel import run_json, write_run

runner = CliRunner()


def only_file(path: Path) -> TraceFile:
    (f,) = run_files([path]).traces
    return f


def assert_same_trace(a, b) -> None:
    assert a.ranks == b.ranks
    for name in FRAME_COLUMNS:
        pdt.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)


def entry_dirs(cache: Path) -> list[Path]:
    return sorted(p.parent for p in cache.rglob("meta.json"))


@pytest.mark.parametrize("which", ["kineto", "nsys"])
def test_a_cached_read_equals_the_read_it_stored(tmp_path, which):
    path = write_run(tmp_path / "run", ranks=1) / "rank-0.json.gz" if which == "kineto" else \
        corpus_path("nsys", "nsys-ai", "mfu_2gpu_before.sqlite")
    f = only_file(path)
    cache = TraceCache(tmp_path / "cache")
    key = cache.key(f)
    assert cache.get(key, str(path)) is None
    read = read_trace_file(f)
    cache.put(key, read)
    assert_same_trace(cache.get(key, str(path)), read)


def test_the_second_run_reads_no_trace(tmp_path, monkeypatch):
    run = write_run(tmp_path / "run")
    options = ScaleOptions(jobs=1, use_cache=True, cache_dir=tmp_path / "cache")
    first = run_json([run], options)

    def no_reading(*args, **kwargs):
        raise AssertionError("read a trace although it is cached")

    monkeypatch.setattr(parallel, "read_trace_file", no_reading)
    assert run_json([run], options) == first


def test_comm_patterns_are_applied_after_the_cache(tmp_path):
    run = write_run(tmp_path / "run", ranks=2)
    options = ScaleOptions(jobs=1, use_cache=True, cache_dir=tmp_path / "cache")
    analyze_run([run], options=options)  # cached without the pattern
    with_pattern = analyze_run([run], (), ["flash_fwd"], options).analysis.ranks[0]
    without = analyze_run([run], options=options).analysis.ranks[0]
    assert with_pattern.compute_ns == without.compute_ns - 2 * 90_000  # flash_fwd is comm now, twice per rank


def test_same_content_elsewhere_gets_its_own_path_as_source(tmp_path):
    run = write_run(tmp_path / "run", ranks=2)
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    options = ScaleOptions(jobs=1, use_cache=True, cache_dir=tmp_path / "cache")
    analyze_run([run], options=options)
    sources = [r.source for r in analyze_run([moved], options=options).analysis.ranks]
    assert sources == [str(moved / "rank-0.json.gz"), str(moved / "rank-1.json.gz")]
    assert len(entry_dirs(tmp_path / "cache")) == 2


def test_the_key_follows_the_content_and_the_rank_a_file_name_gives(tmp_path):
    b = KinetoBuilder(rank=None)
    b.kernel("gemm", 7, 0, 100, launch_at=0)
    cache = TraceCache(tmp_path / "cache")
    three, four = b.write(tmp_path / "rank-3.json"), b.write(tmp_path / "rank-4.json")
    assert cache.key(only_file(three)) != cache.key(only_file(four))  # same bytes, different rank
    b.kernel("gemm", 7, 200, 300, launch_at=200)
    assert cache.key(only_file(three)) != cache.key(only_file(b.write(tmp_path / "rank-3.json")))


@pytest.mark.parametrize("damage", ["flip a byte of a frame", "truncate a frame", "delete a frame",
                                    "edit the metadata", "garbage metadata"])
def test_a_damaged_entry_is_rebuilt_never_trusted(tmp_path, damage):
    run = write_run(tmp_path / "run", ranks=1)
    options = ScaleOptions(jobs=1, use_cache=True, cache_dir=tmp_path / "cache")
    expected = run_json([run], options)
    (entry,) = entry_dirs(tmp_path / "cache")
    frame, meta = entry / "gpu_ops.parquet", entry / "meta.json"
    if damage == "flip a byte of a frame":
        data = bytearray(frame.read_bytes())
        data[len(data) // 2] ^= 0x01
        frame.write_bytes(bytes(data))
    elif damage == "truncate a frame":
        frame.write_bytes(frame.read_bytes()[:100])
    elif damage == "delete a frame":
        frame.unlink()
    elif damage == "edit the metadata":  # valid JSON, plausible values, checksum no longer matches
        doc = orjson.loads(meta.read_bytes())
        doc["body"]["ranks"][0]["device"] = 5
        meta.write_bytes(orjson.dumps(doc))
    else:
        meta.write_bytes(b"{not json")
    key = TraceCache(tmp_path / "cache").key(only_file(run / "rank-0.json.gz"))
    assert TraceCache(tmp_path / "cache").get(key, "x") is None  # detected, and the entry removed
    assert not entry.exists()
    assert run_json([run], options) == expected  # read again, and stored again
    assert entry_dirs(tmp_path / "cache") == [entry]


def test_stale_entries_are_never_read_and_only_ours_are_cleared(tmp_path):
    cache = tmp_path / "cache"
    run = write_run(tmp_path / "run", ranks=2)
    analyze_run([run], options=ScaleOptions(jobs=1, use_cache=True, cache_dir=cache))
    current = cache / format_version()
    stale = cache / "1-0.0.1-0123456789ab"
    shutil.copytree(current, stale)
    (current / "tmp-0123").mkdir()  # an interrupted write
    (cache / "notes.txt").write_text("the user's own file")
    stats = cache_stats(cache)
    assert (stats.entries, stats.stale, stats.incomplete) == (2, 2, 1) and stats.bytes > 0
    removed = clear_cache(cache)
    assert removed.entries == 2 and removed.stale == 2
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]
    assert cache_stats(cache).entries == 0


def test_an_unwritable_cache_only_costs_the_cache(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    run = write_run(tmp_path / "run", ranks=2)
    assert run_json([run], ScaleOptions(jobs=1, use_cache=True, cache_dir=blocker)) == run_json([run], ScaleOptions(jobs=1))


def test_cli_cache_show_and_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERLAPSCOPE_CACHE", str(tmp_path / "cache"))
    run = write_run(tmp_path / "run", ranks=2)
    assert runner.invoke(app, ["analyze", str(run), "--json", "-j", "1"]).exit_code == 0
    shown = runner.invoke(app, ["cache", "show"])
    assert shown.exit_code == 0 and "2 entries" in shown.stdout and str(tmp_path / "cache") in shown.stdout
    other = tmp_path / "other"
    assert runner.invoke(app, ["analyze", str(run), "--cache-dir", str(other), "-j", "1"]).exit_code == 0
    assert "2 entries" in runner.invoke(app, ["cache", "show", "--cache-dir", str(other)]).stdout
    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 2 entries" in cleared.stdout
    assert "0 entries" in runner.invoke(app, ["cache", "show"]).stdout
    assert runner.invoke(app, ["analyze", str(run), "--no-cache", "-j", "1"]).exit_code == 0
    assert "0 entries" in runner.invoke(app, ["cache", "show"]).stdout


def test_cached_json_is_the_same_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERLAPSCOPE_CACHE", str(tmp_path / "cache"))
    run = write_run(tmp_path / "run")
    cold = runner.invoke(app, ["analyze", str(run), "--json", "-j", "2"]).stdout
    warm = runner.invoke(app, ["analyze", str(run), "--json", "-j", "2"]).stdout
    assert cold == warm and cold.strip() == dumps(analyze_run([run], options=ScaleOptions(jobs=1)).to_dict())


def test_without_pyarrow_the_cache_is_off(tmp_path, monkeypatch):
    from overlapscope import cache

    monkeypatch.setattr(cache, "cache_available", lambda: False)
    run = write_run(tmp_path / "run", ranks=1)
    assert run_json([run], ScaleOptions(jobs=1, use_cache=True, cache_dir=tmp_path / "cache")) == \
        run_json([run], ScaleOptions(jobs=1))
    assert not (tmp_path / "cache").exists()


# --- a cache directory that cannot be read or written is one BadInput line, never a traceback ---

def fake_entries(cache: Path) -> Path:
    """Two entries laid out as TraceCache lays them out (their content does not matter to show/clear)."""
    current = cache / format_version()
    for key in ("ab12", "cd34"):
        entry = current / key[:2] / key
        entry.mkdir(parents=True)
        (entry / "meta.json").write_text("{}")
    return current


def test_clear_on_an_unwritable_cache_is_bad_input(tmp_path, monkeypatch):
    current = fake_entries(tmp_path / "cache")
    if os.geteuid() == 0:  # root deletes in a 0o500 folder anyway: make the deletion fail as it would
        def refuse(path, *args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

        monkeypatch.setattr(cache_module.shutil, "rmtree", refuse)
    current.chmod(0o500)
    try:
        with pytest.raises(BadInput) as caught:
            clear_cache(tmp_path / "cache")
    finally:
        current.chmod(0o755)
    err = caught.value
    assert "Permission denied" in err.problem and "\n" not in err.problem
    assert err.source.startswith(str(current))


def test_show_on_an_unreadable_cache_is_bad_input(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    fake_entries(cache)
    if os.geteuid() == 0:  # root lists a 0o000 folder anyway: make the listing fail as it would
        listing = Path.iterdir

        def refuse(self):
            if self == cache:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return listing(self)

        monkeypatch.setattr(Path, "iterdir", refuse)
    cache.chmod(0o000)
    try:
        with pytest.raises(BadInput) as caught:
            cache_stats(cache)
    finally:
        cache.chmod(0o755)
    err = caught.value
    assert err.source == str(cache) and "cannot read" in err.problem and "Permission denied" in err.problem
