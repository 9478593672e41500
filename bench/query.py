"""Benchmark: `lmforge query` (the catalog's views) vs plain DuckDB on the same shards and SQL.

    python bench/query.py [--lake lake] [--repeats 7] [--json bench/results/query.json]

For each query, in one process, sides taking turns (each goes first in turn), medians over the repetitions:

- **ours**: `pipelines.lake.catalog.query(lake, sql)`: what `lmforge query` runs after parsing its
  arguments (it checks that the catalog's views are current, from the manifests' stats, rebuilds the
  catalog only if the lake changed, then runs the SQL on the views). The lake does not change here,
  so this is the usual case.
- **plain DuckDB**: an in-memory `duckdb.connect()` running the same SQL with each view name replaced by
  `read_parquet([...the same listed shards...], union_by_name = true)`: what a user would write by hand,
  two ways: `con.sql(sql).fetchall()` (the relation API, as this benchmark first measured it) and
  `con.execute(sql).fetchall()`, the way `query` runs it. A relation is bound when made and again when
  fetched, reading every footer twice (~5 ms here), so the ratio to `execute` is what the catalog
  itself costs, and the ratio to `sql` what a user of the relation API sees.

All sides return the same rows (checked). Target (DESIGN §6): ours ≤ 1.1× plain DuckDB's time.
Reported apart, not in the ratios: the first query after a run changed the lake, which rebuilds the
catalog (`build_catalog` + the query; median of the same repetitions, over all queries).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from pipelines.lake import DOCUMENTS_CLEAN, DOCUMENTS_DEDUP, Lake, listed_shards  # noqa: E402
from pipelines.lake.catalog import build_catalog, query  # noqa: E402

QUERIES = {
    "count by language": "SELECT lang, count(*) AS n FROM {documents} GROUP BY lang ORDER BY n DESC, lang",
    "text length stats": "SELECT lang, avg(length(text)), max(n_words) FROM {documents} GROUP BY lang ORDER BY lang",
    "clean vs dedup": "SELECT (SELECT count(*) FROM {documents_clean}) AS clean, (SELECT count(*) FROM {documents}) AS dedup",
    "top urls": "SELECT url, n_chars FROM {documents} ORDER BY n_chars DESC, url LIMIT 10",
}
VIEWS = {"documents": DOCUMENTS_DEDUP, "documents_clean": DOCUMENTS_CLEAN}


def plain_source(lake: Lake, dataset: str) -> str:
    files = ", ".join(f"'{path}'" for path in listed_shards(lake, dataset))
    return f"read_parquet([{files}], union_by_name = true)"


def plain_rows(sql: str, relation: bool) -> list[tuple]:
    with duckdb.connect() as con:
        return con.sql(sql).fetchall() if relation else con.execute(sql).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", type=Path, default=Path("lake"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    lake = Lake.at(str(args.lake))
    if not listed_shards(lake, DOCUMENTS_DEDUP):
        sys.exit(f"no documents in {args.lake}: run `make run` first, or pass --lake")
    results = {}
    rebuilt_s = []
    for name, template in QUERIES.items():
        ours_sql = template.format(**{view: view for view in VIEWS})
        plain_sql = template.format(**{view: plain_source(lake, dataset) for view, dataset in VIEWS.items()})
        times: dict[str, list[float]] = {"ours": [], "sql": [], "execute": []}
        sides = {
            "ours": lambda: query(lake, ours_sql).rows,
            "sql": lambda: plain_rows(plain_sql, relation=True),
            "execute": lambda: plain_rows(plain_sql, relation=False),
        }
        for i in range(args.repeats):
            rows = {}
            for side in [*sides][i % 3 :] + [*sides][: i % 3]:  # each side first in turn
                tick = time.perf_counter()
                rows[side] = sides[side]()
                times[side].append(time.perf_counter() - tick)
            if rows["sql"] != rows["ours"] or rows["execute"] != rows["ours"]:
                sys.exit(f"{name}: the sides returned different rows")
        for _ in range(args.repeats):
            tick = time.perf_counter()
            build_catalog(lake)
            query(lake, ours_sql)
            rebuilt_s.append(time.perf_counter() - tick)
        ms = {side: 1e3 * statistics.median(t) for side, t in times.items()}
        results[name] = {
            "ours_ms": ms["ours"],
            "duckdb_sql_ms": ms["sql"],
            "duckdb_execute_ms": ms["execute"],
            "ratio_sql": ms["ours"] / ms["sql"],
            "ratio_execute": ms["ours"] / ms["execute"],
        }
        print(
            f"{name}: ours {ms['ours']:.1f} ms, plain DuckDB {ms['sql']:.1f} ms (sql), {ms['execute']:.1f} ms (execute): "
            f"{ms['ours'] / ms['sql']:.2f}x, {ms['ours'] / ms['execute']:.2f}x",
            flush=True,
        )
    overall = {api: statistics.median(r[f"ratio_{api}"] for r in results.values()) for api in ("sql", "execute")}
    print(f"median ratio ours/plain: {overall['sql']:.2f}x (sql), {overall['execute']:.2f}x (execute) (target ≤ 1.1x)")
    rebuilt_ms = 1e3 * statistics.median(rebuilt_s)
    print(f"first query after a run changed the lake (catalog rebuilt): {rebuilt_ms:.1f} ms")
    if args.json:
        summary = {"queries": results, "median_ratio_sql": overall["sql"], "median_ratio_execute": overall["execute"]}
        args.json.write_text(json.dumps(summary | {"rebuilt_ms": rebuilt_ms}, indent=2) + "\n")


if __name__ == "__main__":
    main()
