"""Benchmark: tokenize for training (ours, from parquet to token shards) vs raw `tokenizers` batch encoding, same text.

    python bench/tokens.py [--lake lake] [--tokenizer sample-8k] [--batch 1000] [--batch-bytes 1000000]
                             [--repeats 7] [--json bench/results/tokens.json]

The text is the lake's `documents` (`documents/dedup`, its listed shards) and the tokenizer the lake's
`tokenizers/<name>/tokenizer.json`; a lake without them gets a generated multilingual text (several
scripts, ~2 MB) and an 8k BPE trained on it. Same texts, same encode calls (a call ends with the document
that reaches `--batch` documents or `--batch-bytes` of text, across shards, as ours cuts them), sides
alternating, medians over the repetitions; each run in a fresh spawned process, its inputs loaded before its
clock starts, so nothing one run allocated or cached helps or hinders another:

- **ours**: `tokenize_dataset` into a scratch copy of the lake (its `tokens/` and `_work/` cleared before
  each run): reads the shards a record batch at a time, splits by id hash, encodes, writes .bin + .idx.npy,
  publishes, writes the manifest; its clock covers the whole call, tokenizer load included (the process's
  one-time imports are done before: pandas, which pyarrow loads on its first conversion, and package metadata).
- **raw encode_batch**: `Tokenizer.encode_batch(texts[i:i+batch], add_special_tokens=False)` over the texts
  held in memory as a Python list, ids read (`len(e.ids)`), nothing written: the anchor (target ≥ 0.9×).
- **raw encode_batch_fast**: the same with `encode_batch_fast` (no offsets), for comparison.
- **datatrove DocumentTokenizer**: datatrove 0.10's step on the same local tokenizer.json (offline), shuffling
  off, `<|endoftext|>` appended by its post-processor, writing its .ds/.ds.index files; its input Documents
  built before the clock, `batch_size=--batch` (it has no byte bound). For scale, not a target.

MB/s = UTF-8 MB of text / wall seconds; tokens/s counts ids without the `<|endoftext|>` ids, so every side
counts the same tokens (checked equal). CPU seconds (all threads) are printed too: this VM's wall time varies
with its neighbours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench._harness import bench_log, cpu_seconds, in_fresh_process, paired_ratio, quiet_loguru  # noqa: E402

SIDES = ("ours", "raw encode_batch", "raw encode_batch_fast", "datatrove")


def generated_texts(n_docs: int = 600, seed: int = 0) -> list[str]:
    """Pseudo-words in six scripts (Latin, Cyrillic, Greek, Arabic, Devanagari, CJK), ~3.5 kB per document."""
    rng = random.Random(seed)
    scripts = [(0x61, 0x7A), (0x430, 0x44F), (0x3B1, 0x3C9), (0x627, 0x64A), (0x915, 0x939), (0x4E00, 0x4E80)]
    texts = []
    for i in range(n_docs):
        lo, hi = scripts[i % len(scripts)]
        vocab = ["".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(2, 8))) for _ in range(300)]
        sentences = [" ".join(rng.choices(vocab, k=rng.randint(5, 20))).capitalize() + "." for _ in range(40)]
        texts.append(" ".join(sentences) + f" ({i})")
    return texts


def prepare(lake_root: str, tokenizer: str, tmp: str) -> tuple[str, str, list[str], str]:
    """A scratch lake holding the documents and the tokenizer; returns (scratch root, tokenizer name, texts, source)."""
    import pyarrow as pa

    from pipelines.lake import DOCUMENTS_DEDUP, DOCUMENTS_SCHEMA, TOKENIZERS, Lake, listed_shards, read_shard, write_table

    source, scratch = Lake.at(lake_root), Lake.at(os.path.join(tmp, "lake"))
    shards = listed_shards(source, DOCUMENTS_DEDUP)
    tokenizer_json = Path(source.path(TOKENIZERS, tokenizer, "tokenizer.json"))
    if shards and tokenizer_json.is_file():
        shutil.copytree(source.path(DOCUMENTS_DEDUP), scratch.path(DOCUMENTS_DEDUP))
        shutil.copytree(tokenizer_json.parent, scratch.path(TOKENIZERS, tokenizer))
        texts = [t for s in shards for t in read_shard(source.fs, s, ["text"]).column("text").to_pylist()]
        return scratch.root, tokenizer, texts, f"{source.path(DOCUMENTS_DEDUP)} ({len(shards)} shards), {tokenizer_json}"

    from tokenizer_training.train import SPECIAL_TOKENS, TokenizerConfig, bpe_trainer, build_tokenizer

    texts = generated_texts()
    rows = [{"id": f"gen-{i}", "text": t, "lang": "und", "n_chars": len(t)} for i, t in enumerate(texts)]
    run = "0123456789abcdef"
    for part in range(4):
        write_table(
            scratch, DOCUMENTS_DEDUP, f"{run}_{part:05d}.parquet", pa.Table.from_pylist(rows[part::4], schema=DOCUMENTS_SCHEMA)
        )
    from pipelines.lake import RunRecord, lmforge_version, refresh_manifest, utc_now

    now = utc_now()
    record = RunRecord(
        run=run, stage="bench", parameters={}, inputs=[], started=now, finished=now, lmforge_version=lmforge_version()
    )
    refresh_manifest(scratch, DOCUMENTS_DEDUP, [record])
    texts = [t for part in range(4) for t in texts[part::4]]  # shard order, as ours reads them
    bpe = build_tokenizer()
    bpe.train_from_iterator(texts, bpe_trainer(TokenizerConfig(name="generated", vocab_size=8192)))
    assert bpe.token_to_id(SPECIAL_TOKENS[0]) is not None
    Path(scratch.path(TOKENIZERS, "generated")).mkdir(parents=True)
    bpe.save(scratch.path(TOKENIZERS, "generated", "tokenizer.json"))
    return scratch.root, "generated", texts, "generated multilingual text (no documents or tokenizer in the lake)"


def scratch_texts(root: str) -> list[str]:
    """The documents' texts in the order ours reads them (the listed shards, sorted)."""
    from pipelines.lake import DOCUMENTS_DEDUP, Lake, listed_shards, read_shard

    lake = Lake.at(root)
    return [t for s in listed_shards(lake, DOCUMENTS_DEDUP) for t in read_shard(lake.fs, s, ["text"]).column("text").to_pylist()]


def groups(texts: list[str], batch: int, batch_bytes: int) -> list[list[str]]:
    """The texts cut as ours cuts them into encode calls: a call ends with the document that reaches `batch`
    documents or `batch_bytes` bytes."""
    cut, group, size = [], [], 0
    for text in texts:
        group.append(text)
        size += len(text.encode())
        if len(group) >= batch or size >= batch_bytes:
            cut.append(group)
            group, size = [], 0
    return cut + [group] if group else cut


def timed(work) -> dict:  # noqa: ANN001
    started, used = time.perf_counter(), cpu_seconds()
    tokens = work()
    return {"wall": time.perf_counter() - started, "cpu": cpu_seconds() - used, "tokens": tokens}


def side(name: str, root: str, tokenizer: str, batch: int, batch_bytes: int) -> dict:
    """One timed run of one side, in its own fresh process (`in_fresh_process`); inputs are loaded before the clock."""
    quiet_loguru()
    tokenizer_json = os.path.join(root, "tokenizers", tokenizer, "tokenizer.json")
    if name == "ours":
        from importlib import metadata

        import pandas  # noqa: F401  pyarrow imports it on its first conversion: an import, outside the clocks

        from model.tokens import TokenizeConfig, tokenize_dataset
        from pipelines.lake import Lake

        metadata.version("tokenizers")  # the first look-up reads every installed distribution once per process

        for leftover in ("tokens", "_work"):
            shutil.rmtree(os.path.join(root, leftover), ignore_errors=True)
        config = TokenizeConfig(tokenizer=tokenizer, batch_rows=batch, batch_bytes=batch_bytes)

        def ours() -> int:
            manifest = tokenize_dataset(Lake.at(root), config, "documents").manifest
            return manifest.tokens - manifest.documents  # without the <|endoftext|> ids

        return timed(ours)
    texts = scratch_texts(root)
    if name == "datatrove":
        from datatrove.data import Document
        from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        out = os.path.join(os.path.dirname(root), "datatrove")
        shutil.rmtree(out, ignore_errors=True)
        step = DocumentTokenizer(
            out, tokenizer_json, eos_token="<|endoftext|>", shuffle_documents=False, batch_size=batch, save_final_metadata=False
        )

        def datatrove() -> int:
            step.run(iter(docs), 0, 1)
            return sum(f.stat().st_size for f in Path(out).glob("*.ds")) // step.token_size - len(docs)

        return timed(datatrove)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    tok.encode_special_tokens = True  # as ours: text is text
    encode = tok.encode_batch_fast if name == "raw encode_batch_fast" else tok.encode_batch
    batches = groups(texts, batch, batch_bytes)
    return timed(lambda: sum(len(e.ids) for texts in batches for e in encode(texts, add_special_tokens=False)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lake", help="a lake with documents/dedup and tokenizers/<name> (`make run` builds it)")
    parser.add_argument("--tokenizer", default="sample-8k")
    parser.add_argument("--batch", type=int, default=1000, help="documents per encode call, about, every side")
    parser.add_argument("--batch-bytes", type=int, default=1_000_000, help="text per encode call, about (ours and raw)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lmforge-bench-tokenize-") as tmp:
        root, name, texts, source = prepare(args.lake, args.tokenizer, tmp)
        mb = sum(len(t.encode()) for t in texts) / 1e6
        calls = len(groups(texts, args.batch, args.batch_bytes))
        print(
            f"text: {len(texts)} documents, {mb:.2f} MB from {source}; {calls} encode calls "
            f"(about {args.batch} documents or {args.batch_bytes / 1e6:g} MB each); "
            f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '(unset: parallel)')}, {os.cpu_count()} CPUs"
        )
        runs: dict[str, list[dict]] = {s: [] for s in SIDES}
        for i in range(args.repeats):
            for s in SIDES if i % 2 == 0 else SIDES[::-1]:  # alternate, so drift favours no side
                runs[s].append(in_fresh_process(side, s, root, name, args.batch, args.batch_bytes, log=bench_log("tokenize")))
    counts = {s: {r["tokens"] for r in rs} for s, rs in runs.items()}
    assert all(c == counts["raw encode_batch"] and len(c) == 1 for c in counts.values()), counts
    n_tokens = counts["ours"].pop()
    figures: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "source": source,
        "documents": len(texts),
        "mb": round(mb, 3),
        "tokens": n_tokens,
        "batch": args.batch,
        "batch_bytes": args.batch_bytes,
        "encode_calls": calls,
        "repeats": args.repeats,
        "sides": {},
    }
    wall = {s: [r["wall"] for r in rs] for s, rs in runs.items()}
    for s in SIDES:
        median, cpu_median = statistics.median(wall[s]), statistics.median(r["cpu"] for r in runs[s])
        figures["sides"][s] = {
            "mb_per_s": round(mb / median, 3),
            "tokens_per_s": round(n_tokens / median),
            "median_s": round(median, 4),
            "cpu_s": round(cpu_median, 4),
            "wall_s": [round(t, 4) for t in wall[s]],
        }
        print(
            f"{s:>22}: {mb / median:6.2f} MB/s  {n_tokens / median / 1e6:5.2f} M tokens/s  "
            f"median {median:6.3f} s  cpu {cpu_median:6.3f} s"
        )
    ours = figures["sides"]["ours"]
    for anchor in SIDES[1:]:
        ratio = figures["sides"][anchor]["median_s"] / ours["median_s"]
        paired = paired_ratio(wall[anchor], wall["ours"])
        cpu_ratio = figures["sides"][anchor]["cpu_s"] / ours["cpu_s"]
        figures["sides"][anchor] |= {
            "ours_ratio": round(ratio, 3),
            "ours_paired_ratio": round(paired, 3),
            "ours_cpu_ratio": round(cpu_ratio, 3),
        }
        target = " (target >= 0.9)" if anchor == "raw encode_batch" else ""
        print(f"ours / {anchor}: {ratio:.3f}x{target}; paired runs {paired:.3f}x; CPU time {cpu_ratio:.3f}x")
    print(f"{n_tokens} tokens on every side (without <|endoftext|>)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
