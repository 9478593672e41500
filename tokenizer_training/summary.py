"""What a reader sees first: the headline sentences and the premium table (the Prefect artifact, the CLI).

Read from the report dict alone, like everything that renders the report.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from tokenizer_training.charts import metric_table, sorted_languages, times_label, tokenizers_of
from tokenizer_training.languages import language_label

PARITY_GREEN = 1.25
"""Premium up to which a language is shown as paying about what English pays."""
PARITY_AMBER = 2.0
"""Premium above which a language is shown as paying a lot more than English (red)."""


def reference_language(report: dict) -> str:
    return report.get("reference_language") or "eng_Latn"


def premium_rows(report: dict) -> list[dict]:
    """One row per aligned language, worst premium first: {"language", "code", <tokenizer>: premium (2 decimals)}.

    Flat dicts so that a Prefect table artifact (`create_table_artifact`) shows them as they are; a tokenizer
    without a figure for the language gets None.
    """
    table = metric_table(report, "languages", "premium")
    names = list(tokenizers_of(report))
    rows = []
    for lang in sorted_languages(table, worst="high"):
        row: dict[str, Any] = {"language": language_label(lang), "code": lang}
        for name in names:
            value = table[lang].get(name)
            row[name] = None if value is None else round(value, 2)
        rows.append(row)
    return rows


def _premiums_without_reference(report: dict, name: str) -> dict[str, float]:
    reference = reference_language(report)
    languages = tokenizers_of(report)[name].get("languages") or {}
    return {
        lang: float(stats["premium"])
        for lang, stats in languages.items()
        if lang != reference and stats.get("premium") is not None and math.isfinite(stats["premium"])
    }


def _tokenizer_sentence(name: str, premiums: dict[str, float]) -> str:
    """'With X, n of m languages pay ≥ 2× English; the most expensive is L at p×.'"""
    worst_lang = max(premiums, key=lambda lang: (premiums[lang], lang))
    expensive = sum(1 for p in premiums.values() if p >= PARITY_AMBER)
    if expensive:
        share = f"{expensive} of {len(premiums)} languages pay ≥ 2× English"
    else:
        share = f"none of {len(premiums)} languages pays 2× English or more"
    return f"With {name}, {share}; the most expensive is {language_label(worst_lang)} at {times_label(premiums[worst_lang])}."


def _comparison_sentence(medians: dict[str, float]) -> str:
    """Best vs worst tokenizer by median premium, in words a reader can repeat ("halves", "cuts by 30%")."""
    best = min(medians, key=lambda n: (medians[n], n))
    worst = max(medians, key=lambda n: (medians[n], n))
    b, w = medians[best], medians[worst]
    if w - b < 0.05:
        return f"All tokenizers have about the same median premium ({times_label(b)})."
    ratio = b / w
    if 0.47 <= ratio <= 0.53:
        verb = "halves the median premium"
    else:
        verb = f"cuts the median premium by {100 * (1 - ratio):.0f}%"
    return f"{best} {verb} vs {worst} ({times_label(b)} vs {times_label(w)})."


def _median_sentence(premiums: dict[str, float]) -> str:
    """For a single tokenizer: the typical premium and the language closest to English."""
    best = min(premiums, key=lambda lang: (premiums[lang], lang))
    return (
        f"Its median premium over {len(premiums)} languages is {times_label(statistics.median(premiums.values()))}; "
        f"the closest to English is {language_label(best)} at {times_label(premiums[best])}."
    )


def _heldout_sentence(report: dict, name: str, only_heldout: bool) -> str | None:
    heldout = tokenizers_of(report)[name].get("heldout") or {}
    bpt = {lang: s["bytes_per_token"] for lang, s in heldout.items() if s.get("bytes_per_token")}
    if not bpt:
        return None
    low = min(bpt, key=lambda lang: (bpt[lang], lang))
    high = max(bpt, key=lambda lang: (bpt[lang], lang))
    where = "On the lake's held-out text" if only_heldout else "On the lake's held-out text (languages without aligned text)"
    if low == high:
        return f"{where}, {name} compresses {language_label(low)} to {bpt[low]:.2f} bytes/token."
    return (
        f"{where}, {name} ranges from {bpt[low]:.2f} bytes/token for {language_label(low)} "
        f"to {bpt[high]:.2f} for {language_label(high)} (higher is better)."
    )


def headline(report: dict) -> list[str]:
    """2-5 plain sentences that answer "which languages pay how much more than English, with which tokenizer".

    One sentence per tokenizer (at most three: the worst and best by median premium and lmforge's own), then
    the best-vs-worst comparison of median premiums, then held-out compression while there is room.
    """
    tokenizers = tokenizers_of(report)
    if not tokenizers:
        return ["This report holds no tokenizers.", "Run the evaluation with at least one tokenizer to fill it."]
    premiums = {name: p for name in tokenizers if (p := _premiums_without_reference(report, name))}
    sentences: list[str] = []
    if premiums:
        medians = {name: statistics.median(p.values()) for name, p in premiums.items()}
        by_median = sorted(medians, key=lambda n: (-medians[n], n))
        featured = [by_median[0], by_median[-1]] + [n for n in by_median if tokenizers[n].get("lmforge")]
        featured = list(dict.fromkeys(featured))[:3]
        sentences += [_tokenizer_sentence(name, premiums[name]) for name in by_median if name in featured]
        if len(medians) > 1:
            sentences.append(_comparison_sentence(medians))
        else:
            sentences.append(_median_sentence(premiums[by_median[0]]))
    else:
        sentences.append(
            "No aligned (parallel) text was measured, so there are no premiums vs English; "
            "the held-out figures compare compression only."
        )
    ours_first = sorted(tokenizers, key=lambda n: not tokenizers[n].get("lmforge"))  # held-out text is the lake's
    for name in ours_first:
        if len(sentences) >= 5:
            break
        sentence = _heldout_sentence(report, name, only_heldout=not premiums)
        if sentence:
            sentences.append(sentence)
    if len(sentences) < 2:
        sentences.append("No per-language figures were recorded; check that the evaluation found any text.")
    return sentences[:5]
