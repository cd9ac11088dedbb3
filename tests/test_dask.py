"""The Dask executor runs the same tasks as --jobs: on a local cluster started here (in this process,
so quick), the JSON is the one `load` + `analyze` gives, bit for bit, skew included."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from overlapscope.cli import app
from overlapscope.errors import BadInput
from overlapscope.pipeline import ScaleOptions, analyze_run
from overlapscope.renderers.json import dumps
from test_parallel import REGIONS, reference_json, run_json, write_run
from test_skew import straggler_run

distributed = pytest.importorskip("distributed")
runner = CliRunner()


@pytest.fixture(scope="module")
def scheduler():
    # the worker's sampling profiler stays on: it once pinned json_split's buffers (now copied)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_dask_gives_the_same_json(tmp_path, scheduler):
    run = write_run(tmp_path / "run")
    expected = reference_json([run])
    assert run_json([run], ScaleOptions(executor="dask", scheduler=scheduler)) == expected
    cached = ScaleOptions(executor="dask", scheduler=scheduler, use_cache=True, cache_dir=tmp_path / "cache")
    assert run_json([run], cached) == expected  # fills the cache on the workers
    assert run_json([run], cached) == expected  # reads it


def test_dask_skew_is_the_local_skew(tmp_path, scheduler):
    run = straggler_run(tmp_path / "run")
    local = analyze_run([run], REGIONS, (), ScaleOptions(jobs=2, skew=True)).to_dict()
    remote = analyze_run([run], REGIONS, (), ScaleOptions(executor="dask", scheduler=scheduler, skew=True)).to_dict()
    assert dumps(remote) == dumps(local) and remote["skew"]["waiting"]


def test_bad_input_travels_back_from_a_worker(tmp_path, scheduler):
    run = write_run(tmp_path / "run", ranks=2)
    data = (run / "rank-1.json.gz").read_bytes()
    (run / "rank-1.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="rank-1.json.gz.*truncated"):
        analyze_run([run], options=ScaleOptions(executor="dask", scheduler=scheduler))


def test_cli_with_the_dask_executor(tmp_path, scheduler):
    run = write_run(tmp_path / "run")
    result = runner.invoke(app, ["analyze", str(run), "--json", "--region", "^tbo/", "--no-cache",
                                 "--executor", "dask", "--scheduler", scheduler])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == reference_json([run], ["^tbo/"])


def test_an_unreachable_scheduler_is_bad_input(tmp_path):
    import dask

    run = write_run(tmp_path / "run", ranks=1)
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        with pytest.raises(BadInput, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
            analyze_run([run], options=ScaleOptions(executor="dask", scheduler="tcp://127.0.0.1:9"))


def test_workers_get_absolute_paths_and_the_json_names_files_as_given(tmp_path, scheduler, monkeypatch):
    write_run(tmp_path / "run", ranks=2)
    monkeypatch.chdir(tmp_path)
    remote = run_json(["run"], ScaleOptions(executor="dask", scheduler=scheduler, use_cache=True, cache_dir="cache"))
    assert remote == reference_json(["run"]) and '"source": "run/rank-0.json.gz"' in remote
    assert any((tmp_path / "cache").rglob("meta.json"))
