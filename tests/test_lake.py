"""The lake contract: atomic writes, shard discovery, manifests, roots from env or URL."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.lake import (
    DOCUMENTS_CLEAN,
    DOCUMENTS_SCHEMA,
    STAGING,
    InputRecord,
    Lake,
    RunRecord,
    ingested_inputs,
    read_manifest,
    refresh_manifest,
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
    write_table(lake, DOCUMENTS_CLEAN, "lang=eng_Latn/a.parquet", docs_table(3))
    assert [s.rsplit("/", 2)[-2:] for s in lake.shards(DOCUMENTS_CLEAN)] == [["lang=eng_Latn", "a.parquet"]]
    assert refresh_manifest(lake, DOCUMENTS_CLEAN).rows == 3


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


def test_manifest_counts_rows_and_keeps_every_run(tmp_path):
    lake = Lake.at(tmp_path)
    write_table(lake, DOCUMENTS_CLEAN, "lang=eng_Latn/a.parquet", docs_table(3))
    write_table(lake, DOCUMENTS_CLEAN, "lang=fra_Latn/a.parquet", docs_table(2, "fra_Latn"))

    def run(name: str) -> RunRecord:
        return RunRecord(
            run=name,
            stage="ingest",
            parameters={"p": 1},
            inputs=[InputRecord(path=f"/in/{name}.warc.gz", size=10, mtime_ns=5, sha256="ab")],
            started="2026-01-01T00:00:00+00:00",
            finished="2026-01-01T00:00:01+00:00",
            lmforge_version="0.1.0",
        )

    refresh_manifest(lake, DOCUMENTS_CLEAN, [run("r1")])
    manifest = refresh_manifest(lake, DOCUMENTS_CLEAN, [run("r2")])
    assert (manifest.rows, manifest.shards, manifest.schema_version) == (5, 2, 1)
    assert manifest.bytes > 0 and "lang" in manifest.columns
    assert [r.run for r in read_manifest(lake, DOCUMENTS_CLEAN).runs] == ["r1", "r2"]
    assert ingested_inputs(lake) == {("/in/r1.warc.gz", 10, 5), ("/in/r2.warc.gz", 10, 5)}


def test_each_writer_publishes_only_its_own_shards(tmp_path):
    """Two exclusion writers of one task: the first to close must not publish the other's open file."""
    from datatrove.data import Document

    from pipelines.lake import REJECTED
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
