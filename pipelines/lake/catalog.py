"""The catalog: DuckDB views over every lake dataset, for ad hoc SQL, opened read-only.

The views live in a small DuckDB file beside the lake (`<lake>/_catalog.duckdb`; in the user's cache for
a lake that is remote or not writable), replaced atomically when rebuilt, and every query connection
opens it with `read_only=True` so a query can read the lake but never change a table or a view. A
dataset that does not exist yet still has its view (typed, empty), so the same query works before and
after a stage first runs.

A view names the shards of the runs its dataset's manifest lists (`listed_shards`), file by file,
as plain DuckDB over those files would: what a killed or replaced run left in the folder is never
read, and a folder without a manifest shows nothing.

When the catalog is rebuilt. Every `query` and `stats` (`connect(refresh=True)`) first makes sure the
views are those `view_definitions` would make now, and rebuilds only when they may not be:

- Each view (`CATALOG_VIEWS`) names the files its SQL is made from (`View.watch`, globs under the lake):
  a dataset view its manifest, since a run's shards are all published before the manifest lists it
  and nothing adds to or takes from a listed run's shards (gc takes only unlisted runs' files); the
  `tokens` view the tokens manifests, `train_metrics` the runs' metrics files, `quality_results` each
  dataset's latest validation results. `lake_state` hashes the
  lake root, the view names, the code that makes the views (this package's source files, the DuckDB
  version) and the path, size, mtime and inode of every file the globs match: a dozen stats and a
  few directory listings, ~0.4 ms on the sample lake. The catalog stores the state it was built for
  (the view `lmforge.catalog_key`, outside the `main` schema, so `SHOW TABLES` lists only the lake's
  views); a query on an unchanged lake opens the catalog and reads that one row: nothing is listed,
  nothing written.
- A new run, a replaced run, a hand-edited manifest or a new view in the code changes the state, so
  the next query rebuilds. A file changed within the last `RECENT_S` seconds could change again within
  the same mtime tick unseen, so then (and on a remote lake, which has no cheap stat) there is no
  state: the query lists the views and compares their hash, also stored in the catalog, and rebuilds
  only when the views differ.
- If a shard the views name is gone anyway (deleted by hand), the query fails with an IO error and is
  run once more on a catalog rebuilt from a fresh listing (so an IO error in the SQL itself, reading a
  missing file of the user's, costs one rebuild before it is reported).

Why this and not the alternatives (measured on the sample lake; bench/query.py): listing the views
costs ~20 ms and writing the catalog ~70-100 ms (DuckDB binds every view as it creates it, reading
every shard's footer), against 25-40 ms for a whole plain DuckDB query, so rebuilding per query made
`lmforge query` 3.4x plain DuckDB. Views created per query in an in-memory connection pay that
binding (~20 ms) and the listing each time, and an in-memory database cannot be opened read-only.
A hash of freshly listed views as the only key still pays the ~20 ms listing per query; walking the
whole lake to stat every file instead of the manifests costs 2-4 ms. Reading the stored key is one
more statement on the connection the query opens anyway (~0.3-0.5 ms); a key in a file beside it could
not be replaced atomically with it, and one in an extended attribute of the file saved nothing
measurable. What remains over plain DuckDB is ~1.5-2 ms: the state, the key, opening a file rather
than an in-memory database, and the view. Statements run with `execute` (see `_run`), ~5 ms less than
through DuckDB's relation API.

To add a view, add it to `CATALOG_VIEWS` with the globs of the files its SQL is made from (the code
that makes it belongs in this package, whose sources are part of the state).

The `tokens` view has one row per tokenized dataset and split, read from the manifests under `tokens/`
(the token shards themselves are not parquet).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

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
from pipelines.lake.quality_record import QUALITY, RESULTS, RESULTS_SCHEMA
from pipelines.lake.synthetic_schemas import MESSAGES
from pipelines.lake.token_layout import SPLITS, TOKENS, tokens_manifests

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
    paths = lake.glob(f"{CHECKPOINTS}/*/{TRAIN_METRICS}")
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


# `quality/<dataset>/results.parquet` of every dataset a validation can name: the lake's (a stat each) and the token
# datasets (`tokens/<tokenizer>/<name>`, a name one or two folders deep). Not `quality/**`: that walks every page of
# the Data Docs beside the results (~5 ms on the sample lake, against ~0.5 ms for these).
QUALITY_RESULTS = (
    *(f"{QUALITY}/{dataset}/{RESULTS}" for dataset in SCHEMAS),
    f"{QUALITY}/{TOKENS}/*/*/{RESULTS}",
    f"{QUALITY}/{TOKENS}/*/*/*/{RESULTS}",
)


def _quality_select(lake: Lake) -> str:
    """One row per (shard, expectation) of each dataset's latest validation."""
    paths = lake.glob(*QUALITY_RESULTS)
    if not paths:
        return _empty_select(RESULTS_SCHEMA)
    return f"SELECT * FROM read_parquet([{', '.join(map(_quote, paths))}], union_by_name = true)"


@dataclass(frozen=True)
class View:
    """A catalog view: `select` makes its SQL from the lake as it is now; `watch` are the globs (under the
    lake root, `**` for any depth) of the files that SQL is made from, so that a change to any of them,
    and only that, means the view must be made again (see the module docstring)."""

    select: Callable[[Lake], str]
    watch: tuple[str, ...]


def _dataset_view(dataset: str) -> View:
    return View(lambda lake: _dataset_select(lake, dataset), (f"{dataset}/{MANIFEST}",))


CATALOG_VIEWS: dict[str, View] = {
    **{name: _dataset_view(dataset) for name, dataset in VIEWS.items()},
    "manifests": View(_manifests_select, tuple(f"{d}/{MANIFEST}" for d in sorted(set(VIEWS.values())))),
    "tokens": View(_tokens_select, (f"{TOKENS}/**/{MANIFEST}",)),
    "train_metrics": View(_train_metrics_select, (f"{CHECKPOINTS}/*/{TRAIN_METRICS}",)),
    "quality_results": View(_quality_select, QUALITY_RESULTS),
}


def view_definitions(lake: Lake) -> dict[str, str]:
    """Each view's SQL as the lake is now (this lists the datasets' shards: ~20 ms on the sample lake)."""
    return {name: view.select(lake) for name, view in CATALOG_VIEWS.items()}


RECENT_S = 2.0  # a watched file changed this recently may change again within its mtime's tick, unseen


@functools.cache
def _code_state() -> str:
    """The code that makes the views: this package's sources and the DuckDB version (read once a process)."""
    here = os.path.dirname(os.path.abspath(__file__))
    files = sorted(glob.glob(os.path.join(glob.escape(here), "*.py")))
    parts = [duckdb.__version__]
    for path in files:
        st = os.stat(path)
        parts.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}")
    return "\n".join(parts)


def lake_state(lake: Lake) -> str | None:
    """A hash of everything the views are made from (the files their `watch` globs match, the code that makes
    them); None where it cannot be trusted: a remote lake, or a watched file changed within `RECENT_S`."""
    if not lake.is_local:
        return None
    digest = hashlib.sha256("\n".join([lake.root, *CATALOG_VIEWS, _code_state()]).encode())
    oldest_trusted = time.time_ns() - int(RECENT_S * 1e9)
    root = glob.escape(lake.root)
    for pattern in sorted({p for view in CATALOG_VIEWS.values() for p in view.watch}):
        digest.update(f"\n{pattern}:".encode())
        literal = not any(c in pattern for c in "*?[")  # most are: a stat, no listing
        paths = [os.path.join(lake.root, pattern)] if literal else glob.glob(os.path.join(root, pattern), recursive=True)
        for path in sorted(paths):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                if literal:
                    continue
                return None  # listed a moment ago, gone now: changing as we look
            if st.st_mtime_ns >= oldest_trusted:
                return None
            digest.update(f"\n{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}".encode())
    return digest.hexdigest()


def _definitions_hash(definitions: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(list(definitions.items())).encode()).hexdigest()


def catalog_path(lake: Lake) -> str:
    """Where the catalog file lives: in a writable local lake, else in the user's cache (DuckDB needs a local file)."""
    if lake.is_local and os.access(lake.root, os.W_OK):
        return lake.path(CATALOG_FILE)
    cache = os.path.join(os.path.expanduser("~"), ".cache", "lmforge")
    os.makedirs(cache, exist_ok=True)
    return os.path.join(cache, f"catalog-{hashlib.sha1(lake.root.encode()).hexdigest()[:12]}.duckdb")


KEY_VIEW = "lmforge.catalog_key"  # (state, definitions): what the catalog was built from


def _write_catalog(lake: Lake, state: str | None, definitions: dict[str, str]) -> str:
    """Write the catalog file: one view per definition, and the key; atomic, so readers never see it half-made."""
    path = catalog_path(lake)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".catalog-", suffix=".duckdb", dir=os.path.dirname(path))
    os.close(fd)
    os.unlink(tmp)  # DuckDB wants to create the file itself
    try:
        with duckdb.connect(tmp) as con:
            for name, select in definitions.items():
                con.execute(f"CREATE VIEW {name} AS {select}")
            con.execute(f"CREATE SCHEMA {KEY_VIEW.split('.')[0]}")
            stored = f"CAST({_quote(state) if state else 'NULL'} AS VARCHAR) AS state"
            con.execute(f"CREATE VIEW {KEY_VIEW} AS SELECT {stored}, {_quote(_definitions_hash(definitions))} AS definitions")
        publish(LocalFileSystem(), tmp, path)
    finally:
        for leftover in (tmp, tmp + ".wal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return path


def build_catalog(lake: Lake) -> str:
    """(Re)write the catalog file from the lake as it is now; returns its path."""
    state = lake_state(lake)  # before the listing: a change in between leaves a state the next query finds stale
    return _write_catalog(lake, state, view_definitions(lake))


def _open(path: str) -> tuple[duckdb.DuckDBPyConnection | None, tuple[str | None, str] | None]:
    """A read-only connection to the catalog and the key it was built with; (None, None) when there is no
    usable catalog (none yet, or one another DuckDB cannot read), (connection, None) when it has no key."""
    if not os.path.exists(path):
        return None, None
    try:
        con = duckdb.connect(path, read_only=True)
    except duckdb.Error:
        return None, None
    try:
        (key,) = con.execute(f"SELECT state, definitions FROM {KEY_VIEW}").fetchall()  # all: no result left open
        return con, key
    except duckdb.Error:
        return con, None


def _current(lake: Lake, refresh: bool = True, rebuild: bool = False) -> tuple[duckdb.DuckDBPyConnection, bool]:
    """A read-only connection to the lake's catalog, and whether it was built just now: with `refresh`, one whose
    views are those `view_definitions` would make now; without, whatever is there (built if there is none)."""
    path = catalog_path(lake)
    state = lake_state(lake)  # before anything is listed (see `build_catalog`)
    definitions = None
    con, key = (None, None) if rebuild else _open(path)
    if con is not None:
        if not refresh or (state is not None and key is not None and key[0] == state):
            return con, False  # nothing the views are made from changed: the usual case
        definitions = view_definitions(lake)
        if state is None and key is not None and key[1] == _definitions_hash(definitions):
            return con, False  # no state to trust, but the views are the same
        con.close()  # before the file is replaced: DuckDB hands an open instance back for the same path
    _write_catalog(lake, state, definitions if definitions is not None else view_definitions(lake))
    return duckdb.connect(path, read_only=True), True


def connect(lake: Lake, refresh: bool = True) -> duckdb.DuckDBPyConnection:
    """A read-only connection with the lake's views; with `refresh`, the views are first made current
    (rebuilt only when what they are made from changed); without, a catalog is only built if there is none."""
    return _current(lake, refresh)[0]


T = TypeVar("T")


def _on_catalog(lake: Lake, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """`work` on a current catalog; if it fails for a missing file on a catalog not built just now (a listed
    shard deleted by hand), once more on a catalog rebuilt from a fresh listing."""
    con, fresh = _current(lake)
    try:
        with con:
            return work(con)
    except duckdb.IOException:
        if fresh:
            raise
    with _current(lake, rebuild=True)[0] as con:
        return work(con)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple]

    def to_arrow(self) -> pa.Table:
        return pa.table({c: [r[i] for r in self.rows] for i, c in enumerate(self.columns)})


def _run(con: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
    """One statement's columns and rows. `execute`, not `con.sql(...)`: a relation is bound when made and
    again when fetched, which reads every shard's footer twice (~5 ms of a ~30 ms query on the sample lake)."""
    cursor = con.execute(sql)
    if cursor is None or cursor.description is None:  # no statement, or one with no result set
        return QueryResult([], [])
    return QueryResult([column[0] for column in cursor.description], cursor.fetchall())


def query(lake: Lake, sql: str) -> QueryResult:
    """Run one SQL statement against the lake's views; errors say what went wrong and what exists."""
    try:
        return _on_catalog(lake, lambda con: _run(con, sql))
    except duckdb.Error as e:
        raise CatalogError(f"{e}\nviews: {', '.join(CATALOG_VIEWS)}") from e


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
    "quality gates": """
        SELECT dataset, min(kind) AS suite, bool_and(success) AS passed, bool_or(warn_only) AS warn_only,
            count(DISTINCT expectation) AS expectations, count(*) FILTER (NOT success) AS failed,
            sum(unexpected) AS unexpected_rows, max(validated_at) AS validated_at
        FROM quality_results GROUP BY dataset ORDER BY dataset""",
    "datasets": "SELECT dataset, rows, bytes, shards, updated FROM manifests ORDER BY dataset",
}


def stats(lake: Lake) -> dict[str, QueryResult]:
    """The tables `lmforge stats` prints: documents and characters per language, rejections per reason."""
    return _on_catalog(lake, _stats_tables)


def _stats_tables(con: duckdb.DuckDBPyConnection) -> dict[str, QueryResult]:
    return {title: result for title, sql in STATS_QUERIES.items() if (result := _run(con, sql)).rows}  # empty ones left out
