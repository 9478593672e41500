"""Benchmark: `lmforge query` (the catalog's views) vs plain DuckDB on the same shards and SQL.

    python bench/query.py [--lake lake] [--repeats 7] [--json bench/results/query.json]

For each query, in one process, sides alternating, medians over the repetitions:

- **ours**: `pipelines.lake.catalog.query(lake, sql)`: what `lmforge query` runs after parsing its
  arguments (it refreshes the views from the manifests, then runs the SQL on them).
- **plain DuckDB**: an in-memory `duckdb.connect()` running the same SQL with each view name replaced by
  `read_parquet([...the same listed shards...], union_by_name = true)`: what a user would write by hand.

Both sides return the same rows (checked). Target (DESIGN §6): ours ≤ 1.1× plain DuckDB's time.
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
from pipelines.lake.catalog import query  # noqa: E402

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
    for name, template in QUERIES.items():
        ours_sql = template.format(**{view: view for view in VIEWS})
        plain_sql = template.format(**{view: plain_source(lake, dataset) for view, dataset in VIEWS.items()})
        ours_s, plain_s = [], []
        for _ in range(args.repeats):
            tick = time.perf_counter()
            ours = query(lake, ours_sql).rows
            ours_s.append(time.perf_counter() - tick)
            tick = time.perf_counter()
            with duckdb.connect() as con:
                plain = con.sql(plain_sql).fetchall()
            plain_s.append(time.perf_counter() - tick)
            if ours != plain:
                sys.exit(f"{name}: the two sides returned different rows")
        ours_ms, plain_ms = 1e3 * statistics.median(ours_s), 1e3 * statistics.median(plain_s)
        results[name] = {"ours_ms": ours_ms, "duckdb_ms": plain_ms, "ratio": ours_ms / plain_ms}
        print(f"{name}: ours {ours_ms:.1f} ms, plain DuckDB {plain_ms:.1f} ms: {ours_ms / plain_ms:.2f}x", flush=True)
    overall = statistics.median(r["ratio"] for r in results.values())
    print(f"median ratio ours/plain: {overall:.2f}x (target ≤ 1.1x)")
    if args.json:
        args.json.write_text(json.dumps({"queries": results, "median_ratio": overall}, indent=2) + "\n")


if __name__ == "__main__":
    main()
