"""The evaluation report (`reports/eval/<name>/`): tables per language, the premium-beside-bits-per-byte
chart, and a summary a reader takes in first. Rendered from the `ModelReport`s alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from model.evaluate import ModelReport
from model.report_page import Chart, Section, Table

PARTS = {"aligned": "aligned text", "heldout": "held-out documents"}


def spearman(x: list[float], y: list[float]) -> float | None:
    """Rank correlation (no ties expected in real figures); None below 3 points."""
    if len(x) < 3:
        return None
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def premium_chart(reports: list[ModelReport], path: Path) -> bool:
    """Per model one row: the tokenizer premium per language, the model's bits per byte, and its bits
    for the same content relative to English, languages in the same order (most expensive first)."""
    shown = [r for r in reports if r.aligned and r.premium]
    if not shown:
        return False
    plt = _plt()
    n = max(len(r.aligned) for r in shown)
    fig, axes = plt.subplots(len(shown), 3, figsize=(14, 0.9 + 0.24 * n * len(shown)), squeeze=False)
    for row, report in zip(axes, shown):
        langs = sorted(report.aligned, key=lambda lang: report.premium.get(lang, 0))
        y = np.arange(len(langs))
        row[0].barh(y, [report.premium.get(lang, 0) for lang in langs], color="C1")
        row[0].axvline(1.0, color="#444", lw=0.8)
        row[0].set(yticks=y, yticklabels=langs, xlabel="tokenizer premium (× English's tokens)", title=f"{report.name}: cost")
        row[1].barh(y, [report.aligned[lang].bits_per_byte for lang in langs], color="C0")
        row[1].set(yticks=y, yticklabels=[], xlabel="bits per byte (lower: knows it better)", title="how well the model knows it")
        row[2].barh(y, [report.content_bits.get(lang, 0) for lang in langs], color="C2")
        row[2].axvline(1.0, color="#444", lw=0.8)
        row[2].set(yticks=y, yticklabels=[], xlabel="bits for the same content (× English's)", title="per sentence")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def bpb_chart(reports: list[ModelReport], part: str, path: Path) -> bool:
    """Bits per byte per language, one bar per model."""
    shown = [r for r in reports if getattr(r, part)]
    if not shown:
        return False
    plt = _plt()
    langs = sorted({lang for r in shown for lang in getattr(r, part)})
    first = getattr(shown[0], part)
    langs.sort(key=lambda lang: first[lang].bits_per_byte if lang in first else math.inf, reverse=True)
    height = 0.8 / len(shown)
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.28 * len(langs) * max(1, len(shown) / 2)))
    y = np.arange(len(langs))
    for i, report in enumerate(shown):
        scores = getattr(report, part)
        values = [scores[lang].bits_per_byte if lang in scores else 0 for lang in langs]
        ax.barh(y + i * height, values, height=height, label=report.name)
    ax.set(yticks=y + height * (len(shown) - 1) / 2, yticklabels=langs, xlabel="bits per byte", title=PARTS[part])
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _task_text(report: ModelReport) -> str:
    t = report.held_out_task
    if "accuracy" in t:
        return f"pair accuracy {t['accuracy']:.3f}, margin {t['margin']:+.3f}"
    if "loss" in t:
        return f"chat loss {t['loss']:.3f} ({t['bpb']:.3f} bits/byte)"
    return "—"


def headline(reports: list[ModelReport]) -> list[str]:
    """Sentences a reader can repeat: best and worst known languages, and whether cost tracks ignorance."""
    lines = []
    for r in reports:
        if not r.aligned:
            continue
        best = min(r.aligned, key=lambda lang: r.aligned[lang].bits_per_byte)
        worst = max(r.aligned, key=lambda lang: r.aligned[lang].bits_per_byte)
        text = (
            f"{r.name}: lowest bits per byte on {best} ({r.aligned[best].bits_per_byte:.2f}), "
            f"highest on {worst} ({r.aligned[worst].bits_per_byte:.2f})."
        )
        if r.content_bits:
            hardest = max(r.content_bits, key=r.content_bits.get)
            text += f" For the same content {hardest} takes the most bits ({r.content_bits[hardest]:.2f}× English's)."
        langs = [lang for lang in r.aligned if lang in r.premium and lang in r.content_bits]
        rho = spearman([r.premium[lang] for lang in langs], [r.content_bits[lang] for lang in langs])
        if rho is not None:
            text += f" The tokenizer premium and the bits for the same content rank languages alike with Spearman ρ = {rho:.2f}."
        lines.append(text)
    return lines


def summary_table(reports: list[ModelReport]) -> Table:
    rows = [
        [r.name, r.objective or "—", f"{r.parameters:,}", r.overall("aligned"), r.overall("heldout"), _task_text(r)]
        for r in reports
    ]
    columns = ["model", "objective", "parameters", "bits/byte, aligned", "bits/byte, held out", "its own held-out data"]
    return Table(columns, rows)


def language_table(reports: list[ModelReport], part: str) -> Table | None:
    """Language × model bits per byte; the premium once when all models share a tokenizer, else per model."""
    shown = [r for r in reports if getattr(r, part)]
    if not shown:
        return None
    langs = sorted({lang for r in shown for lang in getattr(r, part)})
    premiums = [r for r in shown if r.premium] if part == "aligned" else []
    if len({tuple(sorted(r.premium.items())) for r in premiums}) == 1:
        premiums = premiums[:1]
    columns = ["language"] + [f"premium ({r.name})" if len(premiums) > 1 else "premium" for r in premiums]
    columns += [f"{r.name} bits/byte" for r in shown]
    parity = [r for r in shown if r.content_bits] if part == "aligned" else []
    columns += [f"{r.name} bits vs English" for r in parity] + ["bytes"]
    rows = []
    for lang in langs:
        row: list[Any] = [lang] + [r.premium.get(lang) for r in premiums]
        row += [getattr(r, part)[lang].bits_per_byte if lang in getattr(r, part) else None for r in shown]
        row += [r.content_bits.get(lang) for r in parity]
        row.append(max((getattr(r, part)[lang].bytes for r in shown if lang in getattr(r, part)), default=None))
        rows.append(row)
    return Table(columns, rows)


def summary_section(reports: list[ModelReport]) -> Section:
    return Section("Summary", headline(reports), [summary_table(reports)])


def part_section(reports: list[ModelReport], part: str, heading: str, intro: list[str], folder: Path) -> Section | None:
    """One text's section: its description, the bits-per-byte chart and the per-language table."""
    table = language_table(reports, part)
    if table is None:
        return None
    section = Section(heading, intro)
    if part == "aligned" and premium_chart(reports, folder / "premium_and_bpb.png"):
        section.blocks.append(Chart("premium_and_bpb.png", "what a language costs (premium) beside how well the model knows it"))
    if bpb_chart(reports, part, folder / f"{part}_bpb.png"):
        section.blocks.append(Chart(f"{part}_bpb.png", f"bits per byte on {PARTS[part]}"))
    section.blocks.append(table)
    return section


def sections(reports: list[ModelReport], sources: dict[str, Any], folder: Path) -> list[Section]:
    """Write the charts into `folder`; return the report's sections."""
    intros: dict[str, list[str]] = {"aligned": [], "heldout": []}
    if "parallel" in sources:
        p = sources["parallel"]
        intros["aligned"].append(
            f"{p['lines']} lines per language from `{p['folder']}`, each scored as a document after `<|endoftext|>`. "
            "Premium: tokens for the same content relative to English "
            f"({', '.join(sorted({r.premium_source for r in reports if r.premium_source}))}); "
            "bits vs English: the model's bits for the same content relative to English's."
        )
    if "heldout" in sources:
        h = sources["heldout"]
        intros["heldout"].append(
            f"{h['documents']} documents of `{h['dataset']}` in its held-out split (xxh64 of the id below "
            f"{h['val_fraction']}, the tokenize stage's rule), at most {h['max_bytes_per_language']:,} bytes per language."
        )
    headings = {"aligned": "Aligned text, per language", "heldout": "The lake's held-out documents, per language"}
    parts = [part_section(reports, part, headings[part], intros[part], folder) for part in PARTS]
    out = [summary_section(reports), *(section for section in parts if section is not None)]
    notes = [f"{r.name}: {n}" for r in reports for n in r.notes]
    if notes:
        out.append(Section("Notes", notes))
    return out
