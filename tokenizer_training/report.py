"""Render the per-language tokenizer compression & cost report: report.json, report.md, report.html and PNG charts.

The input is the dict that `tokenizer_training.evaluate` writes (report.json): for each tokenizer, per-language
figures on aligned (parallel, FLORES-style) text under ``"languages"`` and on the lake's own held-out documents
under ``"heldout"``. This module only reads that dict; it never tokenizes anything, so it renders any saved
report again without the tokenizers or the text.

The one question the report answers at a glance: which languages pay how much more than English, with which
tokenizer. The *premium* (Petrov et al. 2023) is the number of tokens a language needs for the same content,
relative to English; it drives cost, latency and how much fits in a context window.

The charts (and the figures per language they share with the tables) are in `charts`.

`write_report` publishes the folder atomically: everything is written into a temporary sibling folder that
then takes the place of the old one, so a reader sees either the old report or the whole new one.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import jinja2
from fsspec.implementations.local import LocalFileSystem

from pipelines.lake import publish_folder
from tokenizer_training.charts import (
    CHART_FILES,
    metric_table,
    money,
    price_text,
    sorted_languages,
    tokenizers_of,
    write_charts,
)
from tokenizer_training.languages import language_label
from tokenizer_training.summary import PARITY_AMBER, PARITY_GREEN, headline, premium_rows, reference_language


@dataclass(frozen=True)
class ReportFiles:
    """Where `write_report` put each file (the published folder, not the temporary one)."""

    out: Path
    json: Path
    markdown: Path
    html: Path
    charts: dict[str, Path]




def _fixed(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def _premium_class(value: float | None) -> str:
    """CSS class of a premium cell, judged on the value as shown (2 decimals), so "2.00" is never red."""
    if value is None:
        return ""
    value = round(value, 2)
    if value <= PARITY_GREEN:
        return "good"
    return "fair" if value <= PARITY_AMBER else "bad"


@dataclass(frozen=True)
class Cell:
    """A table cell: its text and, for HTML, a CSS class (premium colour code)."""

    text: str
    css: str = ""


@dataclass(frozen=True)
class Table:
    title: str
    note: str
    header: list[str]
    rows: list[list[Cell]]
    numeric: bool = True
    """Right-align every column but the first."""


@dataclass(frozen=True)
class ChartView:
    key: str
    caption: str


@dataclass(frozen=True)
class ReportView:
    """Everything both renderers show, in reading order; markdown and HTML differ only in markup."""

    title: str
    headline: list[str]
    how_to_read: list[str]
    charts: list[ChartView]
    tables: list[Table]
    sources: list[tuple[str, str]]
    tokenizers: Table


CHART_CAPTIONS: dict[str, str] = {
    "premium": "Premium vs English on aligned text (worst language at the top)",
    "cost": "Cost of the same content, per 1M English words",
    "bytes_per_token": "Bytes per token on aligned text (higher is better)",
    "heldout_bytes_per_token": "Bytes per token on the lake's held-out text (higher is better)",
}


def _how_to_read(report: dict) -> list[str]:
    return [
        "Premium: tokens a language needs for the same content (aligned, translated sentences) relative to English "
        "(Petrov et al. 2023, “Language Model Tokenizers Introduce Unfairness Between Languages”). "
        "2.00 means twice the tokens: twice the cost and latency, half as much text in a context window. "
        "Green ≤ 1.25, amber ≤ 2, red > 2.",
        "Bytes/token: UTF-8 bytes per token; higher is better compression. Most non-Latin scripts take 2-3 bytes "
        "per character, so compare chars/token across scripts.",
        "Tokens/word (fertility): tokens per whitespace-separated word, with the share of words split into two or "
        "more tokens. Not shown for scripts written without spaces (Chinese, Japanese, Thai, Khmer, Burmese, "
        "Tibetan…), where chars/token is the figure to read.",
        f"Cost: what the same content costs at {price_text(report)}, counted per 1M English words' worth of text "
        "so that every language is comparable; “cost / 1M words” in the compression tables counts the language's "
        "own words instead.",
    ]


def _premium_table(report: dict) -> Table | None:
    rows = premium_rows(report)
    names = [name for name in tokenizers_of(report) if any(row.get(name) is not None for row in rows)]
    if not rows:
        return None
    body = [
        [Cell(row["language"])] + [Cell(_fixed(row.get(name)), _premium_class(row.get(name))) for name in names] for row in rows
    ]
    return Table(
        title="Premium vs English (aligned text)",
        note=f"Tokens for the same content relative to {language_label(reference_language(report))} = 1.00; worst first.",
        header=["Language", *names],
        rows=body,
    )


def _cost_table(report: dict) -> Table | None:
    table = metric_table(report, "languages", "cost_per_1m_english_words")
    languages = sorted_languages(table, worst="high")
    if not languages:
        return None
    names = [name for name in tokenizers_of(report) if any(name in table[lang] for lang in languages)]
    premiums = metric_table(report, "languages", "premium")
    currency = report.get("currency", "USD")
    body = [
        [Cell(language_label(lang))]
        + [Cell(money(table[lang].get(name), currency), _premium_class(premiums.get(lang, {}).get(name))) for name in names]
        for lang in languages
    ]
    return Table(
        title="Cost of the same content (aligned text)",
        note=f"Cost of the content of 1M English words in each language, at {price_text(report)}; most expensive first.",
        header=["Language", *names],
        rows=body,
    )


def _compression_table(report: dict, name: str, section: str) -> Table | None:
    """Per-language compression for one tokenizer, worst bytes/token first."""
    stats = tokenizers_of(report)[name].get(section) or {}
    if not stats:
        return None
    currency = report.get("currency", "USD")
    heldout = section == "heldout"
    header = ["Language", "bytes/token", "chars/token", "tokens/word", "split words", "cost / 1M words"]
    if heldout:
        header.append("documents")
    rows = []
    for lang in sorted(stats, key=lambda lang: (stats[lang].get("bytes_per_token") or 0.0, lang)):
        s = stats[lang]
        spaced = s.get("spaced", True) and s.get("tokens_per_word") is not None
        share = s.get("split_word_share")
        row = [
            Cell(language_label(lang)),
            Cell(_fixed(s.get("bytes_per_token"))),
            Cell(_fixed(s.get("chars_per_token"))),
            Cell(_fixed(s.get("tokens_per_word")) if spaced else "— (unspaced)"),
            Cell("—" if share is None else f"{100 * share:.1f}%"),
            Cell(money(s.get("cost_per_1m_words"), currency)),
        ]
        if heldout:
            row.append(Cell(f"{s.get('documents', 0):,}"))
        rows.append(row)
    if heldout:
        title, note = f"Held-out lake text: {name}", "The lake's own held-out documents, for languages without aligned text."
    else:
        title, note = f"Compression on aligned text: {name}", "Worst bytes/token first."
    return Table(title=title, note=note, header=header, rows=rows)


def _tokenizers_table(report: dict) -> Table:
    rows = [
        [
            Cell(name),
            Cell(str(tok.get("kind", ""))),
            Cell("yes" if tok.get("lmforge") else "no"),
            Cell(f"{tok['vocab_size']:,}" if tok.get("vocab_size") is not None else "—"),
            Cell(_fixed(tok.get("encode_seconds"), 1, " s")),
            Cell(str(tok.get("path", ""))),
        ]
        for name, tok in tokenizers_of(report).items()
    ]
    header = ["Tokenizer", "kind", "trained by lmforge", "vocab size", "encode time", "path"]
    return Table(title="Tokenizers", note="", header=header, rows=rows, numeric=False)


def _sources(report: dict) -> list[tuple[str, str]]:
    return [
        ("Aligned text", str(report.get("parallel") or "none (no parallel folder given)")),
        ("Held-out text", str(report.get("heldout_from") or "none")),
        ("Reference language", language_label(reference_language(report))),
        ("Price", f"{price_text(report)} ({report.get('currency', 'USD')})"),
        ("Created", str(report.get("created", "unknown"))),
        ("lmforge version", str(report.get("lmforge_version", "unknown"))),
    ]


def report_view(report: dict, charts: Iterable[str] = ()) -> ReportView:
    """The report's content in reading order: headline, how to read, charts (those in `charts`), tables, sources."""
    names = list(tokenizers_of(report))
    tables = [_premium_table(report), _cost_table(report)]
    tables += [_compression_table(report, name, "languages") for name in names]
    tables += [_compression_table(report, name, "heldout") for name in names]
    keys = [key for key in CHART_FILES if key in set(charts)]
    return ReportView(
        title="Tokenizer compression & cost report",
        headline=headline(report),
        how_to_read=_how_to_read(report),
        charts=[ChartView(key, CHART_CAPTIONS[key]) for key in keys],
        tables=[t for t in tables if t is not None],
        sources=_sources(report),
        tokenizers=_tokenizers_table(report),
    )


def _md(text: str) -> str:
    """Markdown-safe text: no '<' to open raw HTML (renderers pass it through), no bare '|' to break a table."""
    return text.replace("<", "&lt;").replace("|", r"\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    align = ["---"] + [("---:" if table.numeric else "---")] * (len(table.header) - 1)
    lines = [f"## {_md(table.title)}", ""]
    if table.note:
        lines += [_md(table.note), ""]
    lines.append("| " + " | ".join(_md(h) for h in table.header) + " |")
    lines.append("| " + " | ".join(align) + " |")
    lines += ["| " + " | ".join(_md(c.text) for c in row) + " |" for row in table.rows]
    return lines + [""]


def markdown_report(report: dict, charts: dict[str, str] | None = None) -> str:
    """report.md: headline, how to read, charts (`charts`: key -> relative PNG filename), tables, sources."""
    charts = charts or {}
    view = report_view(report, charts)
    lines = [f"# {view.title}", ""]
    lines += [f"- {_md(s)}" for s in view.headline] + ["", "## How to read this", ""]
    lines += [f"- {_md(s)}" for s in view.how_to_read] + [""]
    for chart in view.charts:
        lines += [f"![{_md(chart.caption)}]({charts[chart.key]})", ""]
    for table in view.tables:
        lines += _md_table(table)
    lines += ["## Sources", ""] + [f"- {_md(label)}: {_md(value)}" for label, value in view.sources] + [""]
    lines += _md_table(view.tokenizers)
    return "\n".join(lines).rstrip("\n") + "\n"


_HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ view.title }}</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f; margin: 0 auto;
         max-width: 1120px; padding: 24px; line-height: 1.45; }
  h1 { margin-bottom: 8px; }
  h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
  .headline { background: #f3f6fb; border-left: 4px solid #3b6fb6; padding: 12px 20px; font-size: 1.08em; }
  .headline li { margin: 4px 0; }
  .how { color: #444; font-size: 0.93em; }
  figure { margin: 24px 0; }
  figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
  figcaption { color: #555; font-size: 0.9em; }
  table { border-collapse: collapse; margin: 8px 0 4px; font-size: 0.92em; }
  th, td { border: 1px solid #ddd; padding: 4px 10px; }
  th { background: #f5f5f7; text-align: left; }
  table.numeric td:not(:first-child), table.numeric th:not(:first-child) { text-align: right;
         font-variant-numeric: tabular-nums; }
  td.good { background: #d8f0d8; }
  td.fair { background: #fdebc0; }
  td.bad { background: #f6cccc; }
  .note { color: #555; font-size: 0.9em; margin: 4px 0; }
  .key span { display: inline-block; padding: 0 8px; margin-right: 6px; border-radius: 3px; }
  .sources td:first-child { font-weight: 600; }
</style>
</head>
<body>
{%- macro render_table(table) %}
<h2>{{ table.title }}</h2>
{%- if table.note %}
<p class="note">{{ table.note }}</p>
{%- endif %}
<table{% if table.numeric %} class="numeric"{% endif %}>
  <tr>{% for h in table.header %}<th>{{ h }}</th>{% endfor %}</tr>
{%- for row in table.rows %}
  <tr>{% for cell in row %}<td{% if cell.css %} class="{{ cell.css }}"{% endif %}>{{ cell.text }}</td>{% endfor %}</tr>
{%- endfor %}
</table>
{%- endmacro %}
<h1>{{ view.title }}</h1>
<ul class="headline">
{%- for sentence in view.headline %}
  <li>{{ sentence }}</li>
{%- endfor %}
</ul>
<details class="how" open>
<summary>How to read this</summary>
<ul>
{%- for item in view.how_to_read %}
  <li>{{ item }}</li>
{%- endfor %}
</ul>
<p class="key">Premium colours: <span style="background:#d8f0d8">≤ 1.25</span>
<span style="background:#fdebc0">≤ 2</span><span style="background:#f6cccc">&gt; 2</span></p>
</details>
{%- for chart in view.charts %}
<figure>
  <img src="data:image/png;base64,{{ images[chart.key] }}" alt="{{ chart.caption }}">
  <figcaption>{{ chart.caption }}</figcaption>
</figure>
{%- endfor %}
{%- for table in view.tables %}
{{ render_table(table) }}
{%- endfor %}
<h2>Sources</h2>
<table class="sources">
{%- for label, value in view.sources %}
  <tr><td>{{ label }}</td><td>{{ value }}</td></tr>
{%- endfor %}
</table>
{{ render_table(view.tokenizers) }}
</body>
</html>
"""


def html_report(report: dict, charts: dict[str, Path] | None = None) -> str:
    """report.html: one self-contained file (inline CSS, charts as base64 data URIs, no external references).

    Every string is escaped by jinja2's autoescape (the same escaping as html.escape): tokenizer names and
    paths come from users.
    """
    charts = charts or {}
    view = report_view(report, charts)
    images = {key: base64.b64encode(Path(path).read_bytes()).decode("ascii") for key, path in charts.items()}
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(_HTML_TEMPLATE).render(view=view, images=images)


def _render_into(report: dict, folder: Path) -> dict[str, Path]:
    """Write every file of the report into `folder` (which must exist); chart key -> PNG path in `folder`."""
    (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    charts = write_charts(report, folder)
    names = {key: path.name for key, path in charts.items()}
    (folder / "report.md").write_text(markdown_report(report, names), encoding="utf-8")
    (folder / "report.html").write_text(html_report(report, charts), encoding="utf-8")
    return charts


def write_report(report: dict, out_dir: str | os.PathLike) -> ReportFiles:
    """Write report.json, report.md, report.html and the charts into `out_dir`, atomically.

    Everything is rendered into a temporary folder first and then published whole
    (`pipelines.lake.publish_folder`): on any error the previous report stays as it was.
    """
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder; move it away or choose another report folder")
    with tempfile.TemporaryDirectory(prefix="lmforge-report-") as tmp:
        os.chmod(tmp, 0o755)  # the temporary folder is private; the published one is not
        charts = _render_into(report, Path(tmp))
        publish_folder(LocalFileSystem(), tmp, str(out))
    return ReportFiles(
        out=out,
        json=out / "report.json",
        markdown=out / "report.md",
        html=out / "report.html",
        charts={key: out / path.name for key, path in charts.items()},
    )
