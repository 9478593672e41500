"""The tokenizer compression & cost report: files, charts, tables, headline and atomic publishing.

Report dicts are built by hand in the shape `tokenizer_training.evaluate` writes (report.json), so these tests
need no tokenizer and no text; the charts are drawn by the real matplotlib.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import matplotlib.image
import pytest

from tokenizer_training import charts as charts_mod
from tokenizer_training import languages
from tokenizer_training.charts import premium_order, sorted_languages
from tokenizer_training.languages import language_label
from tokenizer_training.report import (
    ReportFiles,
    html_report,
    markdown_report,
    write_report,
)
from tokenizer_training.summary import headline, premium_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# language -> (premium per tokenizer in TOKENIZERS order, UTF-8 bytes per char, written with spaces)
ALIGNED: dict[str, tuple[tuple[float, float, float], float, bool]] = {
    "eng_Latn": ((1.0, 1.0, 1.0), 1.0, True),
    "fra_Latn": ((1.6, 1.2, 1.4), 1.03, True),
    "rus_Cyrl": ((2.5, 1.3, 1.8), 1.85, True),
    "tha_Thai": ((5.0, 1.5, 3.2), 2.9, False),
    "hin_Deva": ((7.5, 1.6, 4.4), 2.7, True),
    "shn_Mymr": ((15.1, 8.1, 10.2), 3.0, True),
}
HELDOUT: dict[str, tuple[float, float, bool]] = {  # language -> (tokens relative to English, bytes/char, spaced)
    "ita_Latn": (1.3, 1.02, True),
    "ukr_Cyrl": (2.0, 1.85, True),
    "cmn_Hani": (1.7, 2.9, False),
}
TOKENIZERS = {  # name -> (kind, trained by lmforge, vocab size, English tokens for the aligned text)
    "r50k_base": ("tiktoken", False, 50257, 24_000),
    "o200k_base": ("tiktoken", False, 200019, 22_000),
    "sample-8k": ("huggingface", True, 8192, 26_000),
}
CHARS, WORDS = 100_000, 17_000


def _stats(tokens: int, bytes_per_char: float, spaced: bool, source: str) -> dict:
    n_bytes = int(CHARS * bytes_per_char)
    return {
        "tokens": tokens,
        "bytes": n_bytes,
        "chars": CHARS,
        "words": WORDS if spaced else 0,
        "documents": 997 if source == "parallel" else 40,
        "spaced": spaced,
        "source": source,
        "bytes_per_token": n_bytes / tokens,
        "chars_per_token": CHARS / tokens,
        "tokens_per_char": tokens / CHARS,
        "tokens_per_word": tokens / WORDS if spaced else None,
        "split_word_share": min(0.9, 0.1 * tokens / WORDS) if spaced else None,
        "cost_per_1m_words": tokens / WORDS if spaced else None,
    }


def make_report(aligned: bool = True, heldout: bool = True, names: dict[str, str] | None = None) -> dict:
    """3 tokenizers x 6 aligned languages (English at 1.0, Thai unspaced) plus 3 held-out lake languages.

    `names` renames tokenizers (old -> new), e.g. to plant hostile names.
    """
    names = names or {}
    tokenizers = {}
    for i, (name, (kind, ours, vocab, english_tokens)) in enumerate(TOKENIZERS.items()):
        languages = {}
        for lang, (premiums, bytes_per_char, spaced) in ALIGNED.items():
            stats = _stats(round(english_tokens * premiums[i]), bytes_per_char, spaced, "parallel")
            stats["premium"] = premiums[i]
            stats["cost_per_1m_english_words"] = stats["tokens"] / WORDS  # price 1.0 per 1M tokens
            languages[lang] = stats
        held = {
            lang: _stats(round(english_tokens * factor), bytes_per_char, spaced, "lake")
            for lang, (factor, bytes_per_char, spaced) in HELDOUT.items()
        }
        tokenizers[names.get(name, name)] = {
            "kind": kind,
            "lmforge": ours,
            "path": f"/lake/tokenizers/{name}",
            "vocab_size": vocab,
            "encode_seconds": 0.8,
            "languages": languages if aligned else {},
            "heldout": held if heldout else {},
        }
    return {
        "tokenizers": tokenizers,
        "reference_language": "eng_Latn",
        "price_per_1m_tokens": 1.0,
        "currency": "USD",
        "parallel": "/data/flores200-dev" if aligned else None,
        "heldout_from": "/lake" if heldout else None,
        "created": "2026-11-27T17:00:00+00:00",
        "lmforge_version": "0.1.0",
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[dict, ReportFiles]:
    report = make_report()
    return report, write_report(report, tmp_path_factory.mktemp("reports") / "tokenizer")


def _leftovers(out: Path) -> list[str]:
    """Siblings of the report folder that write_report may have left (temporary or set-aside folders)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_write_report_writes_every_file_and_json_round_trips(written):
    report, files = written
    assert set(files.charts) == {"premium", "bytes_per_token", "cost", "heldout_bytes_per_token"}
    for path in [files.json, files.markdown, files.html, *files.charts.values()]:
        assert path.is_file() and path.parent == files.out
    assert json.loads(files.json.read_text(encoding="utf-8")) == report
    assert _leftovers(files.out) == []


def test_charts_are_valid_pngs_whose_height_follows_the_language_count(written):
    _, files = written
    shapes = {}
    for key, path in files.charts.items():
        assert path.read_bytes()[:8] == PNG_MAGIC
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[1] >= 800
        shapes[key] = image.shape
    # 6 aligned languages vs 3 held-out ones: the figure grows with the groups it shows.
    assert shapes["premium"][0] > shapes["heldout_bytes_per_token"][0]


def test_sorted_languages_puts_the_worst_value_under_any_tokenizer_first():
    values = {
        "aaa_Latn": {"a": 1.0, "b": 9.0},  # the worst under b decides
        "bbb_Latn": {"a": 5.0, "b": 2.0},
        "ccc_Latn": {"a": 5.0},  # ties with bbb on 5.0: the code breaks it
        "ddd_Latn": {},  # nothing measured: left out
    }
    assert sorted_languages(values, worst="high") == ["aaa_Latn", "bbb_Latn", "ccc_Latn"]
    assert sorted_languages(values, worst="low") == ["aaa_Latn", "bbb_Latn", "ccc_Latn"]
    assert sorted_languages({"x": {"a": 3.0}, "y": {"a": 1.0, "b": 4.0}}, worst="low") == ["y", "x"]


def test_premium_chart_draws_languages_in_premium_order(tmp_path, monkeypatch):
    report = make_report()
    drawn = {}
    original = charts_mod.render_bar_chart

    def spy(chart, path):
        drawn[path.name] = chart
        return original(chart, path)

    monkeypatch.setattr(charts_mod, "render_bar_chart", spy)
    charts_mod.plot_premium(report, tmp_path / "premium.png")
    expected = ["shn_Mymr", "hin_Deva", "tha_Thai", "rus_Cyrl", "fra_Latn", "eng_Latn"]
    assert premium_order(report) == expected
    assert drawn["premium.png"].languages == expected
    assert drawn["premium.png"].series["r50k_base"][0] == 15.1
    assert drawn["premium.png"].parity == 1.0 and drawn["premium.png"].parity_label == "parity with English"


def test_premium_rows_are_flat_and_worst_first():
    rows = premium_rows(make_report())
    assert rows[0] == {"language": "Shan (shn_Mymr)", "code": "shn_Mymr", "r50k_base": 15.1, "o200k_base": 8.1, "sample-8k": 10.2}
    assert rows[-1]["code"] == "eng_Latn" and rows[-1]["r50k_base"] == 1.0
    assert [row["code"] for row in rows] == premium_order(make_report())


def test_markdown_tables_put_the_worst_language_first_and_english_at_parity(written):
    _, files = written
    text = files.markdown.read_text(encoding="utf-8")
    premium_section = text.split("## Premium vs English")[1].split("\n## ")[0]
    table_rows = [line for line in premium_section.splitlines() if line.startswith("| ") and "---" not in line]
    assert table_rows[0] == "| Language | r50k_base | o200k_base | sample-8k |"
    assert table_rows[1] == "| Shan (shn_Mymr) | 15.10 | 8.10 | 10.20 |"
    assert table_rows[-1] == "| English (eng_Latn) | 1.00 | 1.00 | 1.00 |"
    thai = [line for line in text.splitlines() if line.startswith("| Thai (tha_Thai) |") and "unspaced" in line]
    assert len(thai) == 3  # one compression table per tokenizer
    assert thai[0].split(" | ")[3] == "— (unspaced)"
    for png in ("premium.png", "bytes_per_token.png", "cost.png", "heldout_bytes_per_token.png"):
        assert f"]({png})" in text
    assert "/data/flores200-dev" in text and "$1.00 per 1M tokens" in text and "Petrov et al. 2023" in text


def test_headline_names_the_worst_language_and_compares_tokenizers():
    sentences = headline(make_report())
    assert 2 <= len(sentences) <= 5
    assert sentences[0] == ("With r50k_base, 4 of 5 languages pay ≥ 2× English; the most expensive is Shan (shn_Mymr) at 15.1×.")
    # Medians over the five non-English languages: r50k_base 5.0, o200k_base 1.5.
    assert "o200k_base cuts the median premium by 70% vs r50k_base (1.5× vs 5.0×)." in sentences


def test_headline_says_halves_when_the_median_premium_halves():
    report = make_report(heldout=False)
    for lang, premium in {"fra_Latn": 1.2, "rus_Cyrl": 2.0, "tha_Thai": 2.5, "hin_Deva": 3.0, "shn_Mymr": 4.0}.items():
        report["tokenizers"]["o200k_base"]["languages"][lang]["premium"] = premium
    assert "o200k_base halves the median premium vs r50k_base (2.5× vs 5.0×)." in headline(report)


def test_html_is_self_contained_and_escapes_user_strings(tmp_path):
    hostile = "<script>alert('x')</script>"
    report = make_report(names={"sample-8k": hostile, "o200k_base": "cheap$model$v2"})
    report["tokenizers"][hostile]["path"] = '/lake/"><img src=x onerror=alert(1)>'
    files = write_report(report, tmp_path / "report")
    page = files.html.read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert page.count('src="data:image/png;base64,') == len(files.charts) == 4
    markdown = files.markdown.read_text(encoding="utf-8")
    assert "<script" not in markdown and "&lt;script>" in markdown


def test_html_report_shows_headline_first_and_colours_premium_cells():
    report = make_report()
    page = html_report(report)
    assert page.index("the most expensive is Shan (shn_Mymr)") < page.index("<table")
    assert '<td class="bad">15.10</td>' in page and '<td class="good">1.00</td>' in page
    assert '<td class="fair">1.60</td>' in page


def test_heldout_only_report_draws_only_the_heldout_chart(tmp_path):
    report = make_report(aligned=False)
    files = write_report(report, tmp_path / "report")
    assert set(files.charts) == {"heldout_bytes_per_token"}
    assert sorted(p.name for p in files.out.glob("*.png")) == ["heldout_bytes_per_token.png"]
    text = files.markdown.read_text(encoding="utf-8")
    assert "## Premium vs English" not in text and "## Held-out lake text: sample-8k" in text
    sentences = headline(report)
    assert sentences[0].startswith("No aligned (parallel) text was measured")
    assert any("sample-8k" in s and "bytes/token" in s for s in sentences)


def test_aligned_only_report_has_no_heldout_chart(tmp_path):
    files = write_report(make_report(heldout=False), tmp_path / "report")
    assert set(files.charts) == {"premium", "bytes_per_token", "cost"}
    assert "Held-out lake text" not in files.markdown.read_text(encoding="utf-8")


def test_write_report_replaces_an_existing_report_completely(tmp_path):
    out = tmp_path / "report"
    write_report(make_report(), out)
    (out / "stale.txt").write_text("from an older run")
    newer = make_report(heldout=False)
    files = write_report(newer, out)
    assert not (out / "stale.txt").exists() and not (out / "heldout_bytes_per_token.png").exists()
    assert json.loads(files.json.read_text(encoding="utf-8")) == newer
    assert _leftovers(out) == []


def test_a_failure_mid_way_leaves_the_old_report_intact(tmp_path, monkeypatch):
    out = tmp_path / "report"
    write_report(make_report(), out)
    before = _snapshot(out)

    def broken_chart(report, path):
        path.write_bytes(b"half a png")
        raise RuntimeError("disk full")

    monkeypatch.setattr(charts_mod, "plot_cost", broken_chart)
    changed = copy.deepcopy(make_report())
    changed["price_per_1m_tokens"] = 9.0
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(changed, out)
    assert _snapshot(out) == before
    assert _leftovers(out) == []


def test_a_failure_on_the_first_write_leaves_nothing_behind(tmp_path, monkeypatch):
    from tokenizer_training import report as report_mod

    monkeypatch.setattr(report_mod, "markdown_report", lambda report, charts=None: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_report(make_report(), tmp_path / "report")
    assert list(tmp_path.iterdir()) == []


def test_language_label_uses_english_names_and_keeps_unknown_codes():
    assert language_label("tha_Thai") == "Thai (tha_Thai)"
    assert language_label("zho_Hans") == "Chinese (Simplified) (zho_Hans)"
    assert language_label("xyz_Abcd") == "xyz_Abcd"
    assert len({code for code in languages.LANGUAGE_NAMES if code in ALIGNED or code.endswith("_Latn")}) > 20


def test_markdown_report_without_charts_has_no_image_links():
    text = markdown_report(make_report())
    assert "![" not in text and text.startswith("# Tokenizer compression & cost report\n")


def test_a_failed_swap_puts_the_old_report_back(tmp_path, monkeypatch):
    out = tmp_path / "report"
    write_report(make_report(), out)
    before = _snapshot(out)
    import os

    rename = os.rename

    def failing_rename(source, target):
        if str(source).endswith(".tmp"):  # the finished new report moving into place
            raise OSError("rename refused")
        return rename(source, target)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="rename refused"):
        write_report(make_report(heldout=False), out)
    assert _snapshot(out) == before
    assert _leftovers(out) == []
