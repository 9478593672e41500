"""Benchmark: the FineWeb filter chain alone, ours vs datatrove's filters, same documents, same settings.

    python bench/filters.py [--warc WARC] [--limit N] [--repeats 3]
                            [--json bench/results/filters.json]

The documents are what the chain receives in the ingest: our reader's HTML pages, extracted with
`Resiliparse`, labelled by `LanguageID` (those it keeps). Then, on one core, each side runs in a
fresh spawned process (tokenizers load there, once per language, before the clock starts, with
a probe document; what they learn while running is part of the measure, as in a real task):

- **ours**: `FINEWEB_CHAIN` (`pipelines.ingest.quality_filters`): shared word tokenizer with per-chunk
  memo, array-based Gopher repetition, C4 counting sentences from the same memo.
- **datatrove**: `DATATROVE_CHAIN`: datatrove's `GopherRepetitionFilter`, `C4QualityFilter`,
  `FineWebQualityFilter` and our Gopher quality settings, splitting words with datatrove's own
  tokenizer for each language (what `bench/ingest.py`'s anchor runs).

Both must agree on every document: kept or dropped, by which filter and why, and the text C4
leaves (compared by SHA-1); the script exits with status 1 otherwise. We print docs/s per core for
each run, the medians and their ratio, and per filter the ms per document that reached it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datatrove.data import Document  # noqa: E402
from loguru import logger  # noqa: E402

from bench._harness import in_fresh_process, quiet_loguru, sample_warc  # noqa: E402

SIDES = ("ours", "datatrove")


def prepared_documents(warc: Path, limit: int | None) -> list[dict]:
    """The documents that reach the filter chain in the ingest: extracted, with a language."""
    from bench.extract import html_pages
    from pipelines.ingest.language import LanguageID, lid_model_path
    from pipelines.ingest.resiliparse_extract import Resiliparse

    pages = html_pages(warc)
    if limit:
        pages = pages[:: max(1, len(pages) // limit)][:limit]
    extract, lid = Resiliparse(), LanguageID(lid_model_path())
    docs = []
    for page in pages:
        page.text = extract.extract(page.text)
        if lid.filter(page) is True:
            docs.append({"id": page.id, "text": page.text, "lang": page.metadata["lang"]})
    return docs


def chain(side: str) -> list:  # noqa: ANN001 - [(name, PerLanguage)]
    from pipelines.ingest.quality_filters import DATATROVE_CHAIN, FINEWEB_CHAIN, PerLanguage

    if side == "ours":
        return [(step, PerLanguage(make, step)) for step, make in FINEWEB_CHAIN]

    def with_datatrove_words(make, rules):  # noqa: ANN001, ANN202
        return make(dataclasses.replace(rules, words=rules.words.inner))

    return [(step, PerLanguage(functools.partial(with_datatrove_words, make), step)) for step, make in DATATROVE_CHAIN]


def run_side(side: str, docs_file: str) -> dict:
    """One timed pass of `side`'s chain over the documents, in this (fresh) process."""
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    records = [json.loads(line) for line in Path(docs_file).read_text().splitlines()]
    steps = chain(side)
    for lang in sorted({r["lang"] for r in records}):  # load every tokenizer before the clock starts
        probe = Document(text="Probe text, one line.\nAnother line here.", id="probe", metadata={"lang": lang})
        for _, step in steps:
            step.filter(probe)
    docs = [Document(text=r["text"], id=r["id"], metadata={"lang": r["lang"]}) for r in records]
    seconds = {name: 0.0 for name, _ in steps}
    reached = {name: 0 for name, _ in steps}
    verdicts = []
    clock = time.perf_counter
    start = clock()
    for doc in docs:
        verdict = "kept"
        for name, step in steps:
            t = clock()
            result = step.filter(doc)
            seconds[name] += clock() - t
            reached[name] += 1
            if result is not True:
                verdict = f"{name}: {result[1] if isinstance(result, tuple) else result}"
                break
        verdicts.append(verdict)
    elapsed = clock() - start
    texts = [
        hashlib.sha1(d.text.encode("utf-8", "surrogatepass")).hexdigest() if v == "kept" else "" for d, v in zip(docs, verdicts)
    ]
    return {"elapsed": elapsed, "seconds": seconds, "reached": reached, "verdicts": verdicts, "texts": texts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warc", type=Path, help="input WARC (default: the shards `make run` packs, read as one)")
    parser.add_argument("--limit", type=int, help="take every k-th page, N in all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.warc = sample_warc(args.warc)
    quiet_loguru()
    docs = prepared_documents(args.warc, args.limit)
    n = len(docs)
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        docs_file = str(Path(tmp) / "docs.jsonl")
        Path(docs_file).write_text("\n".join(json.dumps(d) for d in docs))
        for i in range(args.repeats):
            for side in SIDES:
                run = in_fresh_process(run_side, side, docs_file)
                runs[side].append(run)
                kept = run["verdicts"].count("kept")
                print(
                    f"run {i + 1} {side:>9}: {run['elapsed']:7.2f} s  {n / run['elapsed']:7.1f} docs/s/core  kept {kept}",
                    flush=True,
                )

    reference = runs["datatrove"][0]
    differences = [
        (d["id"], ours_v, ref_v)
        for run in runs["ours"] + runs["datatrove"][1:]
        for d, ours_v, ref_v, ours_t, ref_t in zip(docs, run["verdicts"], reference["verdicts"], run["texts"], reference["texts"])
        if ours_v != ref_v or ours_t != ref_t
    ]
    rate = {side: n / statistics.median(r["elapsed"] for r in runs[side]) for side in SIDES}
    ratio = rate["ours"] / rate["datatrove"]
    steps = list(reference["seconds"])
    per_filter = {
        side: {
            step: statistics.median(1000 * r["seconds"][step] / max(r["reached"][step], 1) for r in runs[side]) for step in steps
        }
        for side in SIDES
    }
    print(f"\n{n} documents (extracted, language-labelled) from {args.warc}, one process per run, {args.repeats} runs, median")
    print(f"  ours       {rate['ours']:7.1f} docs/s/core")
    print(f"  datatrove  {rate['datatrove']:7.1f} docs/s/core  (datatrove's filters and tokenizers, same settings)")
    print(f"  ratio ours/datatrove = {ratio:.2f}x")
    print(f"\n  {'filter':<18} {'reached':>8} {'ours ms/doc':>12} {'datatrove':>10} {'ratio':>7}")
    for step in steps:
        ours_ms, ref_ms = per_filter["ours"][step], per_filter["datatrove"][step]
        print(f"  {step:<18} {reference['reached'][step]:>8} {ours_ms:>12.3f} {ref_ms:>10.3f} {ref_ms / ours_ms:>6.1f}x")
    kept = reference["verdicts"].count("kept")
    print(f"\n  decisions and output texts: {len(differences)} differences, {n} documents x {args.repeats} runs (kept {kept})")
    for doc_id, ours_v, ref_v in differences[:10]:
        print(f"    {doc_id}: ours {ours_v!r}, datatrove {ref_v!r}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "warc": str(args.warc),
            "docs": n,
            "kept": kept,
            "times_s": {side: [r["elapsed"] for r in runs[side]] for side in SIDES},
            "docs_per_s_per_core": rate,
            "ratio": ratio,
            "ms_per_doc_reaching_filter": per_filter,
            "reached": reference["reached"],
            "differences": len(differences),
            "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        }
        args.json.write_text(json.dumps(figures, indent=1))
    if differences:
        sys.exit(1)


if __name__ == "__main__":
    main()
