"""Benchmark: tokenize for training (ours, from parquet to token shards) vs raw `tokenizers` batch encoding, same text.

    python bench/tokenize.py [--lake lake] [--tokenizer sample-8k] [--batch 1000] [--repeats 7]
                             [--json bench/results/tokenize.json]

The text is the lake's `documents` (`documents/dedup`, its listed shards) and the tokenizer the lake's
`tokenizers/<name>/tokenizer.json`; a lake without them gets a generated multilingual text (several
scripts, ~2 MB) and an 8k BPE trained on it. Same texts, same batch size, same process, sides alternating,
medians over the repetitions:

- **ours**: `tokenize_dataset` into a scratch copy of the lake (its `tokens/` and `_work/` cleared before
  each run): reads the shards a record batch at a time, splits by id hash, encodes, writes .bin + .idx.npy,
  publishes, writes the manifest; its clock covers the whole call, tokenizer load included.
- **raw encode_batch**: `Tokenizer.encode_batch(texts[i:i+batch], add_special_tokens=False)` over the texts
  held in memory as a Python list, ids read (`len(e.ids)`), nothing written: the anchor (target ≥ 0.9×).
- **raw encode_batch_fast**: the same with `encode_batch_fast` (no offsets), what ours calls: a stricter anchor.
- **datatrove DocumentTokenizer**: datatrove 0.10's step on the same local tokenizer.json (offline), shuffling
  off, `<|endoftext|>` appended by its post-processor, writing its .ds/.ds.index files; its input Documents
  built before the clock. For scale, not a target.

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

# `python bench/tokenize.py` puts bench/ first on sys.path, where this file would shadow the standard
# library's `tokenize` (imported by linecache, inspect, …): take the folder off before importing anything.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from bench._harness import cpu_seconds, paired_ratio  # noqa: E402

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


def run_ours(root: str, tokenizer: str, batch: int) -> int:
    from model.tokens import TokenizeConfig, tokenize_dataset
    from pipelines.lake import Lake

    for leftover in ("tokens", "_work"):
        shutil.rmtree(os.path.join(root, leftover), ignore_errors=True)
    manifest = tokenize_dataset(Lake.at(root), TokenizeConfig(tokenizer=tokenizer, batch_rows=batch), "documents").manifest
    return manifest.tokens - manifest.documents  # without the <|endoftext|> ids


def run_raw(tok, texts: list[str], batch: int, fast: bool) -> int:  # noqa: ANN001
    encode = tok.encode_batch_fast if fast else tok.encode_batch
    return sum(len(e.ids) for i in range(0, len(texts), batch) for e in encode(texts[i : i + batch], add_special_tokens=False))


def run_datatrove(tokenizer_json: str, docs: list, batch: int, out: str) -> int:
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    shutil.rmtree(out, ignore_errors=True)
    step = DocumentTokenizer(
        out, tokenizer_json, eos_token="<|endoftext|>", shuffle_documents=False, batch_size=batch, save_final_metadata=False
    )
    step.run(iter(docs), 0, 1)
    size = sum(f.stat().st_size for f in Path(out).glob("*.ds"))
    return size // step.token_size - len(docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--lake", default="lake", help="a lake with documents/dedup and tokenizers/<name> (`make run` builds ./lake)"
    )
    parser.add_argument("--tokenizer", default="sample-8k")
    parser.add_argument("--batch", type=int, default=1000, help="documents per encode_batch call, every side")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from bench._harness import quiet_loguru

    quiet_loguru()
    from datatrove.data import Document
    from tokenizers import Tokenizer

    with tempfile.TemporaryDirectory(prefix="lmforge-bench-tokenize-") as tmp:
        root, name, texts, source = prepare(args.lake, args.tokenizer, tmp)
        tokenizer_json = os.path.join(root, "tokenizers", name, "tokenizer.json")
        tok = Tokenizer.from_file(tokenizer_json)
        tok.encode_special_tokens = True  # as ours: text is text
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        mb = sum(len(t.encode()) for t in texts) / 1e6
        print(
            f"text: {len(texts)} documents, {mb:.2f} MB from {source}; batch {args.batch}; "
            f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '(unset: parallel)')}, {os.cpu_count()} CPUs"
        )
        runs = {
            "ours": lambda: run_ours(root, name, args.batch),
            "raw encode_batch": lambda: run_raw(tok, texts, args.batch, fast=False),
            "raw encode_batch_fast": lambda: run_raw(tok, texts, args.batch, fast=True),
            "datatrove": lambda: run_datatrove(tokenizer_json, docs, args.batch, os.path.join(tmp, "datatrove")),
        }
        wall: dict[str, list[float]] = {s: [] for s in SIDES}
        cpu: dict[str, list[float]] = {s: [] for s in SIDES}
        counts: dict[str, set[int]] = {s: set() for s in SIDES}
        for i in range(args.repeats):
            for side in SIDES if i % 2 == 0 else SIDES[::-1]:  # alternate, so drift favours no side
                started, used = time.perf_counter(), cpu_seconds()
                counts[side].add(runs[side]())
                wall[side].append(time.perf_counter() - started)
                cpu[side].append(cpu_seconds() - used)
        tokens = counts["raw encode_batch"]
        assert len(tokens) == 1 and all(c == tokens for c in counts.values()), counts
        n_tokens = tokens.pop()
        figures: dict = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "source": source,
            "documents": len(texts),
            "mb": round(mb, 3),
            "tokens": n_tokens,
            "batch": args.batch,
            "repeats": args.repeats,
            "sides": {},
        }
        for side in SIDES:
            median, cpu_median = statistics.median(wall[side]), statistics.median(cpu[side])
            figures["sides"][side] = {
                "mb_per_s": round(mb / median, 3),
                "tokens_per_s": round(n_tokens / median),
                "median_s": round(median, 4),
                "cpu_s": round(cpu_median, 4),
                "wall_s": [round(t, 4) for t in wall[side]],
            }
            print(
                f"{side:>22}: {mb / median:6.2f} MB/s  {n_tokens / median / 1e6:5.2f} M tokens/s  "
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
