"""The DuckDB catalog: views over the lake, read-only, usable before a dataset exists; `lmforge query/stats`."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipelines.lake import DOCUMENTS_CLEAN, DOCUMENTS_SCHEMA, REJECTED, REJECTED_SCHEMA, Lake, refresh_manifest, write_table
from pipelines.lake.catalog import CatalogError, connect, query, stats


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake.at(tmp_path / "lake")
    for lang, texts in {"eng_Latn": ["one two", "three four five"], "fra_Latn": ["un deux trois"]}.items():
        rows = [{"id": f"{lang}/{i}", "text": t, "lang": lang, "n_chars": len(t), "lang_score": 0.9} for i, t in enumerate(texts)]
        write_table(lake, DOCUMENTS_CLEAN, f"lang={lang}/r_00000.parquet", pa.Table.from_pylist(rows, schema=DOCUMENTS_SCHEMA))
    rejected = [
        {"id": "a", "stage": "ingest", "step": "read", "reason": "invalid_json", "detail": "line 3: Expecting value"},
        {"id": "b", "stage": "ingest", "step": "gopher_quality", "reason": "gopher_short_doc"},
        {"id": "c", "stage": "ingest", "step": "gopher_quality", "reason": "gopher_short_doc"},
    ]
    write_table(lake, REJECTED, "ingest/read/r_00000.parquet", pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))
    refresh_manifest(lake, DOCUMENTS_CLEAN)
    refresh_manifest(lake, REJECTED)
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
    with pytest.raises(CatalogError, match="views: documents_clean, documents, rejected, manifests"):
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
