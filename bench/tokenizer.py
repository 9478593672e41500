"""Benchmark: tokenizer training (ours streaming from parquet vs raw `tokenizers` in memory) and report encoding.

    python bench/tokenizer.py [--lake lake] [--vocab-size 32768] [--repeats 9] [--encode-repeats 5]
                              [--skip training,encode] [--json bench/results/tokenizer.json]

(a) **training**, same text, same settings: ours is `train_tokenizer` reading the lake's
    `documents` shards a record batch at a time (survey, sample, train, write the folder), with
    alpha = 1 so its sample is every training document once; raw is `tokenizers`'
    `train_from_iterator` over those same documents held in memory as a Python list (read with
    pyarrow before the clock starts, as one would without lmforge), same pre-tokenizer, trainer
    and document order, then `tokenizer.json` saved; ours' clock covers its whole call. Each side
    runs in a fresh spawned process, sides alternating first; peak RSS is that process's
    ru_maxrss. MB/s = UTF-8 MB of training text / wall seconds. The two tokenizer.json files
    are compared byte for byte. Targets: ≥ 0.95x raw speed, peak RSS ≤ raw.
(b) **report encoding**: `count_languages` (tokens plus words and split words) on every FLORES
    dev language at once vs the raw library's fastest batch encode of the same texts (tiktoken
    `encode_ordinary_batch`, tokenizers `encode_batch_fast`, no special tokens), for r50k_base,
    cl100k_base, o200k_base and the tokenizer trained in (a); same process, sides alternating,
    medians. Target: ≥ 0.9x raw throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import bench_log, cpu_seconds, in_fresh_process, paired_ratio, peak_rss_mb  # noqa: E402

SHARED = ROOT / ".." / "shared" / "data"
REFERENCES = ("r50k_base", "cl100k_base", "o200k_base")


# --- (a) training ------------------------------------------------------------------------------


def training_text(lake_root: str, out: str) -> dict:
    """Write the documents ours will train on (alpha 1: each training document once, in stream order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.lake import DOCUMENTS_DEDUP, Lake, listed_shards
    from tokenizer_training.sampling import plan_sample, stream_texts, survey
    from tokenizer_training.train import TokenizerConfig

    lake = Lake.at(lake_root)
    defaults = TokenizerConfig(name="bench", vocab_size=300)
    found = survey(lake, listed_shards(lake, DOCUMENTS_DEDUP))
    plan = plan_sample(found, None, 1.0, defaults.heldout_fraction)
    texts = list(stream_texts(lake, found, plan.copies))
    pq.write_table(pa.table({"text": texts}), out)
    return {"documents": len(texts), "bytes": sum(len(t.encode()) for t in texts), "languages": len(plan.languages)}


def ours(lake_root: str, vocab_size: int, out: str) -> dict:
    import pandas  # noqa: F401  pyarrow imports it on its first conversion: an import, outside both clocks

    from pipelines.lake import Lake
    from tokenizer_training.train import TokenizerConfig, train_tokenizer

    config = TokenizerConfig(name=f"bench-{uuid.uuid4().hex[:8]}", vocab_size=vocab_size, alpha=1.0)
    started, cpu = time.perf_counter(), cpu_seconds()
    result = train_tokenizer(Lake.at(lake_root), config)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    Path(out).write_bytes(Path(result.path, "tokenizer.json").read_bytes())
    import shutil

    shutil.rmtree(result.path)
    return {"elapsed": elapsed, "cpu": cpu, "trainer": result.manifest["training_seconds"], "rss_mb": peak_rss_mb()}


def raw(text_file: str, vocab_size: int, out: str) -> dict:
    import pyarrow.parquet as pq

    from tokenizer_training.train import TokenizerConfig, bpe_trainer, build_tokenizer

    table = pq.read_table(text_file)
    texts = table.column("text").to_pylist()
    del table  # only the Python list stays, as in a plain in-memory training script
    tokenizer = build_tokenizer()
    trainer = bpe_trainer(TokenizerConfig(name="raw", vocab_size=vocab_size, alpha=1.0))
    started, cpu = time.perf_counter(), cpu_seconds()
    tokenizer.train_from_iterator((texts[i : i + 1024] for i in range(0, len(texts), 1024)), trainer, length=len(texts))
    trained = time.perf_counter() - started
    Path(out).write_text(tokenizer.to_str(pretty=True))  # saving is part of training, as on our side
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"elapsed": elapsed, "cpu": cpu, "trainer": trained, "rss_mb": peak_rss_mb()}


def bench_training(lake_root: str, vocab_size: int, repeats: int, tmp: str) -> dict:
    text_file = os.path.join(tmp, "text.parquet")
    corpus = in_fresh_process(training_text, lake_root, text_file, log=bench_log("tokenizer"))
    mb = corpus["bytes"] / 1e6
    print(f"training text: {corpus['documents']} documents, {mb:.1f} MB, {corpus['languages']} languages; vocab {vocab_size}")
    runs: dict[str, list[dict]] = {"raw": [], "ours": []}
    outputs = {"raw": os.path.join(tmp, "raw.json"), "ours": os.path.join(tmp, "ours.json")}
    for i in range(repeats):
        for side in ("raw", "ours") if i % 2 == 0 else ("ours", "raw"):  # alternate, so drift favours neither
            source = lake_root if side == "ours" else text_file
            fn = ours if side == "ours" else raw
            run = in_fresh_process(fn, source, vocab_size, outputs[side], log=bench_log("tokenizer"))
            runs[side].append(run)
            speed = mb / run["elapsed"]
            print(
                f"run {i + 1} {side:>4}: {run['elapsed']:6.2f} s  {speed:5.2f} MB/s  cpu {run['cpu']:6.2f} s  "
                f"peak RSS {run['rss_mb']:6.0f} MB"
            )
    identical = Path(outputs["raw"]).read_bytes() == Path(outputs["ours"]).read_bytes()
    median = {side: statistics.median(r["elapsed"] for r in rs) for side, rs in runs.items()}
    cpu = {side: statistics.median(r["cpu"] for r in rs) for side, rs in runs.items()}
    rss = {side: statistics.median(r["rss_mb"] for r in rs) for side, rs in runs.items()}
    wall = {side: [r["elapsed"] for r in rs] for side, rs in runs.items()}
    figures = {
        "corpus": corpus,
        "vocab_size": vocab_size,
        "mb_per_s": {side: round(mb / t, 3) for side, t in median.items()},
        "speed_ratio": round(median["raw"] / median["ours"], 3),
        "paired_speed_ratio": round(paired_ratio(wall["raw"], wall["ours"]), 3),
        "cpu_ratio": round(cpu["raw"] / cpu["ours"], 3),
        "peak_rss_mb": {side: round(v) for side, v in rss.items()},
        "identical_tokenizer_json": identical,
        "runs": runs,
    }
    print(
        f"training: ours {figures['mb_per_s']['ours']} MB/s vs raw {figures['mb_per_s']['raw']} MB/s = "
        f"{figures['speed_ratio']}x (target >= 0.95; paired runs {figures['paired_speed_ratio']}x, "
        f"CPU time {figures['cpu_ratio']}x); peak RSS ours {rss['ours']:.0f} MB vs raw {rss['raw']:.0f} MB "
        f"(target <=); identical tokenizer.json: {identical}"
    )
    return figures


# --- (b) report encoding -----------------------------------------------------------------------


def raw_batch(tok, texts: list[str]) -> int:  # noqa: ANN001
    """The raw library's fastest batch encode, straight on the library object the loader built.

    For `tokenizers` that is `encode_batch_fast` (no offsets), stricter than the usual `encode_batch`."""
    if tok.kind == "tiktoken":
        return sum(map(len, tok.encoding.encode_ordinary_batch(texts)))
    return sum(len(e.ids) for e in tok.tokenizer.encode_batch_fast(texts, add_special_tokens=False))


def bench_encode(tokenizers: dict[str, str], repeats: int) -> dict:
    from pipelines.common.parallel_text import read_parallel
    from tokenizer_training.evaluate import count_languages
    from tokenizer_training.loading import load_tokenizer

    texts = read_parallel(SHARED / "flores200-dev")
    mb = sum(len(t.encode()) for t in texts.values()) / 1e6
    batch = {lang: [t] for lang, t in texts.items()}
    figures = {}
    for name, path in tokenizers.items():
        tok = load_tokenizer(path)
        times: dict[str, list[float]] = {"raw": [], "ours": []}
        for i in range(repeats):
            for side in ("raw", "ours") if i % 2 == 0 else ("ours", "raw"):
                started = time.perf_counter()
                if side == "raw":
                    raw_tokens = raw_batch(tok, list(texts.values()))
                else:
                    counts = count_languages(tok, batch)
                times[side].append(time.perf_counter() - started)
        assert sum(c.tokens for c in counts.values()) == raw_tokens, name
        median = {side: statistics.median(t) for side, t in times.items()}
        figures[name] = {
            "mb_per_s": {side: round(mb / t, 2) for side, t in median.items()},
            "ratio": round(median["raw"] / median["ours"], 3),
            "paired_ratio": round(paired_ratio(times["raw"], times["ours"]), 3),
            "tokens": raw_tokens,
        }
        print(
            f"encode {name:>12}: ours {mb / median['ours']:6.2f} MB/s vs raw {mb / median['raw']:6.2f} MB/s = "
            f"{figures[name]['ratio']}x (target >= 0.9; paired {figures[name]['paired_ratio']}x); {raw_tokens} tokens, equal"
        )
    return {"flores_mb": round(mb, 3), "languages": len(texts), "tokenizers": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lake", help="a lake with documents/dedup (`make run` builds ./lake)")
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--repeats", type=int, default=9, help="training runs per side (this machine's noise is ±10%%)")
    parser.add_argument("--encode-repeats", type=int, default=5)
    parser.add_argument("--skip", default="", help="comma-separated: training,encode")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "(unset: tokenizers' default, true)"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        trained = os.path.join(tmp, "raw.json")
        if "training" not in skip:
            results["training"] = bench_training(args.lake, args.vocab_size, args.repeats, tmp)
        if "encode" not in skip:
            if not (SHARED / "flores200-dev").is_dir():
                sys.exit(f"{SHARED} not found: the encode benchmark measures FLORES and the reference rank files")
            tokenizers = {name: str(SHARED / "tokenizers" / f"{name}.tiktoken") for name in REFERENCES}
            if os.path.exists(trained):
                tokenizers[f"lmforge-{round(args.vocab_size / 1024)}k"] = trained
            results["encode"] = bench_encode(tokenizers, args.encode_repeats)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
