"""Benchmark: our ingest vs datatrove's own FineWeb-style pipeline, same input, same settings.

    python bench/ingest.py [--warc WARC] [--repeats 3] [--english-defaults]

Every pipeline runs one task on one core, each run in a fresh child process (spaCy, jieba and
Sudachi load once per process and cost seconds: the run after another must not inherit them);
runs alternate to spread machine noise; we print every timing, the medians and the ratios.

- **anchor** (the ratio's denominator): datatrove's FineWeb recipe with our settings, so that both
  make the same decisions: WarcReader → Trafilatura (deduplicate=False, as ours; its output
  tidied by our `tidy_lines`) →
  LanguageFilter (lid.176, offline, FLORES codes) → Gopher repetition / Gopher quality / C4 /
  FineWeb filters with the same per-language parameters, splitting words with datatrove's own
  tokenizers → ParquetWriter. What differs is our code: the reader that loses nothing, extraction
  with exclusions, the shared word tokenizer (same words, faster), exclusion writers for every
  step, PII redaction and atomic shard writes.
- **datatrove English defaults** (`--english-defaults`, for information): the same recipe with
  datatrove's stock English filters, as its FineWeb example writes it. It keeps fewer documents,
  so it does less filtering work; its speed is not comparable work.

Target now: ours/anchor ≥ 1.0 (our layer costs nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import multiprocessing
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

from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.extractors import Trafilatura  # noqa: E402
from datatrove.pipeline.filters import (  # noqa: E402
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
)
from datatrove.pipeline.readers import WarcReader  # noqa: E402
from datatrove.pipeline.writers import ParquetWriter  # noqa: E402

from bench._harness import in_fresh_process, quiet_loguru, sample_warc  # noqa: E402
from pipelines.ingest.extract import tidy_lines  # noqa: E402
from pipelines.ingest.inputs import resolve_inputs  # noqa: E402
from pipelines.ingest.language import LanguageID, LocalFT176LID, lid_model_path  # noqa: E402
from pipelines.ingest.quality_filters import DATATROVE_CHAIN, LanguageRules, PerLanguage  # noqa: E402
from pipelines.ingest.run import IngestConfig, run_ingest  # noqa: E402
from pipelines.lake import Lake  # noqa: E402


def count_records(warc: Path) -> int:
    from warcio.archiveiterator import ArchiveIterator

    with open(warc, "rb") as f:
        return sum(1 for r in ArchiveIterator(f) if r.rec_type == "response")


class TidyTrafilatura(Trafilatura):
    """datatrove's Trafilatura step with our line tidying: the only extraction setting we add."""

    def extract(self, text: str) -> str:
        return tidy_lines(super().extract(text) or "")


def timed_datatrove(warc: Path, workdir: Path, extractor: Trafilatura, middle: list) -> tuple[float, int]:
    pipeline = [
        WarcReader(str(warc.parent), glob_pattern=warc.name),
        extractor,
        *middle,
        ParquetWriter(str(workdir / "out")),
    ]
    start = time.perf_counter()
    stats = LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(workdir / "logs")).run()
    elapsed = time.perf_counter() - start
    kept = stats.stats[-1].stats.get("total")
    return elapsed, int(kept.total if hasattr(kept, "total") else kept or 0)


def with_datatrove_words(make, rules: LanguageRules):  # noqa: ANN001, ANN201
    """The same filter and parameters, splitting words with datatrove's own tokenizer for the language."""
    return make(dataclasses.replace(rules, words=rules.words.inner))


def run_anchor(warc: Path, workdir: Path) -> tuple[float, int]:
    extractor = TidyTrafilatura(favour_precision=True, timeout=1.0, deduplicate=False)
    filters = [PerLanguage(functools.partial(with_datatrove_words, make), step) for step, make in DATATROVE_CHAIN]
    return timed_datatrove(warc, workdir, extractor, [LanguageID(lid_model_path()), *filters])


def run_english_defaults(warc: Path, workdir: Path) -> tuple[float, int]:
    language = LanguageFilter()
    language.model = LocalFT176LID(lid_model_path())
    filters = [
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
    ]
    return timed_datatrove(warc, workdir, Trafilatura(favour_precision=True, timeout=1.0), [language, *filters])


def run_ours(warc: Path, workdir: Path) -> tuple[float, int]:
    start = time.perf_counter()
    config = IngestConfig(extractor="trafilatura", workers=1, max_tasks=1)  # the anchor's extractor: same settings
    result = run_ingest(resolve_inputs([str(warc)]), Lake.at(workdir / "lake"), config)
    return time.perf_counter() - start, result.documents


def _timed_in_tmp(fn, warc: Path) -> tuple[float, int]:  # noqa: ANN001
    multiprocessing.set_start_method("fork", force=True)  # the extraction sandbox expects Linux's default
    quiet_loguru()
    with tempfile.TemporaryDirectory() as tmp:
        return fn(warc, Path(tmp))


def timed_in_fresh_process(fn, warc: Path) -> tuple[float, int]:  # noqa: ANN001
    """One timing (seconds, documents kept) in a new interpreter, so no run profits from what an earlier one loaded."""
    return in_fresh_process(_timed_in_tmp, fn, warc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warc", type=Path, help="input WARC (default: the shards `make run` packs, read as one)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--english-defaults", action="store_true", help="also time datatrove's English defaults")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.warc = sample_warc(args.warc)
    quiet_loguru()
    docs = count_records(args.warc)
    runs = {"ours": run_ours, "anchor": run_anchor}
    if args.english_defaults:
        runs["english"] = run_english_defaults
    times: dict[str, list[float]] = {name: [] for name in runs}
    kept: dict[str, int] = {}
    for i in range(args.repeats):
        for name, fn in runs.items():
            elapsed, kept[name] = timed_in_fresh_process(fn, args.warc)
            times[name].append(elapsed)
            print(f"run {i + 1} {name:>7}: {elapsed:7.1f} s  {docs / elapsed:6.1f} docs/s/core  kept {kept[name]}", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: docs / v for k, v in med.items()}
    ratio = rate["ours"] / rate["anchor"]
    print(f"\ninput: {args.warc} ({docs} pages), 1 process each, {args.repeats} runs, median")
    print(f"  ours    {rate['ours']:6.1f} docs/s/core  (kept {kept['ours']})")
    print(f"  anchor  {rate['anchor']:6.1f} docs/s/core  (kept {kept['anchor']}, datatrove blocks, same filter settings)")
    if "english" in rate:
        print(f"  english {rate['english']:6.1f} docs/s/core  (kept {kept['english']}, datatrove English defaults; other work)")
    print(f"  ratio ours/anchor = {ratio:.2f}x  (target now >= 1.0x)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "warc": str(args.warc),
            "docs": docs,
            "times_s": times,
            "kept": kept,
            "docs_per_s_per_core": rate,
            "ratio": ratio,
            "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        }
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
