"""Scale-out on datatrove's executors: the same ingest and dedup on a real local Ray cluster equal the local runs;
Slurm submission and stage chaining against a stand-in `sbatch`; a missing Ray is one clear line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from builders import PROSE, page, plain, response, write_jsonl, write_warc
from test_dedup import doc, edit, put_clean

from pipelines.dedup.run import DedupConfig, run_dedup
from pipelines.dedup.steps import EXACT, NEAR, URL
from pipelines.ingest.inputs import resolve_inputs
from pipelines.ingest.run import IngestConfig, run_ingest, run_logging_dir
from pipelines.lake import DOCUMENTS_CLEAN, DOCUMENTS_DEDUP, REJECTED, Lake, read_manifest
from pipelines.lake.executors import (
    ExecutorConfig,
    ExecutorUnavailable,
    PipelineFailed,
    PipelineSubmitted,
    make_executor,
    ray_cluster,
    run_pipeline,
)

RAY = ExecutorConfig(kind="ray", ray_cpus=2)


@pytest.fixture(scope="module")
def ray_session():
    """One private local Ray cluster for the module (the runs reuse it instead of starting their own)."""
    pytest.importorskip("ray")
    with ray_cluster(RAY):
        yield


@pytest.fixture
def two_inputs(tmp_path) -> list[str]:
    """Two inputs (so two tasks): a WARC with pages in two languages and bad records, and a JSONL in a third.

    No Japanese: its word tokenizer (sudachi) takes seconds to load in every task."""
    warc = write_warc(
        tmp_path / "crawl.warc.gz",
        [
            response("https://example.org/en", page("en").encode()),
            response("https://example.org/fr", page("fr").encode()),
            response("https://example.org/short", b"<html><body><p>Too short to keep.</p></body></html>"),
            response("https://example.org/binary", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8),
        ],
    )
    jsonl = write_jsonl(
        tmp_path / "notes.jsonl", [{"id": "n1", "text": plain("de"), "url": "https://example.org/n1"}, "{not json"]
    )
    return [str(warc), str(jsonl)]


def rows(lake: Lake, dataset: str) -> list[dict]:
    """Every row of a dataset, in a stable order."""
    table = ds.dataset(lake.shards(dataset), format="parquet").to_table()
    return sorted(table.to_pylist(), key=lambda r: (r["id"], str(r.get("step")), r["text"] or ""))


def shard_names(lake: Lake) -> list[str]:
    return [s[len(lake.root) :] for s in lake.shards(DOCUMENTS_CLEAN) + lake.shards(REJECTED)]


def file_times(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_ray_ingest_equals_local_ingest_and_its_rerun_is_a_no_op(two_inputs, tmp_path, ray_session):
    items = resolve_inputs(two_inputs)
    local, on_ray = Lake.at(tmp_path / "local"), Lake.at(tmp_path / "ray")
    first = run_ingest(items, local, IngestConfig(workers=2))
    second = run_ingest(items, on_ray, IngestConfig(workers=2, executor=RAY))

    assert second.run == first.run  # the executor is not part of the run's identity
    assert shard_names(on_ray) == shard_names(local)
    assert rows(on_ray, DOCUMENTS_CLEAN) == rows(local, DOCUMENTS_CLEAN)
    assert rows(on_ray, REJECTED) == rows(local, REJECTED)
    assert {r["lang"] for r in rows(on_ray, DOCUMENTS_CLEAN)} == {"eng_Latn", "fra_Latn", "deu_Latn"}
    assert {"binary_body", "invalid_json"} <= {r["reason"] for r in rows(on_ray, REJECTED)}
    assert (second.documents, second.rejected, second.by_reason) == (first.documents, first.rejected, first.by_reason)
    assert len(second.step_stats) == len(first.step_stats)  # every task's stats reached the logging dir
    assert read_manifest(on_ray, DOCUMENTS_CLEAN).runs[0].parameters == read_manifest(local, DOCUMENTS_CLEAN).runs[0].parameters

    datatrove = Path(run_logging_dir(on_ray, second.run))
    assert sorted(os.listdir(datatrove / "completions")) == ["00000", "00001"]
    assert "cpus_per_task" in json.loads((datatrove / "executor.json").read_text())  # Ray's executor ran it
    before = file_times(datatrove) | file_times(Path(on_ray.path(DOCUMENTS_CLEAN)))
    again = run_ingest(items, on_ray, IngestConfig(workers=2, executor=RAY))
    after = file_times(datatrove) | file_times(Path(on_ray.path(DOCUMENTS_CLEAN)))
    assert {k: v for k, v in after.items() if "_manifest" not in k} == {k: v for k, v in before.items() if "_manifest" not in k}
    assert (again.run, again.documents, again.rejected) == (second.run, second.documents, second.rejected)
    assert len(read_manifest(on_ray, DOCUMENTS_CLEAN).runs) == 1


@pytest.mark.slow
def test_ray_dedup_equals_local_dedup(tmp_path, ray_session):
    local, on_ray = Lake.at(tmp_path / "local"), Lake.at(tmp_path / "ray")
    english, french = " ".join(PROSE["en"]), " ".join(PROSE["fr"])
    parts = {
        "first": [doc("en", english, url="https://e.org/en"), doc("fr", french, "fra_Latn", url="https://e.org/fr")],
        "second": [
            doc("en-copy", english.upper(), url="https://mirror.org/en"),
            doc("en-near", edit(english, 100), url="https://e.org/en-2"),
            doc("fr-same-url", french[:300], "fra_Latn", url="http://www.e.org/fr/"),
        ],
    }
    for lake in (local, on_ray):
        for name, docs in parts.items():
            put_clean(lake, docs, name)
    first = run_dedup(local, DedupConfig(workers=2))
    second = run_dedup(on_ray, DedupConfig(workers=2, executor=RAY))

    assert second.run == first.run
    names = [s[len(on_ray.root) :] for s in on_ray.shards(DOCUMENTS_DEDUP) + on_ray.shards(REJECTED)]
    assert names == [s[len(local.root) :] for s in local.shards(DOCUMENTS_DEDUP) + local.shards(REJECTED)]
    assert rows(on_ray, DOCUMENTS_DEDUP) == rows(local, DOCUMENTS_DEDUP)
    assert rows(on_ray, REJECTED) == rows(local, REJECTED)
    assert {r["id"] for r in rows(on_ray, DOCUMENTS_DEDUP)} == {"en", "fr"}
    assert second.removed == first.removed == {EXACT: 1, URL: 1, NEAR: 1}


@pytest.mark.slow
def test_a_failed_ray_task_fails_the_run_naming_it(tmp_path, ray_session):
    # defined here so that cloudpickle ships it by value: Ray's workers cannot import this test module
    def fail_on_rank_one(data, rank: int = 0, world_size: int = 1):
        if rank == 1:
            raise ValueError("planted failure")
        yield from data or []

    logs = tmp_path / "logs"
    with pytest.raises(PipelineFailed, match=r"1 of 2 tasks did not finish \(ranks 1\)"):
        run_pipeline([fail_on_rank_one], tasks=2, logging_dir=str(logs), config=RAY, name="planted")
    assert os.listdir(logs / "completions") == ["00000"]  # datatrove's Ray executor only logs the failure
    assert "planted failure" in (logs / "logs" / "task_00001.log").read_text()


def test_missing_ray_is_one_line_naming_the_extra(two_inputs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    with pytest.raises(ExecutorUnavailable) as failure:
        run_ingest(resolve_inputs(two_inputs), Lake.at(tmp_path / "lake"), IngestConfig(executor=ExecutorConfig(kind="ray")))
    assert str(failure.value) == "the Ray executor needs Ray: pip install 'lmforge[ray]'"
    assert not (tmp_path / "lake").exists()  # failed before any work
    with pytest.raises(ExecutorUnavailable, match=r"lmforge\[ray\]"), ray_cluster(ExecutorConfig(kind="ray")):
        pass


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch) -> Path:
    """A stand-in `sbatch` on PATH that records its arguments and answers like Slurm does."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch_calls"
    bin_dir.mkdir()
    script = bin_dir / "sbatch"
    lines = ["#!/bin/sh", f'echo "$@" >> "{calls}"', f'echo "Submitted batch job $((1000 + $(wc -l < "{calls}")))"']
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_slurm_submits_an_array_and_chains_stages_with_afterok(fake_sbatch, tmp_path):
    slurm = ExecutorConfig(kind="slurm", partition="cpu", time="02:00:00", sbatch_args={"account": "lm"})
    first = run_pipeline([], tasks=3, logging_dir=str(tmp_path / "s1"), config=slurm, name="stage-1")
    second = run_pipeline([], tasks=2, logging_dir=str(tmp_path / "s2"), config=slurm, name="stage-2", depends=first)

    calls = fake_sbatch.read_text().splitlines()  # stage 1, its stats merge, stage 2, its stats merge
    assert first.job_id == "1001" and second.job_id == "1003"
    assert "--dependency" not in calls[0] and "--dependency=afterok:1001" in calls[2]
    script = (tmp_path / "s1" / "launch_script.slurm").read_text()
    for line in ("--partition=cpu", "--time=02:00:00", "--array=0-2", "--account=lm", "--cpus-per-task=1", "--mem-per-cpu=2G"):
        assert f"#SBATCH {line}" in script
    assert f"source {sys.prefix}/bin/activate" in script and "launch_pickled_pipeline" in script
    assert (tmp_path / "s1" / "executor.pik").is_file()  # what each array task unpickles and runs


def test_a_slurm_ingest_returns_once_submitted_naming_the_job(fake_sbatch, two_inputs, tmp_path):
    lake = Lake.at(tmp_path / "lake")
    config = IngestConfig(executor=ExecutorConfig(kind="slurm", partition="cpu"))
    with pytest.raises(PipelineSubmitted, match="job 1001 .*rerun the same command"):
        run_ingest(resolve_inputs(two_inputs), lake, config)
    assert not lake.shards(DOCUMENTS_CLEAN)  # nothing recorded until the jobs have run


def test_a_slurm_dedup_submits_its_five_stages_each_after_the_previous_one(fake_sbatch, tmp_path):
    lake = Lake.at(tmp_path / "lake")
    put_clean(lake, [doc("a", " ".join(PROSE["en"])), doc("b", " ".join(PROSE["en"]))])
    with pytest.raises(PipelineSubmitted, match="dedup run .* job 1009"):
        run_dedup(lake, DedupConfig(executor=ExecutorConfig(kind="slurm", partition="cpu")))
    calls = fake_sbatch.read_text().splitlines()  # each stage, then its stats merge
    assert len(calls) == 10 and "--dependency" not in calls[0]
    assert [c.split("--dependency=")[1].split()[0] for c in calls[2::2]] == [
        "afterok:1001",
        "afterok:1003",
        "afterok:1005",
        "afterok:1007",
    ]
    assert not lake.shards(DOCUMENTS_DEDUP)


def test_slurm_needs_a_partition_and_takes_fractional_memory_in_mb(tmp_path):
    with pytest.raises(ExecutorUnavailable, match="partition"):
        ExecutorConfig(kind="slurm").check_available()
    executor = make_executor(
        [], tasks=1, logging_dir=str(tmp_path / "logs"), config=ExecutorConfig(kind="slurm", partition="cpu", mem_per_cpu_gb=1.5)
    )
    assert executor.get_sbatch_args()["mem-per-cpu"] == "1536M"
