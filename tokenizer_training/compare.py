"""Measure several tokenizers on the same texts and assemble `report.json` (the dict `report` renders).

Texts come from two places: a folder of aligned files (FLORES layout: `<lang>.txt`, line N of
each translates the same sentence), which gives the premium against English, and, for the
languages without aligned text, the lake's held-out documents of an lmforge-trained tokenizer
(documents its training never saw). Everything is read and every tokenizer loaded before any
counting starts, so bad input fails fast and nothing is written.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.common.errors import UserError
from pipelines.common.parallel_text import REFERENCE_LANGUAGE, read_parallel
from pipelines.lake import Lake, listed_shards, lmforge_version, utc_now
from tokenizer_training.evaluate import count_languages, tokenizer_entry
from tokenizer_training.loading import LoadedTokenizer, TokenizerLoadError, load_tokenizer
from tokenizer_training.sampling import heldout_texts
from tokenizer_training.train import read_tokenizer_manifest, tokenizer_dir

DEFAULT_HELDOUT_BYTES = 1_000_000  # per language: enough for stable ratios, fast to count


class NothingToMeasure(UserError, ValueError):
    """Neither aligned text nor held-out lake documents were found."""


@dataclass(frozen=True)
class Texts:
    """What every tokenizer is measured on."""

    parallel: dict[str, str]  # language -> aligned text (Petrov's recipe)
    heldout: dict[str, list[str]]  # language -> held-out lake documents
    parallel_dir: str | None
    lake: str | None


def resolve_tokenizer(spec: str, lake: Lake) -> str:
    """A path as given if it exists, else the lake's `tokenizers/<spec>` (a name from `tokenizer train`)."""
    if os.path.exists(spec):
        return os.path.abspath(spec)
    named = tokenizer_dir(lake, spec)
    if lake.is_local and os.path.isdir(named):
        return named
    raise TokenizerLoadError(f"{spec!r} is neither a tokenizer file or folder nor a tokenizer in {lake.path('tokenizers')}")


def heldout_bounds(tokenizers: list[LoadedTokenizer], lake: Lake) -> tuple[str | None, dict[str, str]]:
    """The dataset and per-language hash bounds below which no lmforge tokenizer here trained.

    A document is held out for all of them iff its hash is below the smallest bound.
    """
    dataset, bounds = None, {}
    for tok in tokenizers:
        manifest = read_tokenizer_manifest(os.path.dirname(tok.path)) if tok.lmforge else None  # path: its tokenizer.json
        if not manifest or manifest["data"]["lake"] != lake.root:
            continue
        dataset = dataset or manifest["data"]["dataset"]
        if manifest["data"]["dataset"] != dataset:
            continue
        for lang, sample in manifest["languages"].items():
            bounds[lang] = min(bounds.get(lang, sample["heldout_below"]), sample["heldout_below"], key=lambda h: int(h, 16))
    return dataset, bounds


def gather_texts(
    tokenizers: list[LoadedTokenizer],
    lake: Lake,
    parallel_dir: str | None,
    heldout_bytes: int = DEFAULT_HELDOUT_BYTES,
) -> Texts:
    parallel = read_parallel(parallel_dir) if parallel_dir else {}
    dataset, bounds = heldout_bounds(tokenizers, lake)
    bounds = {lang: b for lang, b in bounds.items() if lang not in parallel}
    heldout = heldout_texts(lake, listed_shards(lake, dataset), bounds, heldout_bytes) if dataset and bounds else {}
    if not parallel and not heldout:
        raise NothingToMeasure(
            "nothing to measure on: give --parallel DIR (aligned <lang>.txt files) or a tokenizer trained on this lake "
            "(its held-out documents are used)"
        )
    return Texts(parallel, heldout, str(Path(parallel_dir).resolve()) if parallel_dir else None, lake.root if heldout else None)


def measure(tokenizer: LoadedTokenizer, texts: Texts, price_per_1m_tokens: float) -> dict:
    """One tokenizer's entry of report.json."""
    started = time.perf_counter()
    parallel = count_languages(tokenizer, {lang: [text] for lang, text in texts.parallel.items()})
    heldout = count_languages(tokenizer, texts.heldout) if texts.heldout else {}
    seconds = time.perf_counter() - started
    return tokenizer_entry(
        tokenizer, parallel, heldout, price_per_1m_tokens=price_per_1m_tokens, encode_seconds=round(seconds, 4)
    )


def assemble(entries: dict[str, dict], texts: Texts, price_per_1m_tokens: float, currency: str = "USD") -> dict:
    return {
        "tokenizers": entries,
        "reference_language": REFERENCE_LANGUAGE,
        "price_per_1m_tokens": price_per_1m_tokens,
        "currency": currency,
        "parallel": texts.parallel_dir,
        "heldout_from": texts.lake,
        "created": utc_now(),
        "lmforge_version": lmforge_version(),
    }


def load_all(specs: list[str], lake: Lake) -> list[LoadedTokenizer]:
    """Load every tokenizer first (a bad one fails the report before any work); names must differ,
    since they key report.json."""
    loaded = [load_tokenizer(resolve_tokenizer(spec, lake)) for spec in specs]
    seen: dict[str, str] = {}
    for tok in loaded:
        if tok.name in seen:
            raise TokenizerLoadError(f"two tokenizers are both named {tok.name!r}: {seen[tok.name]} and {tok.path}")
        seen[tok.name] = tok.path
    return loaded
