"""The catalog: DuckDB views over every lake dataset, for ad hoc SQL, opened read-only.

The views live in a small DuckDB file beside the lake (`<lake>/_catalog.duckdb`), rebuilt
atomically when asked, and every query connection opens it with `read_only=True` so a query can
read the lake but never change a table or a view. A dataset that does not exist yet still has its
view (typed, empty), so the same query works before and after a stage first runs.

A view names the shards of the runs its dataset's manifest lists (`listed_shards`), file by file,
as plain DuckDB over those files would: what a killed or replaced run left in the folder is never
read, and a folder without a manifest shows nothing. Since the views name files, the catalog is
rebuilt whenever a connection asks for `refresh` (every `query` and `stats` does).

The `tokens` view has one row per tokenized dataset and split, read from the manifests under `tokens/`
(the token shards themselves are not parquet).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from pipelines.lake import (
    CHECKPOINTS,
    DOCUMENTS_CLEAN,
    DOCUMENTS_DEDUP,
    MANIFEST,
    REJECTED,
    SCHEMAS,
    SYNTHETIC_BEST_OF_N,
    SYNTHETIC_MIX,
    SYNTHETIC_PREFERENCES,
    SYNTHETIC_REJECTED,
    SYNTHETIC_SELF_INSTRUCT,
    SYNTHETIC_WRAP,
    TRAIN_METRICS,
    Lake,
    listed_shards,
    publish,
)
from pipelines.lake.synthetic_schemas import MESSAGES
from pipelines.lake.token_layout import SPLITS, tokens_manifests

CATALOG_FILE = "_catalog.duckdb"

# view name -> dataset folder
VIEWS: dict[str, str] = {
    "documents_clean": DOCUMENTS_CLEAN,
    "documents": DOCUMENTS_DEDUP,
    "rejected": REJECTED,
    "wrap": SYNTHETIC_WRAP,
    "self_instruct": SYNTHETIC_SELF_INSTRUCT,
    "preferences": SYNTHETIC_PREFERENCES,
    "best_of_n": SYNTHETIC_BEST_OF_N,
    "pretrain_mix": SYNTHETIC_MIX,
    "synthetic_rejected": SYNTHETIC_REJECTED,
}

_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    MESSAGES: "STRUCT(role VARCHAR, content VARCHAR)[]",
    pa.list_(pa.string()): "VARCHAR[]",
    pa.list_(pa.float64()): "DOUBLE[]",
}


class CatalogError(RuntimeError):
    pass


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _empty_select(schema: pa.Schema) -> str:
    columns = ", ".join(f"CAST(NULL AS {_DUCKDB_TYPES[f.type]}) AS {f.name}" for f in schema)
    return f"SELECT {columns} WHERE false"


def _dataset_select(lake: Lake, dataset: str) -> str:
    shards = listed_shards(lake, dataset)
    if not shards:
        return _empty_select(SCHEMAS[dataset])
    return f"SELECT * FROM read_parquet([{', '.join(map(_quote, shards))}], union_by_name = true)"


def _manifests_select(lake: Lake) -> str:
    paths = [lake.path(d, MANIFEST) for d in sorted(set(VIEWS.values())) if lake.fs.exists(lake.path(d, MANIFEST))]
    if not paths:
        columns = "CAST(NULL AS VARCHAR) AS dataset, CAST(NULL AS BIGINT) AS rows, CAST(NULL AS BIGINT) AS bytes"
        return f"SELECT {columns}, CAST(NULL AS BIGINT) AS shards, CAST(NULL AS VARCHAR) AS updated WHERE false"
    listed = ", ".join(_quote(p) for p in paths)
    return f"SELECT * FROM read_json([{listed}], union_by_name = true, maximum_object_size = 1 << 28)"


# the `tokens` view: (column, DuckDB type, how it is read from a manifest, `{s}` the split)
_TOKENS_VIEW = [
    ("tokenizer", "VARCHAR", "tokenizer"),
    ("dataset", "VARCHAR", "dataset"),
    ("source_dataset", "VARCHAR", "source_dataset"),
    ("split", "VARCHAR", "'{s}'"),
    ("documents", "BIGINT", "splits.{s}.documents"),
    ("tokens", "BIGINT", "splits.{s}.tokens"),
    ("bytes", "BIGINT", "splits.{s}.bytes"),
    ("shards", "BIGINT", "len(splits.{s}.shards)"),
    ("dtype", "VARCHAR", "dtype"),
    ("run", "VARCHAR", "run"),
]
_SPLIT = "STRUCT(documents BIGINT, tokens BIGINT, bytes BIGINT, shards VARCHAR[])"


def _tokens_select(lake: Lake) -> str:
    """One row per tokens manifest (`tokens/<tokenizer>/<dataset>/`) and split."""
    paths = tokens_manifests(lake)
    if not paths:
        return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t, _ in _TOKENS_VIEW) + " WHERE false"
    read = {c: t for c, t, field in _TOKENS_VIEW if field == c}
    read["splits"] = f"STRUCT({', '.join(f'{s} {_SPLIT}' for s in SPLITS)})"
    spec = ", ".join(f"{_quote(c)}: {_quote(t)}" for c, t in read.items())
    source = f"read_json([{', '.join(map(_quote, paths))}], columns = {{{spec}}})"
    return " UNION ALL ".join(
        "SELECT " + ", ".join(f"{field.format(s=s)} AS {c}" for c, _, field in _TOKENS_VIEW) + f" FROM {source}" for s in SPLITS
    )


# the `train_metrics` view: every line of every training run's metrics.jsonl (a field a line lacks is NULL)
_METRICS = {"step": "BIGINT", "kind": "VARCHAR", "loss": "DOUBLE", "lr": "DOUBLE", "grad_norm": "DOUBLE"}
_METRICS |= {"tokens_per_s": "DOUBLE", "mfu": "DOUBLE", "bpb": "DOUBLE", "accuracy": "DOUBLE", "margin": "DOUBLE"}


def _train_metrics_select(lake: Lake) -> str:
    """One row per logged step or evaluation of each run under `checkpoints/<run>/`."""
    fs = lake.fs
    found = fs.glob(lake.path(CHECKPOINTS, "*", TRAIN_METRICS))
    paths = sorted(p if lake.is_local else fs.unstrip_protocol(p) for p in found)
    columns = ", ".join(f"{c}" for c in _METRICS)
    if not paths:
        return (
            "SELECT CAST(NULL AS VARCHAR) AS run, "
            + ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in _METRICS.items())
            + " WHERE false"
        )
    spec = ", ".join(f"{_quote(c)}: {_quote(t)}" for c, t in _METRICS.items())
    source = f"read_json([{', '.join(map(_quote, paths))}], format = 'newline_delimited', columns = {{{spec}}}, filename = true)"
    return f"SELECT regexp_extract(filename, '/([^/]+)/[^/]+$', 1) AS run, {columns} FROM {source}"


def view_definitions(lake: Lake) -> dict[str, str]:
    views = {name: _dataset_select(lake, dataset) for name, dataset in VIEWS.items()}
    views["manifests"] = _manifests_select(lake)
    views["tokens"] = _tokens_select(lake)
    views["train_metrics"] = _train_metrics_select(lake)
    return views


def catalog_path(lake: Lake) -> str:
    """Where the catalog file lives: in a writable local lake, else in the user's cache (DuckDB needs a local file)."""
    if lake.is_local and os.access(lake.root, os.W_OK):
        return lake.path(CATALOG_FILE)
    cache = os.path.join(os.path.expanduser("~"), ".cache", "lmforge")
    os.makedirs(cache, exist_ok=True)
    return os.path.join(cache, f"catalog-{hashlib.sha1(lake.root.encode()).hexdigest()[:12]}.duckdb")


def build_catalog(lake: Lake) -> str:
    """(Re)write the catalog file with one view per dataset; atomic, so readers never see it half-made."""
    path = catalog_path(lake)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".catalog-", suffix=".duckdb", dir=os.path.dirname(path))
    os.close(fd)
    os.unlink(tmp)  # DuckDB wants to create the file itself
    with duckdb.connect(tmp) as con:
        for name, select in view_definitions(lake).items():
            con.execute(f"CREATE VIEW {name} AS {select}")
    publish(LocalFileSystem(), tmp, path)
    return path


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple]

    def to_arrow(self) -> pa.Table:
        return pa.table({c: [r[i] for r in self.rows] for i, c in enumerate(self.columns)})


def connect(lake: Lake, refresh: bool = True) -> duckdb.DuckDBPyConnection:
    """A read-only connection with the lake's views (rebuilt first when `refresh`)."""
    path = catalog_path(lake)
    if refresh or not os.path.exists(path):
        build_catalog(lake)
    return duckdb.connect(path, read_only=True)


def query(lake: Lake, sql: str) -> QueryResult:
    """Run one SQL statement against the lake's views; errors say what went wrong and what exists."""
    with connect(lake) as con:
        try:
            relation = con.sql(sql)
        except duckdb.Error as e:
            raise CatalogError(f"{e}\nviews: {', '.join([*VIEWS, 'manifests', 'tokens', 'train_metrics'])}") from e
        if relation is None:  # a statement with no result set
            return QueryResult([], [])
        return QueryResult(relation.columns, relation.fetchall())


STATS_QUERIES: dict[str, str] = {
    "documents by language": """
        SELECT lang, count(*) AS docs, sum(n_chars) AS chars, round(avg(lang_score), 3) AS mean_lang_score
        FROM documents_clean GROUP BY lang ORDER BY docs DESC, lang""",
    "rejections by reason": """
        SELECT stage, step, reason, count(*) AS docs FROM rejected
        GROUP BY ALL ORDER BY docs DESC, stage, step, reason""",
    "synthetic data": """
        SELECT 'wrap' AS dataset, style AS kind, count(*) AS rows, sum(n_tokens) AS tokens, min(model) AS model
            FROM wrap GROUP BY style
        UNION ALL SELECT 'self_instruct', CASE WHEN is_classification THEN 'classification' ELSE 'task' END,
            count(*), NULL, min(model) FROM self_instruct GROUP BY ALL
        UNION ALL SELECT 'preferences', 'pairs', count(*), NULL, min(model) FROM preferences
        UNION ALL SELECT 'best_of_n', 'best of ' || n, count(*), NULL, min(model) FROM best_of_n GROUP BY n
        UNION ALL SELECT 'pretrain_mix', origin, count(*), sum(n_chars), NULL FROM pretrain_mix GROUP BY origin
        ORDER BY dataset, kind""",
    "synthetic set aside, by reason": """
        SELECT step AS generator, reason, count(*) AS rows FROM synthetic_rejected
        GROUP BY ALL ORDER BY rows DESC, generator, reason""",
    "training tokens": """
        SELECT tokenizer, dataset, split, documents, tokens FROM tokens ORDER BY tokenizer, dataset, split""",
    "training runs": """
        SELECT run, max(step) FILTER (kind = 'train') AS steps,
            round(arg_max(loss, step) FILTER (kind = 'train'), 4) AS train_loss,
            round(arg_max(loss, step) FILTER (kind = 'eval'), 4) AS held_out_loss,
            round(arg_max(bpb, step) FILTER (kind = 'eval'), 4) AS bits_per_byte,
            round(arg_max(accuracy, step) FILTER (kind = 'eval'), 3) AS pair_accuracy,
            round(median(tokens_per_s) FILTER (kind = 'train')) AS tokens_per_s
        FROM train_metrics GROUP BY run ORDER BY run""",
    "datasets": "SELECT dataset, rows, bytes, shards, updated FROM manifests ORDER BY dataset",
}


def stats(lake: Lake) -> dict[str, QueryResult]:
    """The tables `lmforge stats` prints: documents and characters per language, rejections per reason."""
    with connect(lake) as con:
        return {title: QueryResult(r.columns, r.fetchall()) for title, sql in STATS_QUERIES.items() if (r := con.sql(sql))}
