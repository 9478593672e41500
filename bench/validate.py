"""Benchmark: the documents quality gate (our GX suite) vs the same checks as plain DuckDB SQL.

    python bench/validate.py [--lake lake] [--copies 100] [--shards 8] [--repeats 3] [--json bench/results/validate.json]

Input: the sample lake's deduplicated documents (`make run`), copied `--copies` times with ids and texts
made distinct, as `documents/dedup` of a temporary lake in `--shards` shards: the same shards for
both sides, in one process, sides alternating, medians over the repetitions.

- **ours**: `quality.validate.validate(lake, "documents/dedup")`: read every shard, the GX suite on
  each batch (schema, non-null, non-empty text, n_chars = length, language code, score range, PII
  left), the checks across shards (unique ids, no exact duplicate after normalisation, row count),
  results, Data Docs and summary written to the lake.
- **plain DuckDB**: one SQL query over `read_parquet` of the same shards computing the same counts
  (the PII rule as DuckDB regexes of datatrove's patterns, without the public-address test; the
  text key with DuckDB's `nfc_normalize`/`lower`, not NFKC + casefold): what one would write by hand,
  with no results kept, no failing rows named and no report.

Both sides must find nothing wrong (checked). Prints rows/s for each and ours/plain time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from pipelines.lake import (  # noqa: E402
    DOCUMENTS_DEDUP,
    DOCUMENTS_SCHEMA,
    Lake,
    RunRecord,
    fingerprint,
    listed_shards,
    lmforge_version,
    read_shard,
    refresh_manifest,
    utc_now,
    write_table,
)

# datatrove's e-mail pattern (PIIFormatter) without its bracketed-IP alternative, for DuckDB's RE2
EMAIL = (
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
    r"([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
)
REPLACED = "('email@example.com', 'firstname.lastname@example.org')"

PLAIN_SQL = """
WITH docs AS (SELECT * FROM read_parquet(FILES, union_by_name = true))
SELECT
    count(*) AS rows,
    count(*) FILTER (id IS NULL) AS null_ids,
    count(*) - count(DISTINCT id) AS duplicate_ids,
    count(*) FILTER (text IS NULL OR length(text) = 0) AS empty_texts,
    count(*) FILTER (n_chars <> length(text)) AS wrong_n_chars,
    count(*) FILTER (NOT regexp_matches(lang, '^[a-z]{3}_[A-Z][a-z]{3}$')) AS bad_langs,
    count(*) FILTER (lang_score < 0 OR lang_score > 1) AS bad_scores,
    count(*) FILTER (list_count(list_filter(regexp_extract_all(text, 'EMAIL'), lambda e: e NOT IN REPLACED)) > 0) AS emails,
    count(*) - count(DISTINCT md5(lower(regexp_replace(nfc_normalize(text), '\\s+', ' ', 'g')))) AS exact_duplicates
FROM docs
""".replace("EMAIL", EMAIL.replace("'", "''")).replace("REPLACED", REPLACED)


def build_input(source: Lake, root: Path, copies: int, shards: int) -> Lake:
    rows = pa.concat_tables([read_shard(source.fs, s) for s in listed_shards(source, DOCUMENTS_DEDUP)])
    lake = Lake.at(root)
    run = fingerprint({"bench": "validate", "copies": copies})
    tables = []
    for copy in range(copies):
        suffix = f" (copy {copy})"
        text = pc.binary_join_element_wise(rows["text"], pa.scalar(suffix), "")
        table = rows.set_column(rows.schema.get_field_index("id"), "id", pc.binary_join_element_wise(rows["id"], f"-{copy}", ""))
        table = table.set_column(table.schema.get_field_index("text"), "text", text)
        n_chars = pc.cast(pc.add(rows["n_chars"], len(suffix)), pa.int32())
        tables.append(table.set_column(table.schema.get_field_index("n_chars"), "n_chars", n_chars))
    whole = pa.concat_tables(tables).cast(DOCUMENTS_SCHEMA)
    step = -(-len(whole) // shards)
    for i in range(shards):
        write_table(lake, DOCUMENTS_DEDUP, f"{run}_{i:05d}.parquet", whole.slice(i * step, step))
    now = utc_now()
    record = RunRecord(
        run=run, stage="bench", parameters={}, inputs=[], started=now, finished=now, lmforge_version=lmforge_version()
    )
    refresh_manifest(lake, DOCUMENTS_DEDUP, [record])
    return lake


def ours(lake: Lake) -> int:
    from quality.validate import validate

    summary = validate(lake, DOCUMENTS_DEDUP)
    assert summary.success, summary.failed
    return summary.rows


def plain(lake: Lake) -> int:
    files = "[" + ", ".join(f"'{s}'" for s in listed_shards(lake, DOCUMENTS_DEDUP)) + "]"
    with duckdb.connect() as con:
        row = con.sql(PLAIN_SQL.replace("FILES", files)).fetchall()[0]
    assert all(v == 0 for v in row[1:]), row
    return row[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lake")
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    source = Lake.at(args.lake)
    if not listed_shards(source, DOCUMENTS_DEDUP):
        sys.exit(f"no documents in {source.root}/{DOCUMENTS_DEDUP}: run `make run` first, or pass --lake")
    with tempfile.TemporaryDirectory(prefix="lmforge-bench-validate-") as tmp:
        lake = build_input(source, Path(tmp) / "lake", args.copies, args.shards)
        ours(lake)  # warm: imports GX (~5 s) and fills the page cache, outside the timings
        times: dict[str, list[float]] = {"ours": [], "plain DuckDB": []}
        rows = 0
        for _ in range(args.repeats):
            for name, run in (("ours", ours), ("plain DuckDB", plain)):
                started = time.perf_counter()
                rows = run(lake)
                times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["ours"] / medians["plain DuckDB"]
    copied = f"{args.copies} copies of {source.root}/{DOCUMENTS_DEDUP}"
    print(f"{rows} documents in {args.shards} shards ({copied}), {args.repeats} runs")
    for name, median in medians.items():
        print(f"  {name:13s} {median:7.3f} s  {rows / median:12,.0f} rows/s")
    print(f"ours / plain DuckDB: {ratio:.1f}x the time")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"rows": rows, "shards": args.shards, "seconds": medians, "ratio": ratio, "runs": times}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
