"""The lake contract: atomic writes, shard discovery, manifests, roots from env or URL."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import list_run, run_id

from pipelines.lake import (
    DOCUMENTS_CLEAN,
    DOCUMENTS_SCHEMA,
    REJECTED,
    STAGING,
    InputRecord,
    Lake,
    RunRecord,
    ingested_inputs,
    listed_shards,
    read_manifest,
    refresh_manifest,
    run_shards,
    shard_run,
    write_table,
)


def docs_table(n: int, lang: str = "eng_Latn") -> pa.Table:
    rows = [{"id": f"{lang}-{i}", "text": f"document {i}", "lang": lang, "n_chars": 10} for i in range(n)]
    return pa.Table.from_pylist(rows, schema=DOCUMENTS_SCHEMA)


def test_lake_root_comes_from_env_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFORGE_LAKE", str(tmp_path / "mylake"))
    assert Lake.at().root == str(tmp_path / "mylake")
    assert Lake.at(tmp_path / "other").root == str(tmp_path / "other")


def test_file_url_lake_writes_and_lists_shards(tmp_path):
    lake = Lake.at(f"file://{tmp_path}/urllake")
    run = run_id("a")
    write_table(lake, DOCUMENTS_CLEAN, f"lang=eng_Latn/{run}_00000.parquet", docs_table(3))
    assert [s.rsplit("/", 2)[-2:] for s in lake.shards(DOCUMENTS_CLEAN)] == [["lang=eng_Latn", f"{run}_00000.parquet"]]
    list_run(lake, run, DOCUMENTS_CLEAN)
    assert read_manifest(lake, DOCUMENTS_CLEAN).rows == 3


def test_shards_ignore_staging_logs_and_temporary_files(tmp_path):
    lake = Lake.at(tmp_path)
    write_table(lake, DOCUMENTS_CLEAN, "lang=eng_Latn/a.parquet", docs_table(2))
    (tmp_path / DOCUMENTS_CLEAN / "lang=eng_Latn" / ".b.parquet.1234.tmp").write_bytes(b"partial")
    (tmp_path / DOCUMENTS_CLEAN / "_datatrove" / "x").mkdir(parents=True)
    (tmp_path / DOCUMENTS_CLEAN / "_datatrove" / "x" / "c.parquet").write_bytes(b"not a shard")
    (tmp_path / STAGING / "run" / DOCUMENTS_CLEAN).mkdir(parents=True)
    (tmp_path / STAGING / "run" / DOCUMENTS_CLEAN / "d.parquet").write_bytes(b"staged")
    assert [os.path.basename(s) for s in lake.shards(DOCUMENTS_CLEAN)] == ["a.parquet"]


def test_a_failed_shard_write_leaves_the_old_shard_and_no_temporary_file(tmp_path, monkeypatch):
    lake = Lake.at(tmp_path)
    path = write_table(lake, DOCUMENTS_CLEAN, "lang=eng_Latn/a.parquet", docs_table(3))

    def dies_midway(table, where, **kwargs):
        where.write(b"PAR1 half a shard")
        raise KeyboardInterrupt

    monkeypatch.setattr("pipelines.lake.contract.pq.write_table", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        write_table(lake, DOCUMENTS_CLEAN, "lang=eng_Latn/a.parquet", docs_table(7))
    assert pq.read_table(path).num_rows == 3
    assert os.listdir(os.path.dirname(path)) == ["a.parquet"]


def run(name: str, stage: str = "ingest") -> RunRecord:
    return RunRecord(
        run=run_id(name),
        stage=stage,
        parameters={"p": 1},
        inputs=[InputRecord(path=f"/in/{name}.warc.gz", size=10, mtime_ns=5, sha256="ab")],
        started="2026-01-01T00:00:00+00:00",
        finished="2026-01-01T00:00:01+00:00",
        lmforge_version="0.1.0",
    )


def test_manifest_counts_rows_and_keeps_every_run(tmp_path):
    lake = Lake.at(tmp_path)
    r1, r2 = run_id("r1"), run_id("r2")
    write_table(lake, DOCUMENTS_CLEAN, f"lang=eng_Latn/{r1}_00000.parquet", docs_table(3))
    write_table(lake, DOCUMENTS_CLEAN, f"lang=fra_Latn/{r2}_00000.parquet", docs_table(2, "fra_Latn"))
    refresh_manifest(lake, DOCUMENTS_CLEAN, [run("r1")])
    manifest = refresh_manifest(lake, DOCUMENTS_CLEAN, [run("r2")])
    assert (manifest.rows, manifest.shards, manifest.schema_version) == (5, 2, 1)
    assert manifest.bytes > 0 and "lang" in manifest.columns
    assert [r.run for r in read_manifest(lake, DOCUMENTS_CLEAN).runs] == [r1, r2]
    assert ingested_inputs(lake) == {("/in/r1.warc.gz", 10, 5), ("/in/r2.warc.gz", 10, 5)}


def test_a_shard_names_the_run_that_wrote_it():
    run = run_id("x")
    assert shard_run(f"/lake/documents/clean/lang=eng_Latn/{run}_00003.parquet") == run
    assert shard_run(f"s3://bucket/lake/documents/rejected/dedup/near/001_{run}_00012.parquet") == run
    for other in ("a.parquet", "part_00000.parquet", f"{run}.parquet", f".{run}_00000.parquet.1234abcd.tmp", f"{run}_x.parquet"):
        assert shard_run(other) is None, other


def test_readers_see_the_listed_runs_and_a_stage_that_replaces_its_runs_keeps_the_others(tmp_path):
    lake = Lake.at(tmp_path)
    for name, n in {"ingest": 3, "dedup-1": 2, "dedup-2": 1, "killed": 4}.items():
        write_table(lake, REJECTED, f"x/{run_id(name)}_00000.parquet", docs_table(n))
    write_table(lake, REJECTED, "x/mine.parquet", docs_table(5))
    assert listed_shards(lake, REJECTED) == []  # no manifest: nothing is listed

    refresh_manifest(lake, REJECTED, [run("ingest")])
    refresh_manifest(lake, REJECTED, [run("dedup-1", "dedup")], replace_stage=True)
    manifest = refresh_manifest(lake, REJECTED, [run("dedup-2", "dedup")], replace_stage=True)
    assert [r.run for r in manifest.runs] == [run_id("ingest"), run_id("dedup-2")]
    assert (manifest.rows, manifest.shards) == (4, 2)
    standing = sorted(lake.path(REJECTED, f"x/{run_id(n)}_00000.parquet") for n in ("ingest", "dedup-2"))
    assert listed_shards(lake, REJECTED) == standing
    assert run_shards(lake, REJECTED, run_id("killed")) == [lake.path(REJECTED, f"x/{run_id('killed')}_00000.parquet")]
    assert len(lake.shards(REJECTED)) == 5  # the folder still holds every file


def test_each_writer_publishes_only_its_own_shards(tmp_path):
    """Two exclusion writers of one task: the first to close must not publish the other's open file."""
    from datatrove.data import Document

    from pipelines.lake.writers import RejectedWriter

    lake = Lake.at(tmp_path)
    first, second = (RejectedWriter(lake, REJECTED, "run1", "ingest", step) for step in ("language", "quality"))
    first.write(Document(text="one", id="a", metadata={"reject_reason": "x"}), rank=0)
    second.write(Document(text="two", id="b", metadata={"reject_reason": "y"}), rank=0)
    first.close()
    assert [os.path.basename(os.path.dirname(s)) for s in lake.shards(REJECTED)] == ["language"]
    second.write(Document(text="three", id="c", metadata={"reject_reason": "y"}), rank=0)
    second.close()
    quality = [s for s in lake.shards(REJECTED) if "/quality/" in s]
    assert pq.read_table(quality[0]).column("id").to_pylist() == ["b", "c"]


def test_shards_are_read_on_the_calling_thread_only(tmp_path):
    """pyarrow threads reading a Python file object can abort the process at exit (`read_shard`'s docstring):
    every read of a shard, whole or by batches, must call the file from this thread alone."""
    import threading

    from fsspec.implementations.local import LocalFileSystem

    from pipelines.lake import read_shard, shard_batches

    readers: set[str] = set()

    class Watched(LocalFileSystem):
        def _open(self, path, mode="rb", **kwargs):  # noqa: ANN001, ANN003, ANN202
            f = super()._open(path, mode, **kwargs)
            for name in ("read", "readinto", "seek", "tell"):
                method = getattr(f, name)
                setattr(f, name, lambda *a, _m=method: (readers.add(threading.current_thread().name), _m(*a))[1])
            return f

    lake = Lake.at(tmp_path)
    path = write_table(lake, DOCUMENTS_CLEAN, "x.parquet", pa.concat_tables([docs_table(50)] * 40))  # 2000 rows
    pq.write_table(pq.read_table(path), path, row_group_size=100)  # many row groups: many reads
    fs = Watched(skip_instance_cache=True)
    assert read_shard(fs, path, ["id", "text"]).num_rows == 2000
    assert sum(len(b) for b in shard_batches(fs, path, ["id"], 300)) == 2000
    assert readers == {threading.current_thread().name}
