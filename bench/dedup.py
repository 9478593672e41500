"""Benchmark: MinHash signatures (ours vs datatrove), peak memory as the corpus grows, dedup quality.

    python bench/dedup.py [--repeats 3] [--docs-per-lang 300] [--sizes 10000,100000] [--quality-originals 1400]
                          [--skip throughput,rss,quality] [--json bench/results/dedup.json]

Documents are real text: FLORES-200 dev sentences combined into ~12-sentence documents
(`tests/planted.py`; the data lives in ../shared/data and is for measurement only).

(a) **signature throughput**, docs/s on one core: our `MinhashSignatures` against datatrove's
    `MinhashDedupSignature`, same documents, same `MinhashConfig` (FineWeb's: 5-grams, 14 x 8
    hashes, seed 1, xxhash64), each side in a fresh spawned process, per language (datatrove's step
    takes one language; ours is given the same one through `metadata["lang"]`), tokenizers loaded
    before the clock starts, sides alternating, `--repeats` runs, medians. The files both write are
    compared byte for byte. Target: ≥ 2x.
(b) **peak RSS** (ru_maxrss of a fresh process) of the signature stage reading `--sizes` documents
    from lake shards, and of the whole dedup (`pipelines.dedup.run.run_dedup`, one worker) on the
    same lakes: flat in corpus size is the target.
(c) **quality** on planted near-duplicates (`tests/planted.py`): exact copies, 1/3/5/10/20% word
    edits, boilerplate, reordered paragraphs, truncation; precision, recall and F1 of `run_dedup`
    at its threshold (≈ 0.72), overall and per kind. Target F1 ≥ 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench._harness import bench_log, in_fresh_process, peak_rss_mb, quiet_loguru  # noqa: E402

LANGS = ("eng_Latn", "deu_Latn", "rus_Cyrl", "cmn_Hani", "jpn_Jpan", "tha_Thai")


def _quiet() -> None:
    quiet_loguru("ERROR")


def _in_fresh_process(fn, *args):  # noqa: ANN001, ANN002, ANN202
    """`in_fresh_process`, the child's output (datatrove's per-task stats, warnings) in a log, not over our tables."""
    return in_fresh_process(fn, *args, log=bench_log("dedup"))


# --- (a) throughput ------------------------------------------------------------------------------


def _documents(lang: str, n: int, seed: int = 0) -> list:
    from datatrove.data import Document
    from planted import iter_planted

    originals = iter_planted(n_originals=n, langs=(lang,), planted_fraction=0.0, seed=seed, with_jaccard=False)
    return [Document(text=d.text, id=d.id, metadata={"lang": lang}) for d in originals]


def time_signatures(side: str, langs: tuple[str, ...], n: int, out_root: str) -> dict[str, tuple[float, int]]:
    """Seconds and documents per language for one side, in this (fresh) process."""
    _quiet()
    from pipelines.dedup.minhash_signature import MinhashConfig, MinhashSignatures, _lookup, reference_signature_step

    config = MinhashConfig()
    results = {}
    for lang in langs:
        documents = _documents(lang, n)
        out = os.path.join(out_root, side, lang)
        if side == "ours":
            step = MinhashSignatures(out, config)
            step.signatures(["a warm up text of a few words"], [lang])  # loads the tokenizer
            _lookup("marks"), _lookup("punctuation")  # one-time tables, like the tokenizer
        else:
            step = reference_signature_step(out, config, lang)
            step.word_tokenizer.word_tokenize("a warm up text of a few words")
        start = time.perf_counter()
        step.run(iter(documents))
        results[lang] = (time.perf_counter() - start, len(documents))
    return results


def same_files(a: str, b: str) -> bool:
    import filecmp

    files = sorted(p.relative_to(a) for p in Path(a).rglob("*.minhash.sig"))
    return bool(files) and all(filecmp.cmp(Path(a) / f, Path(b) / f, shallow=False) for f in files)


def bench_throughput(langs: tuple[str, ...], n: int, repeats: int) -> dict:
    times: dict[str, dict[str, list[float]]] = {"ours": {}, "datatrove": {}}
    counts: dict[str, int] = {}
    identical: dict[str, bool] = {}
    for r in range(repeats):
        order = ("ours", "datatrove") if r % 2 == 0 else ("datatrove", "ours")
        with tempfile.TemporaryDirectory() as tmp:
            for side in order:
                for lang, (seconds, docs) in _in_fresh_process(time_signatures, side, langs, n, tmp).items():
                    times[side].setdefault(lang, []).append(seconds)
                    counts[lang] = docs
                    print(f"  run {r + 1} {side:>9} {lang}: {docs / seconds:7.1f} docs/s", flush=True)
            if r == 0:
                identical = {lang: same_files(f"{tmp}/ours/{lang}", f"{tmp}/datatrove/{lang}") for lang in langs}
    table = {}
    for lang in langs:
        rate = {side: counts[lang] / statistics.median(times[side][lang]) for side in times}
        table[lang] = {**rate, "ratio": rate["ours"] / rate["datatrove"], "identical_files": identical[lang]}
    total = {side: sum(counts.values()) / sum(statistics.median(times[side][lang]) for lang in langs) for side in times}
    total["ratio"] = total["ours"] / total["datatrove"]
    print(f"\n(a) MinHash signatures, docs/s on one core, median of {repeats} (FineWeb config, {n} docs per language)")
    print(f"  {'lang':<10}{'ours':>10}{'datatrove':>11}{'ratio':>8}  files identical")
    for lang, row in table.items():
        print(f"  {lang:<10}{row['ours']:>10.1f}{row['datatrove']:>11.1f}{row['ratio']:>7.2f}x  {row['identical_files']}")
    print(f"  {'all':<10}{total['ours']:>10.1f}{total['datatrove']:>11.1f}{total['ratio']:>7.2f}x  (target >= 2x)")
    return {"docs_per_lang": n, "repeats": repeats, "times_s": times, "per_lang": table, "all": total}


# --- (b) memory ----------------------------------------------------------------------------------


def make_lake(root: str, n_docs: int, langs: tuple[str, ...], with_jaccard: bool, n_originals: int | None = None) -> list:
    """A lake whose `documents/clean` holds the planted corpus: half the originals get two copies."""
    from planted import iter_planted, write_clean_shards

    # originals + planted_fraction x 2 copies = n_docs
    n_originals = n_originals or round(n_docs / 2)
    corpus = iter_planted(
        n_originals=n_originals, langs=langs, planted_fraction=0.5, variants_per_group=2, with_jaccard=with_jaccard
    )
    if not with_jaccard:
        write_clean_shards(root, corpus)
        return []
    docs = list(corpus)
    write_clean_shards(root, docs)
    return docs


def signature_stage_rss(lake_root: str, out: str) -> dict:
    """Read the lake's clean shards in batches into our signature step; peak RSS of this process."""
    _quiet()
    import pyarrow.parquet as pq
    from datatrove.data import Document

    from pipelines.dedup.minhash_signature import MinhashSignatures
    from pipelines.lake import DOCUMENTS_CLEAN, Lake, listed_shards

    lake = Lake.at(lake_root)
    baseline = peak_rss_mb()

    count = 0

    def documents():
        nonlocal count
        for shard in listed_shards(lake, DOCUMENTS_CLEAN):
            for batch in pq.ParquetFile(shard).iter_batches(batch_size=1000, columns=["id", "text", "lang"]):
                for row in batch.to_pylist():
                    count += 1
                    yield Document(text=row["text"], id=row["id"], metadata={"lang": row["lang"]})

    step = MinhashSignatures(out)
    start = time.perf_counter()
    step.run(documents())
    seconds = time.perf_counter() - start
    return {"docs": count, "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_after_import_mb": baseline}


def dedup_rss(lake_root: str) -> dict:
    """The whole dedup (`run_dedup`, one worker, in this process); peak RSS of this process."""
    _quiet()
    from pipelines.dedup.run import DedupConfig, run_dedup
    from pipelines.lake import Lake
    from pipelines.lake.executors import ExecutorConfig

    start = time.perf_counter()
    result = run_dedup(Lake.at(lake_root), DedupConfig(workers=1, executor=ExecutorConfig(workers=1)))
    return {
        "docs": result.documents,
        "kept": result.kept,
        "removed": result.removed,
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def have_run_dedup() -> bool:
    try:
        from pipelines.dedup.run import DedupConfig, run_dedup  # noqa: F401
    except ImportError:
        return False
    return True


def bench_rss(sizes: list[int], langs: tuple[str, ...]) -> dict:
    results = {}
    print("\n(b) peak RSS (fresh process per measurement)")
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            _in_fresh_process(make_lake, f"{tmp}/lake", size, langs, False)
            print(f"  made a lake of {size} documents in {time.perf_counter() - start:.0f} s", flush=True)
            row = {"signatures": _in_fresh_process(signature_stage_rss, f"{tmp}/lake", f"{tmp}/sigs")}
            s = row["signatures"]
            print(
                f"  {size:>7} docs  signatures: peak RSS {s['peak_rss_mb']:6.0f} MB  ({s['docs'] / s['seconds']:.0f} docs/s)",
                flush=True,
            )
            if have_run_dedup():
                row["dedup"] = d = _in_fresh_process(dedup_rss, f"{tmp}/lake")
                print(
                    f"  {size:>7} docs  whole dedup: peak RSS {d['peak_rss_mb']:6.0f} MB  ({d['seconds']:.0f} s)",
                    flush=True,
                )
            results[str(size)] = row
    return results


# --- (c) quality ---------------------------------------------------------------------------------


def quality_run(lake_root: str, n_originals: int, langs: tuple[str, ...]) -> dict:
    _quiet()
    import pyarrow.parquet as pq
    from planted import score

    from pipelines.dedup.run import DedupConfig, run_dedup
    from pipelines.lake import DOCUMENTS_DEDUP, Lake, listed_shards
    from pipelines.lake.executors import ExecutorConfig

    docs = make_lake(lake_root, 0, langs, True, n_originals=n_originals)
    lake = Lake.at(lake_root)
    config = DedupConfig(executor=ExecutorConfig(workers=1))
    result = run_dedup(lake, config)
    shards = listed_shards(lake, DOCUMENTS_DEDUP)
    kept = {i for shard in shards for i in pq.read_table(shard, columns=["id"]).column("id").to_pylist()}
    removed = {d.id for d in docs} - kept
    graded = score(docs, removed, config.threshold)
    return {"docs": len(docs), "removed_by_reason": result.removed, **graded.as_dict()}


def bench_quality(n_originals: int, langs: tuple[str, ...]) -> dict:
    if not have_run_dedup():
        print("\n(c) quality: pipelines.dedup.run.run_dedup is not available yet; skipped")
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        q = _in_fresh_process(quality_run, f"{tmp}/lake", n_originals, langs)
    print(f"\n(c) planted near-duplicates: {q['docs']} documents, {', '.join(langs)}; threshold {q['threshold']:.3f}")
    print(
        f"  precision {q['precision']:.3f}  recall {q['recall']:.3f}  F1 {q['f1']:.3f}  "
        f"(tp {q['tp']}, fp {q['fp']}, fn {q['fn']}; originals removed {q['originals_removed']})  target F1 >= 0.95"
    )
    print(f"  removed by reason: {q['removed_by_reason']}")
    print(f"  {'kind':<12}{'planted':>8}{'mean J':>8}{'J>=thr':>8}{'recall':>8}{'removed below thr':>19}")
    for kind, k in q["per_kind"].items():
        recall = f"{k['recall']:.3f}" if k["recall"] is not None else "-"
        print(
            f"  {kind:<12}{k['planted']:>8}{k['mean_jaccard']:>8.2f}{k['above_threshold']:>8}{recall:>8}{k['removed_below']:>19}"
        )
    return q


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--langs", default=",".join(LANGS))
    parser.add_argument("--docs-per-lang", type=int, default=300, help="(a) documents per language and run")
    parser.add_argument("--sizes", default="10000,100000", help="(b) corpus sizes, documents")
    parser.add_argument("--quality-originals", type=int, default=1400, help="(c) originals (half get 2 planted copies)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: throughput, rss, quality")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from planted import flores_available

    if not flores_available():
        sys.exit("../shared/data/flores200-dev is not here: the benchmark needs its real text")
    langs, skip = tuple(args.langs.split(",")), set(filter(None, args.skip.split(",")))
    figures: dict = {"langs": langs}
    if "throughput" not in skip:
        figures["throughput"] = bench_throughput(langs, args.docs_per_lang, args.repeats)
    if "rss" not in skip:
        figures["rss"] = bench_rss([int(s) for s in args.sizes.split(",")], langs)
    if "quality" not in skip:
        figures["quality"] = bench_quality(args.quality_originals, langs)
    if args.json:
        import datatrove
        import numpy

        figures["machine"] = {
            "cores": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "datatrove": datatrove.__version__ if hasattr(datatrove, "__version__") else "?",
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
