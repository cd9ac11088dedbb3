"""Files analysed in parallel (--jobs), through the cache or not, give the JSON that `load` + `analyze`
gives, bit for bit; bad input found inside a task is reported as `load` reports it."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from builders import KinetoBuilder
from corpus import corpus_path
from overlapscope.cli import app
from overlapscope.errors import BadInput
from overlapscope.overlap import analyze
from overlapscope.pipeline import CHUNK, MIN_CHUNK, ScaleOptions, analyze_run, chunk_size_for, parse_size
from overlapscope.renderers.json import dumps
from overlapscope.pipeline import load

T0 = 1_712_195_495_505_583_123
NCCL = "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)"
REGIONS = ["^tbo/", "attn"]
runner = CliRunner()


def allreduce(seq: int | None, group: str = "0") -> dict:
    args = {"Collective name": "allreduce", "Process Group Name": group, "In msg nelems": 4096}
    return args if seq is None else {**args, "Seq": seq}


def write_run(folder: Path, ranks: int = 3, late_rank: int | None = None, late_by: int = 0,
              with_seq: bool = True) -> Path:
    """`ranks` Kineto files: on each, two profiler steps of compute on stream 7 and an all-reduce on
    stream 20 under `tbo/mb0`, launched from inside the regions. The last rank's file names its rank
    only in its name. `late_rank` starts its first all-reduce `late_by` ns late."""
    folder.mkdir(exist_ok=True)
    for rank in range(ranks):
        b = KinetoBuilder(rank=None if rank == ranks - 1 else rank, world_size=ranks, device=rank)
        for step in range(2):
            base = T0 + step * 1_000_000 + rank * 137
            b.annotation(f"ProfilerStep#{step + 1}", base, base + 900_000)
            b.annotation("tbo/mb0", base + 10, base + 5_000)
            b.annotation("attn_block", base + 5_000, base + 9_000)
            b.kernel("ampere_bf16_s16816gemm", 7, base + 20_000, base + 300_000 + rank * 1_000, launch_at=base + 100)
            b.kernel("flash_fwd_kernel", 7, base + 310_000, base + 400_000, launch_at=base + 5_500)
            start = base + 250_000 + (late_by if rank == late_rank and step == 0 else 0)
            b.kernel(NCCL, 20, start, base + 650_000, launch_at=base + 200, api="cuda_driver",
                     args=allreduce(step if with_seq else None))
            b.memcpy(7, base + 700_000, base + 720_000, launch_at=base + 300)
        b.write(folder / f"rank-{rank}.json.gz")
    (folder / "README.txt").write_text("not a trace: ignored in a directory")
    return folder


def reference_json(paths: list, regions: list[str] = REGIONS) -> str:
    return dumps(analyze(load(paths), regions).to_dict())


def run_json(paths: list, options: ScaleOptions, regions: list[str] = REGIONS) -> str:
    return dumps(analyze_run(paths, regions, (), options).to_dict())


def test_jobs_and_cache_give_the_same_json_as_load(tmp_path):
    run = write_run(tmp_path / "run")
    expected = reference_json([run])
    cache = tmp_path / "cache"
    for options in (ScaleOptions(jobs=1), ScaleOptions(jobs=2),
                    ScaleOptions(jobs=2, use_cache=True, cache_dir=cache),  # fills the cache
                    ScaleOptions(jobs=2, use_cache=True, cache_dir=cache),  # reads it
                    ScaleOptions(jobs=1, use_cache=True, cache_dir=cache)):
        assert run_json([run], options) == expected, options
    assert '"region": "^tbo/"' in expected and "ProfilerStep#2" in expected


def test_a_small_memory_budget_changes_nothing_but_the_chunk_size(tmp_path):
    run = write_run(tmp_path / "run")
    assert run_json([run], ScaleOptions(jobs=1, memory_budget=1)) == reference_json([run])


def test_nsys_files_are_numbered_one_after_another_as_load_numbers_them():
    paths = [corpus_path("nsys", "nsys-ai", "mfu_2gpu_before.sqlite"), corpus_path("nsys", "nsys-ai", "mfu_2gpu_after.sqlite")]
    expected = reference_json(paths, ["nccl"])
    assert [r["rank"] for r in analyze_run(paths, ["nccl"], (), ScaleOptions(jobs=2)).to_dict()["ranks"]] == [0, 1, 2, 3]
    assert run_json(paths, ScaleOptions(jobs=2), ["nccl"]) == expected


def test_the_run_facts_keep_ranks_manifest_and_sources(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "run.json").write_text('{"overlapscope_run": 1, "model": "m"}')
    facts = analyze_run([run], options=ScaleOptions(jobs=2)).facts
    assert [r.rank for r in facts.ranks] == [0, 1, 2]
    assert facts.manifest == {"overlapscope_run": 1, "model": "m"}
    assert facts.ranks[2].source == str(run / "rank-2.json.gz") and len(facts.gpu_ops) == 0


def test_bad_input_inside_a_task_is_the_first_bad_file_in_order(tmp_path):
    run = write_run(tmp_path / "run", ranks=4)
    for name in ("rank-1.json.gz", "rank-3.json.gz"):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput) as parallel:
        analyze_run([run], options=ScaleOptions(jobs=2))
    with pytest.raises(BadInput) as sequential:
        load([run])
    assert str(parallel.value) == str(sequential.value)
    assert "rank-1.json.gz" in str(parallel.value) and "truncated" in str(parallel.value)


def test_two_files_claiming_one_rank(tmp_path):
    run = write_run(tmp_path / "run", ranks=2)
    (run / "copy.json.gz").write_bytes(gzip.compress(gzip.decompress((run / "rank-0.json.gz").read_bytes())))
    with pytest.raises(BadInput, match="claims rank 0"):
        analyze_run([run], options=ScaleOptions(jobs=2))


def test_bad_patterns_fail_before_any_file_is_looked_at(tmp_path):
    never_looked_at = tmp_path / "missing"
    with pytest.raises(BadInput, match="^region: "):
        analyze_run([never_looked_at], ["("], (), ScaleOptions(jobs=2))
    with pytest.raises(BadInput, match="^comm_patterns: "):
        analyze_run([never_looked_at], [], ["["], ScaleOptions(jobs=2))


@pytest.mark.parametrize("options, message", [
    (ScaleOptions(executor="dask"), "needs a scheduler address"),
    (ScaleOptions(scheduler="tcp://x:1"), "only with the dask executor"),
    (ScaleOptions(executor="ray"), "unknown executor"),
    (ScaleOptions(jobs=0), "at least 1"),
])
def test_executor_options_are_checked(tmp_path, options, message):
    run = write_run(tmp_path / "run", ranks=2)
    with pytest.raises(BadInput, match=message):
        analyze_run([run], options=options)


def test_sizes_and_chunks():
    assert parse_size("1G") == 1 << 30 and parse_size("512MiB") == 512 << 20 and parse_size("1.5k") == 1536
    assert parse_size("2000000000") == 2_000_000_000
    for bad in ("", "lots", "-1G", "0"):
        with pytest.raises(BadInput, match="^memory_budget: "):
            parse_size(bad)
    assert chunk_size_for(None, 4) == CHUNK
    assert chunk_size_for(1 << 30, 1) == 8 << 20  # a 1 GiB budget reads 8 MiB of text per step
    assert chunk_size_for(1 << 30, 2) == 4 << 20  # shared by two workers
    assert chunk_size_for(1, 1) == MIN_CHUNK and chunk_size_for(1 << 40, 1) == CHUNK


def test_cli_jobs_cache_and_no_cache_print_the_same_json(tmp_path, monkeypatch):
    monkeypatch.setenv("OVERLAPSCOPE_CACHE", str(tmp_path / "cache"))
    run = write_run(tmp_path / "run")
    outputs = []
    for extra in (["--jobs", "1", "--no-cache"], ["-j", "2"], ["-j", "2"], ["-j", "1", "--memory-budget", "64M"]):
        result = runner.invoke(app, ["analyze", str(run), "--json", "--region", "^tbo/", *extra])
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout)
    assert len(set(outputs)) == 1
    assert outputs[0].strip() == dumps(analyze(load([run]), ["^tbo/"]).to_dict())
    assert any((tmp_path / "cache").rglob("meta.json"))


def test_cli_bad_budget_and_bad_executor_are_one_line_exit_2(tmp_path):
    run = write_run(tmp_path / "run", ranks=1)
    for extra in (["--memory-budget", "lots"], ["--executor", "dask"]):
        result = runner.invoke(app, ["analyze", str(run), "--no-cache", *extra])
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
