"""The files of a run as engines write them: ranks from file names (one test per naming scheme),
`--rank FILE=N`, the files a profile directory holds beside its traces, and the foreign formats
users hand us (each refused in one line naming the format and what to capture instead)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders import KinetoBuilder
from overlapscope.cli import app
from overlapscope.errors import BadInput
from overlapscope.pipeline import load

runner = CliRunner()


def rankless(path: Path, comm_end: int = 1000) -> Path:
    """A tiny Kineto trace WITHOUT distributedInfo: comm [0, comm_end) over compute [0, 500)."""
    b = KinetoBuilder(rank=None)
    b.kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)", 20, 0, comm_end,
             launch_at=0)
    b.kernel("gemm", 7, 0, 500, launch_at=1)
    assert "distributedInfo" not in b.document()
    path.parent.mkdir(parents=True, exist_ok=True)
    return b.write(path)


def ranks_of(*paths: Path) -> dict[str, int]:
    return {Path(r.source).name: r.rank for r in load(list(paths)).ranks}


def analyze_cli(*args: str):
    return runner.invoke(app, ["analyze", "--no-cache", *args])


# --- one test per naming scheme ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rank-3.json", "rank_3.json.gz", "rank3.json"])
def test_rank_in_the_name(tmp_path, name):
    assert ranks_of(rankless(tmp_path / name)) == {name: 3}  # a lone file keeps its name's rank, not 0


def test_vllm_names(tmp_path):
    names = [f"trace_rank{r}.170000000{r}.pt.trace.json.gz" for r in (3, 0)]
    paths = [rankless(tmp_path / n) for n in names]
    assert ranks_of(*paths) == {names[0]: 3, names[1]: 0}


def test_param_worker_names(tmp_path):
    names = ["worker3_step_12.1694128201557.pt.trace.json.gz", "worker1_step_12.1694128201556.pt.trace.json.gz"]
    assert ranks_of(*[rankless(tmp_path / n) for n in names]) == {names[0]: 3, names[1]: 1}


def test_sglang_tp_names(tmp_path):
    names = ["1712345678.123-TP-3.trace.json.gz", "1712345678.123-TP-0.trace.json.gz"]
    assert ranks_of(*[rankless(tmp_path / n) for n in names]) == {names[0]: 3, names[1]: 0}


def test_sglang_dp_repeats_are_numbered_pp_dp_tp_ep_with_a_note(tmp_path):
    run = tmp_path / "prof"
    # given in a scrambled order: the numbering follows (PP, DP, TP, EP), not the order or the time
    names = ["1712345679.5-TP-1-DP-1.trace.json.gz", "1712345678.1-TP-0-DP-1.trace.json.gz",
             "1712345678.9-TP-1-DP-0.trace.json.gz", "1712345677.0-TP-0-DP-0.trace.json.gz"]
    for n in names:
        rankless(run / n)
    expected = {"1712345677.0-TP-0-DP-0.trace.json.gz": 0, "1712345678.9-TP-1-DP-0.trace.json.gz": 1,
                "1712345678.1-TP-0-DP-1.trace.json.gz": 2, "1712345679.5-TP-1-DP-1.trace.json.gz": 3}
    assert ranks_of(*[run / n for n in names]) == expected
    out = analyze_cli(str(run), "--json")
    assert out.exit_code == 0, out.output
    assert sorted(r["rank"] for r in json.loads(out.stdout)["ranks"]) == [0, 1, 2, 3]
    assert "(PP, DP, TP, EP)" in out.stderr and "--rank FILE=N" in out.stderr


def test_distributed_info_wins_over_the_name(tmp_path):
    b = KinetoBuilder(rank=5, world_size=8)
    b.kernel("gemm", 7, 0, 500, launch_at=1)
    path = b.write(tmp_path / "rank-3.json")
    assert ranks_of(path) == {"rank-3.json": 5}


def test_a_lone_file_without_a_rank_is_rank_0(tmp_path):
    assert ranks_of(rankless(tmp_path / "myhost_1016001.1700000000.pt.trace.json")) == {
        "myhost_1016001.1700000000.pt.trace.json": 0}  # never the pid 1016001


# --- PyTorch's default names: no rank, never the pid -----------------------------------------------

@pytest.fixture
def default_named(tmp_path) -> tuple[Path, list[Path]]:
    run = tmp_path / "prof"
    paths = [rankless(run / f"myhost_{pid}.1700000000.pt.trace.json", comm_end=1000 * (i + 1))
             for i, pid in enumerate((1016001, 1016002))]
    return run, paths


def test_default_names_are_bad_input_naming_the_file(default_named):
    run, paths = default_named
    with pytest.raises(BadInput) as e:
        load([run])
    assert Path(str(e.value.source)).name in {p.name for p in paths}
    assert "rank" in e.value.problem
    out = analyze_cli(str(run))
    assert out.exit_code == 2
    (line,) = out.stderr.strip().splitlines()
    assert "no rank" in line and "rank 1016001" not in line


def test_default_names_error_says_how_to_set_the_ranks(default_named):
    run, _ = default_named
    out = analyze_cli(str(run))
    assert out.exit_code == 2 and "--rank FILE=N" in out.stderr


def test_rank_option_sets_the_ranks_of_default_named_files(default_named):
    run, paths = default_named
    out = analyze_cli(str(run), "--json", "--rank", f"{paths[0].name}=1", "--rank", f"{paths[1]}=0")
    assert out.exit_code == 0, out.output
    rows = {Path(r["source"]).name: r for r in json.loads(out.stdout)["ranks"]}
    assert rows[paths[0].name]["rank"] == 1 and rows[paths[1].name]["rank"] == 0
    assert rows[paths[0].name]["overlap_pct"] == 50.0 and rows[paths[1].name]["overlap_pct"] == 25.0


def test_rank_option_overrides_a_lone_files_rank_through_the_cli(tmp_path):
    path = rankless(tmp_path / "myhost_1016001.1700000000.pt.trace.json")
    out = analyze_cli(str(path), "--json", "--rank", f"{path.name}=6")
    assert out.exit_code == 0, out.output
    assert [r["rank"] for r in json.loads(out.stdout)["ranks"]] == [6]


def test_rank_option_overrides_names_and_resolves_a_clash(tmp_path):
    a, b = rankless(tmp_path / "rank-0.json"), rankless(tmp_path / "x_rank0.json", comm_end=2000)
    clash = analyze_cli(str(a), str(b))
    assert clash.exit_code == 2 and "claims rank 0" in clash.stderr
    out = analyze_cli(str(a), str(b), "--json", "--rank", "x_rank0.json=1")
    assert out.exit_code == 0, out.output
    assert {Path(r["source"]).name: r["rank"] for r in json.loads(out.stdout)["ranks"]} == {
        "rank-0.json": 0, "x_rank0.json": 1}


@pytest.mark.parametrize("item, problem", [("nosuch.json=1", "no trace file"), ("rank-0.json", "FILE=N"),
                                           ("rank-0.json=x", "FILE=N")])
def test_rank_option_mistakes_are_one_line(tmp_path, item, problem):
    path = rankless(tmp_path / "rank-0.json")
    out = analyze_cli(str(path), "--rank", item)
    assert out.exit_code == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("overlapscope: error: --rank") and problem in line


# --- a profile directory: files that are no trace are skipped with a note ---------------------------

SKIPPED = {
    "empty.json": b"",
    "server_args.json": json.dumps({"model_path": "Qwen/Qwen3-8B", "tp_size": 1}).encode(),
    "README.md": b"# profile of the server\n",
    "timeline.png": b"\x89PNG\r\n\x1a\n" + bytes(32),
}


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_non_trace_files_in_a_run_directory_are_skipped_with_a_note(tmp_path, name):
    run = tmp_path / "prof"
    rankless(run / "rank-0.json")
    (run / name).write_bytes(SKIPPED[name])
    out = analyze_cli(str(run), "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["ranks"][0]["overlap_pct"] == 50.0
    notes = [line for line in out.stderr.splitlines() if name in line]
    assert len(notes) == 1 and "skipped" in notes[0] and "error" not in notes[0]


def test_all_skipped_kinds_together_one_note_each(tmp_path):
    run = tmp_path / "prof"
    rankless(run / "rank-0.json")
    for name, data in SKIPPED.items():
        (run / name).write_bytes(data)
    out = analyze_cli(str(run))
    assert out.exit_code == 0, out.output
    for name in SKIPPED:
        assert sum(name in line for line in out.stderr.splitlines()) == 1


def test_an_unreadable_trace_in_a_run_directory_stays_an_error(tmp_path):
    run = tmp_path / "prof"
    rankless(run / "rank-0.json")
    full = rankless(tmp_path / "whole.json.gz").read_bytes()
    (run / "rank-1.json.gz").write_bytes(full[: len(full) // 2])  # truncated gzip
    out = analyze_cli(str(run))
    assert out.exit_code == 2
    (line,) = [x for x in out.stderr.splitlines() if "error" in x]
    assert "rank-1.json.gz" in line


# --- foreign formats given by name: one line, exit 2, the format and what to do ----------------------

def _sqlite(path: Path, tables: tuple[str, ...]) -> Path:
    with sqlite3.connect(path) as con:
        for t in tables:
            con.execute(f"CREATE TABLE {t} (id INTEGER)")
    return path


FOREIGN = {
    "perfetto": (lambda d: (d / "trace.pftrace").write_bytes(b"\x0a\x0c\x12\x0acom.google") and d / "trace.pftrace",
                 ("Perfetto protobuf", "export Chrome JSON")),
    "autograd": (lambda d: (d / "autograd.json").write_text(json.dumps(
                     [{"name": "x", "ph": "X", "ts": 0, "dur": 1, "pid": 0, "tid": 0}])) and d / "autograd.json",
                 ("legacy autograd", "torch.profiler.profile")),
    "rocprof-v1": (lambda d: _sqlite(d / "results.db", ("A", "HIP", "COPY")), ("rocprof v1", "rocprofv3")),
    "rpd": (lambda d: _sqlite(d / "trace.rpd", ("rocpd_op", "rocpd_api", "rocpd_string")),
            ("RPD", "torch profiler")),
    "execution-trace": (lambda d: (d / "et_rank-0.json").write_text(json.dumps(
                            {"schema": "1.0.1", "pid": 1, "time": "2024-01-01", "start_ts": 0,
                             "nodes": [{"id": 1, "name": "[pytorch|profiler|execution_trace|process]"}]}))
                        and d / "et_rank-0.json",
                        ("Execution Trace without its Kineto trace", "Kineto trace")),
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_format_given_explicitly_is_one_line_exit_2(tmp_path, kind):
    make, words = FOREIGN[kind]
    path = make(tmp_path)
    out = analyze_cli(str(path))
    assert out.exit_code == 2, out.output
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"overlapscope: error: {path}: ")
    for word in words:
        assert word in line, (word, line)
    assert "Traceback" not in out.output and out.stdout == ""


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_format_is_never_read_as_an_empty_trace(tmp_path, kind):
    with pytest.raises(BadInput):
        load([FOREIGN[kind][0](tmp_path)])
