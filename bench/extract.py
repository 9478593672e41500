"""Benchmark: the fast extraction path (resiliparse) vs trafilatura, same pages, one run.

    python bench/extract.py [--warc WARC] [--limit N] [--repeats 3]
                            [--skip-ingest] [--json bench/results/extract.json]

(a) **extraction only**, docs/s on one core: trafilatura with our settings (favour_precision,
    deduplicate=False, `tidy_lines`) vs our `Resiliparse` step's `extract`, called in this process
    on the HTML our reader yields; resiliparse also through our extraction sandbox (per-document
    subprocess round trip), as the ingest runs it.
(b) **text quality**: per page, how much of the text the two extractors agree on (see
    `similarity`), its distribution, what each drops (empty/short outputs, lines only one keeps),
    total characters, and how many documents each keeps after the whole filter chain (from (c)).
(c) **whole ingest**, docs/s per core: `run_ingest(IngestConfig(extractor="resiliparse",
    workers=1, max_tasks=1))` vs the datatrove trafilatura anchor of `bench/ingest.py` (same filter
    settings), each run in a fresh spawned process, alternating, `--repeats` times; medians.
    Target: ours (fast path) / anchor >= 3.
(d) **reading**: our `InputReader` vs fastwarc (+ resiliparse's encoding detection) on the same
    WARC, and the reader's share of the fast ingest's time: is a faster WARC reader worth it?

`--limit N` takes every k-th page (N in all) into a temporary WARC, for quick runs.
"""

from __future__ import annotations

import argparse
import bisect
import difflib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datatrove.data import Document  # noqa: E402
from datatrove.pipeline.extractors import Trafilatura  # noqa: E402

from bench._harness import quiet_loguru, sample_warc  # noqa: E402
from bench.ingest import count_records, run_anchor, timed_in_fresh_process  # noqa: E402
from pipelines.ingest.extract import HTML, SandboxedExtraction, tidy_lines  # noqa: E402
from pipelines.ingest.inputs import resolve_inputs  # noqa: E402
from pipelines.ingest.readers import InputReader  # noqa: E402
from pipelines.ingest.resiliparse_extract import Resiliparse  # noqa: E402
from pipelines.ingest.run import IngestConfig, run_ingest  # noqa: E402
from pipelines.lake import REJECTED, Lake  # noqa: E402
from pipelines.lake.writers import RejectedWriter  # noqa: E402

SHORT = 200  # characters: below this a page's text is "short" (FineWeb-style filters drop such pages anyway)
BUCKETS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0)
MAX_TOKENS = 20_000  # per side, for the alignment (the longest sample page has ~15k)
# Scripts written without spaces between words: align them character by character.
_UNSPACED = "\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TOKEN = re.compile(f"[{_UNSPACED}]|[^\\s{_UNSPACED}]+")
# Layout, not content: trafilatura writes tables as Markdown rows (| a | b |, |---|) and list items
# as "- item"; resiliparse writes cells separated by tabs and "•" bullets. Compared without them.
LAYOUT = re.compile(r"[|•◦▪]|-{3,}|^\s*[-*] ", re.MULTILINE)


# ---------------------------------------------------------------- inputs


def html_pages(warc: Path) -> list[Document]:
    """The HTML documents our reader yields from the WARC (what the extraction step receives)."""
    return [d for d in InputReader(resolve_inputs([str(warc)])).run() if d.metadata.get("content_type") == HTML]


def subset_warc(warc: Path, limit: int, out: Path) -> Path:
    """Every k-th response record of `warc`, `limit` in all, copied byte for byte (gzip members) to `out`."""
    from warcio.archiveiterator import ArchiveIterator

    spans = []
    with open(warc, "rb") as f:
        records = ArchiveIterator(f)
        for record in records:
            if record.rec_type == "response":
                records.read_to_end()
                spans.append((records.get_record_offset(), records.get_record_length()))
    step = max(1, len(spans) // limit)
    with open(warc, "rb") as src, open(out, "wb") as dst:
        for offset, length in spans[::step][:limit]:
            src.seek(offset)
            dst.write(src.read(length))
    return out


# ---------------------------------------------------------------- (a) extraction speed


def trafilatura_text(extractor: Trafilatura, html: str) -> str:
    return tidy_lines(extractor.extract(html) or "")


def timed_extraction(pages: list[Document], extract) -> tuple[float, list[str]]:  # noqa: ANN001
    start = time.perf_counter()
    texts = [extract(doc.text) for doc in pages]
    return time.perf_counter() - start, texts


def timed_sandboxed(pages: list[Document], workdir: Path) -> float:
    """Resiliparse as the ingest runs it: our SandboxedExtraction step (subprocess, timeout, exclusions)."""
    step = SandboxedExtraction(Resiliparse(timeout=1.0), RejectedWriter(Lake.at(workdir), REJECTED, "bench", "bench", "extract"))
    copies = [Document(text=d.text, id=d.id, metadata=dict(d.metadata)) for d in pages]
    start = time.perf_counter()
    for _ in step.run(iter(copies)):
        pass
    return time.perf_counter() - start


# ---------------------------------------------------------------- (b) quality


def tokens(text: str) -> list[str]:
    """Words, and single characters of scripts written without spaces (CJK, Thai, Lao, Khmer, Burmese)."""
    return TOKEN.findall(LAYOUT.sub(" ", text))[:MAX_TOKENS]


def similarity(a: str, b: str) -> float:
    """Character-level agreement, 2·matched / (chars(a) + chars(b)), whitespace not counted.

    Matched characters are those of the tokens that difflib's SequenceMatcher aligns between the
    two token sequences (in order, like an edit script). Aligning tokens instead of characters
    gives the same figure up to partially-matching words, and runs in seconds instead of hours
    (difflib on 20k characters takes ~6 s per page). Whitespace and layout marks (`LAYOUT`) are
    left out: the two extractors break lines and draw tables differently, and that is not content.
    1.0: same text; 0.0: nothing in common.
    """
    ta, tb = tokens(a), tokens(b)
    total = sum(map(len, ta)) + sum(map(len, tb))
    if total == 0:
        return 1.0
    blocks = difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_matching_blocks()
    matched = sum(len(t) for block in blocks for t in ta[block.a : block.a + block.size])
    return 2 * matched / total


def only_in(text: str, other: str) -> list[str]:
    """The lines of `text` that do not occur in `other` (layout marks dropped, whitespace collapsed on both sides)."""
    flat = " ".join(LAYOUT.sub(" ", other).split())
    lines = (" ".join(LAYOUT.sub(" ", raw).split()) for raw in text.splitlines())
    return [line for line in lines if line and line not in flat]


def bucket_counts(values: list[float]) -> dict[str, int]:
    last = len(BUCKETS) - 2  # the last bucket includes 1.0
    counts = Counter(min(bisect.bisect_right(BUCKETS, v) - 1, last) for v in values)
    return {f"[{lo:.2f}, {hi:.2f}{']' if i == last else ')'}": counts[i] for i, (lo, hi) in enumerate(zip(BUCKETS, BUCKETS[1:]))}


def compare(pages: list[Document], traf: list[str], resi: list[str], examples: int) -> dict:
    urls = [d.metadata.get("url") or d.id for d in pages]
    sims = [similarity(r, t) for r, t in zip(resi, traf)]
    both = [s for s, r, t in zip(sims, resi, traf) if r and t]

    def pages_where(cond) -> list[str]:  # noqa: ANN001
        return [u for u, r, t in zip(urls, resi, traf) if cond(r, t)]

    drops = {
        "empty_trafilatura_only": pages_where(lambda r, t: not t and r),
        "empty_resiliparse_only": pages_where(lambda r, t: not r and t),
        "empty_both": pages_where(lambda r, t: not r and not t),
        f"short_trafilatura_only (<{SHORT} chars)": pages_where(lambda r, t: len(t) < SHORT <= len(r)),
        f"short_resiliparse_only (<{SHORT} chars)": pages_where(lambda r, t: len(r) < SHORT <= len(t)),
        "resiliparse_2x_longer": pages_where(lambda r, t: t and len(r) >= 2 * len(t)),
        "trafilatura_2x_longer": pages_where(lambda r, t: r and len(t) >= 2 * len(r)),
    }
    lines_only = {"resiliparse": Counter(), "trafilatura": Counter()}
    chars_only = {"resiliparse": 0, "trafilatura": 0}
    for r, t in zip(resi, traf):
        for name, mine, other in (("resiliparse", r, t), ("trafilatura", t, r)):
            extra = only_in(mine, other)
            lines_only[name].update(extra)
            chars_only[name] += sum(map(len, extra))
    worst = sorted((s, u) for s, u, r, t in zip(sims, urls, resi, traf) if r and t)[:examples]
    return {
        "similarity_measure": "token-aligned character agreement (difflib SequenceMatcher over words, CJK/Thai per char)",
        "pages": len(pages),
        "similarity_all": {"median": statistics.median(sims), "mean": statistics.fmean(sims)},
        "similarity_both_nonempty": {"pages": len(both), "median": statistics.median(both), "mean": statistics.fmean(both)}
        if both
        else {},
        "buckets_both_nonempty": bucket_counts(both),
        "total_chars": {"resiliparse": sum(map(len, resi)), "trafilatura": sum(map(len, traf))},
        "chars_in_lines_only_one_keeps": chars_only,
        "drops": {k: {"count": len(v), "examples": v[:examples]} for k, v in drops.items()},
        "lowest_similarity": [{"similarity": round(s, 3), "url": u} for s, u in worst],
        "common_lines_only_one_keeps": {k: v.most_common(examples * 2) for k, v in lines_only.items()},
    }


# ---------------------------------------------------------------- (c) whole ingest


def run_fast_ingest(warc: Path, workdir: Path) -> tuple[float, int]:
    start = time.perf_counter()
    config = IngestConfig(extractor="resiliparse", workers=1, max_tasks=1)
    result = run_ingest(resolve_inputs([str(warc)]), Lake.at(workdir / "lake"), config)
    return time.perf_counter() - start, result.documents


def time_ingest(warc: Path, repeats: int) -> dict:
    docs = count_records(warc)
    runs = {"ours_resiliparse": run_fast_ingest, "anchor_trafilatura": run_anchor}
    times: dict[str, list[float]] = {name: [] for name in runs}
    kept: dict[str, int] = {}
    for i in range(repeats):
        for name, fn in runs.items():
            elapsed, kept[name] = timed_in_fresh_process(fn, warc)
            times[name].append(elapsed)
            print(f"  run {i + 1} {name:>18}: {elapsed:7.1f} s  {docs / elapsed:6.1f} docs/s/core  kept {kept[name]}", flush=True)
    rate = {k: docs / statistics.median(v) for k, v in times.items()}
    return {
        "docs": docs,
        "times_s": times,
        "kept": kept,
        "docs_per_s_per_core": rate,
        "ratio": rate["ours_resiliparse"] / rate["anchor_trafilatura"],
    }


# ---------------------------------------------------------------- (d) reading


def read_with_fastwarc(warc: Path) -> int:
    """Decoded HTML of every response record, the way DCLM reads Common Crawl (fastwarc + resiliparse)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    n = 0
    for record in ArchiveIterator(str(warc), record_types=WarcRecordType.response, parse_http=True):
        body = record.reader.read()
        n += bool(bytes_to_str(body, detect_encoding(body)))
    return n


def time_reading(warc: Path, repeats: int) -> dict:
    ours, fast = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        n_ours = sum(1 for _ in InputReader(resolve_inputs([str(warc)])).run())
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        n_fast = read_with_fastwarc(warc)
        fast.append(time.perf_counter() - start)
    return {"ours_s": statistics.median(ours), "fastwarc_s": statistics.median(fast), "docs": n_ours, "docs_fastwarc": n_fast}


# ---------------------------------------------------------------- report


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("resiliparse", "fastwarc", "trafilatura", "datatrove")},
    }


def print_quality(q: dict) -> None:
    print(f"\n(b) text quality, resiliparse vs trafilatura, {q['pages']} pages ({q['similarity_measure']})")
    print(f"  similarity, all pages:      median {q['similarity_all']['median']:.3f}  mean {q['similarity_all']['mean']:.3f}")
    if q["similarity_both_nonempty"]:
        s = q["similarity_both_nonempty"]
        print(f"  similarity, both non-empty: median {s['median']:.3f}  mean {s['mean']:.3f}  ({s['pages']} pages)")
    print("  distribution (both non-empty): " + "  ".join(f"{k} {v}" for k, v in q["buckets_both_nonempty"].items()))
    tc, co = q["total_chars"], q["chars_in_lines_only_one_keeps"]
    print(f"  total chars: resiliparse {tc['resiliparse']:,}  trafilatura {tc['trafilatura']:,}")
    print(f"  chars in lines only one keeps: resiliparse {co['resiliparse']:,}  trafilatura {co['trafilatura']:,}")
    for name, d in q["drops"].items():
        print(f"  {name:<38} {d['count']:5d}  {' '.join(d['examples'][:3])}")
    print("  lowest similarity: " + "  ".join(f"{e['similarity']} {e['url']}" for e in q["lowest_similarity"][:3]))
    for name, lines in q["common_lines_only_one_keeps"].items():
        print(f"  most common lines only {name} keeps: " + " | ".join(f"{line[:40]!r}×{n}" for line, n in lines[:8]))


def measure_extraction(pages: list[Document], workdir: Path) -> tuple[dict, list[str], list[str]]:
    """(a): figures, and each extractor's text per page (for (b))."""
    n = len(pages)
    trafilatura = Trafilatura(favour_precision=True, timeout=1.0, deduplicate=False)
    resiliparse = Resiliparse(timeout=1.0)
    resiliparse.extract(pages[0].text)  # load the module before timing
    traf_s, traf = timed_extraction(pages, lambda html: trafilatura_text(trafilatura, html))
    resi_s, resi = timed_extraction(pages, resiliparse.extract)
    sandbox_s = timed_sandboxed(pages, workdir)
    figures = {
        "seconds": {"trafilatura": traf_s, "resiliparse": resi_s, "resiliparse_sandboxed": sandbox_s},
        "docs_per_s_per_core": {"trafilatura": n / traf_s, "resiliparse": n / resi_s, "resiliparse_sandboxed": n / sandbox_s},
        "ratio": traf_s / resi_s,
        "ratio_sandboxed": traf_s / sandbox_s,
    }
    rate = figures["docs_per_s_per_core"]
    print("\n(a) extraction only, docs/s on one core")
    print(f"  trafilatura (our settings)  {rate['trafilatura']:8.1f}")
    print(f"  resiliparse                 {rate['resiliparse']:8.1f}   ratio {figures['ratio']:.1f}x")
    print(f"  resiliparse, sandboxed      {rate['resiliparse_sandboxed']:8.1f}   ratio {figures['ratio_sandboxed']:.1f}x")
    return figures, traf, resi


def print_ingest(ingest: dict) -> None:
    rate, kept = ingest["docs_per_s_per_core"], ingest["kept"]
    print(f"  ours, resiliparse           {rate['ours_resiliparse']:6.1f} docs/s/core  (kept {kept['ours_resiliparse']})")
    print(f"  anchor, datatrove+trafil.   {rate['anchor_trafilatura']:6.1f} docs/s/core  (kept {kept['anchor_trafilatura']})")
    print(f"  ratio ours (fast path)/anchor = {ingest['ratio']:.2f}x  (target >= 3x)")


def print_reading(reading: dict) -> None:
    docs = reading["docs"]
    print(f"\n(d) reading the WARC ({docs} docs), median of 3")
    print(f"  ours (InputReader)          {reading['ours_s']:6.2f} s  {docs / reading['ours_s']:8.0f} docs/s")
    print(f"  fastwarc + detect_encoding  {reading['fastwarc_s']:6.2f} s  {docs / reading['fastwarc_s']:8.0f} docs/s")
    if "share_of_fast_ingest" in reading:
        print(f"  our reader = {reading['share_of_fast_ingest']:.1%} of the fast ingest's median time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warc", type=Path, help="input WARC (default: the shards `make run` packs, read as one)")
    parser.add_argument("--limit", type=int, help="use only N pages, evenly spread over the WARC (quick runs)")
    parser.add_argument("--repeats", type=int, default=3, help="whole-ingest runs per pipeline (medians)")
    parser.add_argument("--examples", type=int, default=5, help="example URLs/lines per finding")
    parser.add_argument("--skip-ingest", action="store_true", help="extraction and quality only (no (c))")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.warc = sample_warc(args.warc)
    quiet_loguru()
    with tempfile.TemporaryDirectory() as tmp:
        warc = subset_warc(args.warc, args.limit, Path(tmp) / "subset.warc.gz") if args.limit else args.warc
        pages = html_pages(warc)
        print(f"input: {args.warc}{' (evenly spread subset)' if args.limit else ''}: {len(pages)} HTML pages")

        extraction, traf, resi = measure_extraction(pages, Path(tmp) / "sandbox")
        start = time.perf_counter()
        quality = compare(pages, traf, resi, args.examples)
        quality["compare_s"] = time.perf_counter() - start
        print_quality(quality)

        reading = time_reading(warc, 3)
        ingest = None
        if not args.skip_ingest:
            print(f"\n(c) whole ingest, 1 task on 1 core, fresh process per run, {args.repeats} runs each")
            ingest = time_ingest(warc, args.repeats)
            print_ingest(ingest)
            quality["kept_after_filters"] = ingest["kept"]
            reading["share_of_fast_ingest"] = reading["ours_s"] / statistics.median(ingest["times_s"]["ours_resiliparse"])
        print_reading(reading)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "warc": str(args.warc),
            "limit": args.limit,
            "pages": len(pages),
            "repeats": args.repeats,
            "extraction": extraction,
            "quality": quality,
            "ingest": ingest,
            "reading": reading,
            "machine": machine(),
        }
        args.json.write_text(json.dumps(figures, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
