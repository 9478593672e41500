"""The DuckDB catalog: views over the lake, read-only, usable before a dataset exists; `lmforge query/stats`."""

from __future__ import annotations

import json
import os
import time
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
    catalog,
    read_manifest,
    write_table,
)
from pipelines.lake.catalog import CATALOG_FILE, CatalogError, View, catalog_path, connect, lake_state, query, stats


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
    unvalidated = query(lake, "SELECT count(*), any_value(examples), any_value(success) FROM quality_results")
    assert unvalidated.rows == [(0, None, None)] and unvalidated.columns[1] == "any_value(examples)"


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


# --- when the catalog is rebuilt ----------------------------------------------------------------


def age(lake: Lake, seconds: float = 60) -> None:
    """Date every file of the lake (but the catalog) `seconds` back, as if the last run had finished then: only
    then is the lake's state trusted (a file changed within `RECENT_S` could change again unseen)."""
    then = time.time() - seconds
    for path in Path(lake.root).rglob("*"):
        if CATALOG_FILE not in path.name:
            os.utime(path, (then, then))


def catalog_file(lake: Lake) -> tuple[int, int]:
    """The catalog file's inode and mtime: both change when it is rebuilt (a new file renamed into place)."""
    st = os.stat(catalog_path(lake))
    return st.st_ino, st.st_mtime_ns


def add_run(lake: Lake, label: str, texts: list[str]) -> None:
    rows = [{"id": f"{label}/{i}", "text": t, "lang": "deu_Latn", "n_chars": len(t)} for i, t in enumerate(texts)]
    run = run_id(label)
    write_table(lake, DOCUMENTS_CLEAN, f"lang=deu_Latn/{run}_00000.parquet", pa.Table.from_pylist(rows, schema=DOCUMENTS_SCHEMA))
    list_run(lake, run, DOCUMENTS_CLEAN)


def no_listing(lake: Lake) -> dict[str, str]:
    raise AssertionError("the views were listed")


@pytest.mark.parametrize("settled", [True, False], ids=["state", "no-state"])
def test_a_query_sees_a_new_run_without_a_refresh(lake, settled):
    """With a state (files older than RECENT_S) or without one (files just written), the next query sees the run."""
    settle = age if settled else lambda lake: None
    settle(lake)
    assert query(lake, "SELECT count(*) FROM documents_clean").rows == [(3,)]
    add_run(lake, "second", ["eins zwei", "drei"])
    settle(lake)
    assert query(lake, "SELECT count(*) FROM documents_clean").rows == [(5,)]
    assert dict(query(lake, "SELECT dataset, rows FROM manifests").rows)[DOCUMENTS_CLEAN] == 5


def test_the_catalog_is_not_rewritten_nor_the_lake_listed_when_nothing_changed(lake, monkeypatch):
    age(lake)
    query(lake, "SELECT count(*) FROM documents_clean")
    built = catalog_file(lake)
    state = lake_state(lake)
    assert state is not None
    with connect(lake) as con:
        assert con.execute(f"SELECT state FROM {catalog.KEY_VIEW}").fetchall() == [(state,)]
    monkeypatch.setattr(catalog, "view_definitions", no_listing)
    assert query(lake, "SELECT count(*) FROM documents_clean").rows == [(3,)]
    assert stats(lake)["documents by language"].rows[0][:2] == ("eng_Latn", 2)
    with connect(lake) as con:  # the reused catalog is as read-only as a rebuilt one
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("CREATE VIEW x AS SELECT 1")
    assert catalog_file(lake) == built


def test_without_a_state_the_catalog_is_rewritten_only_when_the_views_change(lake, monkeypatch):
    """Just after a run (or on a remote lake) there is no state to trust: the views are listed and compared."""
    monkeypatch.setattr(catalog, "RECENT_S", 3600.0)  # every file of the lake was written "just now"
    assert lake_state(lake) is None
    query(lake, "SELECT 1")
    built = catalog_file(lake)
    query(lake, "SELECT 1")
    assert catalog_file(lake) == built
    add_run(lake, "second", ["eins"])
    assert query(lake, "SELECT count(*) FROM documents_clean").rows == [(4,)]
    assert catalog_file(lake) != built


def test_a_hand_edited_manifest_changes_the_views(lake):
    """A manifest rewritten in place (same inode) still changes the state: its size and mtime."""
    age(lake)
    assert query(lake, "SELECT count(*) FROM rejected").rows == [(3,)]
    built = catalog_file(lake)
    manifest = read_manifest(lake, REJECTED)
    manifest.runs = []
    Path(lake.path(REJECTED, MANIFEST)).write_text(manifest.model_dump_json())
    age(lake)
    assert query(lake, "SELECT count(*) FROM rejected").rows == [(0,)]
    assert catalog_file(lake) != built


def test_a_new_tokens_manifest_or_metrics_file_changes_the_state(lake):
    age(lake)
    before = lake_state(lake)
    metrics = Path(lake.root, "checkpoints", "run-a", "metrics.jsonl")
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"step": 1, "kind": "train", "loss": 2.5}) + "\n")
    age(lake)
    after_metrics = lake_state(lake)
    assert after_metrics != before
    assert query(lake, "SELECT run, step, loss FROM train_metrics").rows == [("run-a", 1, 2.5)]
    tokens = Path(lake.root, "tokens", "tok", "documents", "clean", MANIFEST)
    tokens.parent.mkdir(parents=True)
    tokens.write_text("{}")
    age(lake)
    assert lake_state(lake) not in (before, after_metrics)


def test_a_new_view_is_there_without_a_change_to_the_lake(lake, monkeypatch):
    """The state covers the views the code defines: adding one (as `quality_results` will be) rebuilds."""
    age(lake)
    query(lake, "SELECT 1")
    views = catalog.CATALOG_VIEWS | {"extra": View(lambda lake: "SELECT 42 AS answer", ())}
    monkeypatch.setattr(catalog, "CATALOG_VIEWS", views)
    assert query(lake, "SELECT answer FROM extra").rows == [(42,)]
    assert sorted(r[0] for r in query(lake, "SHOW TABLES").rows) == sorted(views)  # the key is not among them


def test_a_listed_shard_deleted_by_hand_is_dropped_on_a_retry(lake):
    """Nothing in lmforge deletes a listed run's shard, so it does not change the state; if one is deleted
    anyway, the query that fails on it is run again on a catalog listed afresh."""
    age(lake)
    assert query(lake, "SELECT count(*) FROM documents_clean").rows == [(3,)]
    (french,) = [s for s in catalog.listed_shards(lake, DOCUMENTS_CLEAN) if "fra_Latn" in s]
    os.remove(french)
    assert query(lake, "SELECT count(*) FROM documents_clean").rows == [(2,)]
    assert query(lake, "SELECT count(*) FROM documents_clean").rows == [(2,)]


def test_a_catalog_without_a_key_or_unreadable_is_rebuilt(lake):
    age(lake)
    path = catalog_path(lake)
    with duckdb.connect(path) as con:  # as an earlier lmforge wrote it: views only
        con.execute("CREATE VIEW documents_clean AS SELECT 1 AS stale")
    assert query(lake, "SELECT count(*) FROM documents_clean").rows == [(3,)]
    Path(path).write_bytes(b"not a duckdb file")
    assert query(lake, "SELECT count(*) FROM documents_clean").rows == [(3,)]


def test_a_remote_lake_has_no_state_and_its_catalog_is_in_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    remote = Lake.at("memory://catalog-test-lake")
    assert lake_state(remote) is None
    assert query(remote, "SELECT count(*) FROM documents").rows == [(0,)]
    path = catalog_path(remote)
    assert path.startswith(str(tmp_path / "home" / ".cache" / "lmforge"))
    built = catalog_file(remote)
    assert query(remote, "SELECT count(*) FROM train_metrics").rows == [(0,)]
    assert catalog_file(remote) == built  # the views were listed, found the same, and the file kept
