"""The DuckDB catalog: views over the lake, read-only, usable before a dataset exists; `lmforge query/stats`."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from builders import list_run, run_id
from typer.testing import CliRunner

from flows.cli import app
from pipelines.lake import (
    DOCUMENTS_CLEAN,
    DOCUMENTS_DEDUP,
    DOCUMENTS_SCHEMA,
    MANIFEST,
    REJECTED,
    REJECTED_SCHEMA,
    Lake,
    read_manifest,
    write_table,
)
from pipelines.lake.catalog import CatalogError, connect, query, stats


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake.at(tmp_path / "lake")
    run = run_id("r")
    for lang, texts in {"eng_Latn": ["one two", "three four five"], "fra_Latn": ["un deux trois"]}.items():
        rows = [{"id": f"{lang}/{i}", "text": t, "lang": lang, "n_chars": len(t), "lang_score": 0.9} for i, t in enumerate(texts)]
        table = pa.Table.from_pylist(rows, schema=DOCUMENTS_SCHEMA)
        write_table(lake, DOCUMENTS_CLEAN, f"lang={lang}/{run}_00000.parquet", table)
    rejected = [
        {"id": "a", "stage": "ingest", "step": "read", "reason": "invalid_json", "detail": "line 3: Expecting value"},
        {"id": "b", "stage": "ingest", "step": "gopher_quality", "reason": "gopher_short_doc"},
        {"id": "c", "stage": "ingest", "step": "gopher_quality", "reason": "gopher_short_doc"},
    ]
    write_table(lake, REJECTED, f"ingest/read/{run}_00000.parquet", pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))
    list_run(lake, run, DOCUMENTS_CLEAN, REJECTED)
    return lake


def test_views_answer_sql_over_the_shards(lake):
    result = query(lake, "SELECT lang, count(*) AS n, sum(n_chars) AS chars FROM documents_clean GROUP BY lang ORDER BY lang")
    assert result.columns == ["lang", "n", "chars"]
    assert result.rows == [("eng_Latn", 2, 22), ("fra_Latn", 1, 13)]
    assert query(lake, "SELECT reason, count(*) FROM rejected GROUP BY reason ORDER BY 2 DESC").rows == [
        ("gopher_short_doc", 2),
        ("invalid_json", 1),
    ]
    assert dict(query(lake, "SELECT dataset, rows FROM manifests").rows) == {DOCUMENTS_CLEAN: 3, REJECTED: 3}


def test_a_dataset_that_does_not_exist_yet_is_an_empty_typed_view(lake):
    result = query(lake, "SELECT count(*), any_value(minhash_cluster_size) FROM documents")
    assert result.rows == [(0, None)]


def test_the_catalog_is_read_only(lake):
    with connect(lake) as con:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("CREATE TABLE x AS SELECT 1")
    with pytest.raises(CatalogError, match="read-only"):
        query(lake, "DROP VIEW documents_clean")


def test_bad_sql_names_the_views(lake):
    with pytest.raises(CatalogError, match="views: documents_clean, documents, rejected, wrap, self_instruct, .*, manifests"):
        query(lake, "SELECT * FROM nope")


def test_stats_count_documents_languages_and_reasons(lake):
    tables = stats(lake)
    assert [r[:3] for r in tables["documents by language"].rows] == [("eng_Latn", 2, 22), ("fra_Latn", 1, 13)]
    assert tables["rejections by reason"].rows[0] == ("ingest", "gopher_quality", "gopher_short_doc", 2)


def test_cli_query_formats_and_errors(lake):
    runner = CliRunner()
    sql = "SELECT id, lang FROM documents_clean ORDER BY id"
    as_json = runner.invoke(app, ["query", sql, "--lake", lake.root, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)[0] == {"id": "eng_Latn/0", "lang": "eng_Latn"}
    as_csv = runner.invoke(app, ["query", sql, "--lake", lake.root, "--format", "csv"])
    assert as_csv.stdout.splitlines()[:2] == ["id,lang", "eng_Latn/0,eng_Latn"]
    table = runner.invoke(app, ["query", sql, "--lake", lake.root])
    assert "fra_Latn/0" in table.stdout
    bad = runner.invoke(app, ["query", "SELEC nonsense", "--lake", lake.root])
    assert bad.exit_code == 1 and "error:" in bad.stderr
    assert runner.invoke(app, ["query", sql, "--lake", lake.root, "--format", "xml"]).exit_code == 1


def test_cli_stats_prints_the_tables(lake):
    result = CliRunner().invoke(app, ["stats", "--lake", lake.root])
    assert result.exit_code == 0, result.output
    assert "documents by language" in result.stdout and "gopher_short_doc" in result.stdout


def test_views_and_manifests_read_only_the_runs_the_manifest_lists(lake):
    """A killed run's published shards stay in the folder; no view counts them, no recount includes them."""
    killed = run_id("killed")
    again = pa.Table.from_pylist([{"id": "x", "text": "one two", "lang": "eng_Latn", "n_chars": 7}], schema=DOCUMENTS_SCHEMA)
    write_table(lake, DOCUMENTS_CLEAN, f"lang=eng_Latn/{killed}_00000.parquet", again)
    rejected = [{"id": "y", "stage": "ingest", "step": "read", "reason": "invalid_json"}]
    write_table(lake, REJECTED, f"ingest/read/{killed}_00000.parquet", pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))
    list_run(lake, run_id("other"), DOCUMENTS_CLEAN)  # a later run recounts the dataset
    assert query(lake, "SELECT count(*) FROM documents_clean").rows == [(3,)]
    assert query(lake, "SELECT count(*) FROM rejected").rows == [(3,)]
    assert dict(query(lake, "SELECT dataset, rows FROM manifests").rows) == {DOCUMENTS_CLEAN: 3, REJECTED: 3}


def test_a_dataset_folder_without_a_manifest_shows_nothing(lake):
    rows = [{"id": "d", "text": "hand placed", "lang": "eng_Latn"}]
    table = pa.Table.from_pylist(rows, schema=DOCUMENTS_SCHEMA)
    write_table(lake, DOCUMENTS_DEDUP, f"lang=eng_Latn/{run_id('dedup')}_00000.parquet", table)
    write_table(lake, DOCUMENTS_DEDUP, "lang=eng_Latn/mine.parquet", table)
    assert query(lake, "SELECT count(*) FROM documents").rows == [(0,)]


def test_rejected_shows_ingest_runs_and_the_standing_dedup_run_only(lake):
    from test_dedup import ENGLISH, LOCAL, doc, put_clean

    from pipelines.dedup.run import run_dedup

    by_stage = "SELECT stage, count(*) FROM rejected GROUP BY stage ORDER BY stage"
    put_clean(lake, [doc("a", ENGLISH), doc("b", ENGLISH)], name="first")
    first = run_dedup(lake, LOCAL)
    assert query(lake, by_stage).rows == [("dedup", 1), ("ingest", 3)]
    assert [r.stage for r in read_manifest(lake, REJECTED).runs] == ["ingest", "dedup"]

    put_clean(lake, [doc("c", ENGLISH)], name="second")
    second = run_dedup(lake, LOCAL)
    assert query(lake, by_stage).rows == [("dedup", 2), ("ingest", 3)]
    listed = [r.run for r in read_manifest(lake, REJECTED).runs]
    assert second.run in listed and first.run not in listed and len(listed) == 2
    assert dict(query(lake, "SELECT dataset, rows FROM manifests").rows)[REJECTED] == 5

    # a lake whose dedup finished before dedup listed its rejections: the next (skipped) run lists them
    manifest = read_manifest(lake, REJECTED)
    manifest.runs = [r for r in manifest.runs if r.stage != "dedup"]
    Path(lake.path(REJECTED, MANIFEST)).write_text(manifest.model_dump_json())
    assert query(lake, by_stage).rows == [("ingest", 3)]
    assert run_dedup(lake, LOCAL).skipped
    assert query(lake, by_stage).rows == [("dedup", 2), ("ingest", 3)]


def test_stats_on_an_empty_lake_are_empty_tables_not_an_error(tmp_path):
    empty = Lake.at(tmp_path / "empty")
    tables = stats(empty)
    assert all(not table.rows for title, table in tables.items() if title != "synthetic data")
    assert query(empty, "SELECT count(*) FROM train_metrics").rows == [(0,)]
    assert query(empty, "SELECT shards, updated FROM manifests").rows == []
