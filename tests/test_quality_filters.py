"""Per-language quality rules: non-English text is judged by its own language, not wiped out."""

from __future__ import annotations

from builders import plain
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter
from datatrove.utils.word_tokenizers import WhitespaceTokenizer, load_word_tokenizer

from pipelines.language import LanguageID, lid_model_path, to_flores
from pipelines.quality_filters import PerLanguage, c4_quality, gopher_quality, rules_for


def doc(text: str, lang: str) -> Document:
    return Document(text=text, id="x", metadata={"lang": lang})


def test_japanese_prose_passes_its_own_rules_but_not_the_english_defaults():
    text = plain("ja")
    assert GopherQualityFilter().filter(doc(text, "jpn_Jpan")) != True  # noqa: E712 - English rules reject it
    assert C4QualityFilter(filter_no_terminal_punct=False).filter(doc(text, "jpn_Jpan")) != True  # noqa: E712
    rules = rules_for("jpn_Jpan")
    assert not rules.spaced and "の" in rules.stop_words
    assert gopher_quality(rules).filter(doc(text, "jpn_Jpan")) is True
    assert c4_quality(rules).filter(doc(plain("ja"), "jpn_Jpan")) is True


def test_french_and_german_use_their_own_stop_words():
    for code, lang in (("fr", "fra_Latn"), ("de", "deu_Latn")):
        rules = rules_for(lang)
        assert rules.spaced and len(rules.stop_words) > 100
        assert gopher_quality(rules).filter(doc(plain(code), lang)) is True
    assert rules_for("eng_Latn").stop_words == {"the", "be", "to", "of", "and", "that", "have", "with"}


def test_per_language_filter_routes_each_document_and_keeps_reasons():
    step = PerLanguage(gopher_quality, "gopher_quality")
    assert step.filter(doc(plain("de"), "deu_Latn")) is True
    assert step.filter(doc("Viel zu kurz.", "deu_Latn")) == (False, "gopher_short_doc")
    assert step.filter(doc(plain("ja"), "jpn_Jpan")) is True
    assert set(step._filters) == {"deu_Latn", "jpn_Jpan"}


def test_a_language_without_a_word_tokenizer_falls_back_to_whitespace():
    rules = rules_for("xyz_Latn")
    assert isinstance(rules.words.inner, WhitespaceTokenizer) and rules.stop_words is None
    assert gopher_quality(rules).filter(doc(plain("en"), "xyz_Latn")) is True


def test_language_id_labels_with_flores_codes_offline():
    lid = LanguageID(lid_model_path())
    for code, lang in (("en", "eng_Latn"), ("fr", "fra_Latn"), ("de", "deu_Latn"), ("ja", "jpn_Jpan")):
        d = Document(text=plain(code), id=code)
        assert lid.filter(d) is True and d.metadata["lang"] == lang and d.metadata["lang_score"] > 0.9
    gibberish = Document(text="zx qv 12 ## kk", id="g")
    assert lid.filter(gibberish) == (False, "language_score_below_threshold")
    assert to_flores("zh") == "cmn_Hani" and to_flores("als") == "als_Latn"


def test_shared_tokenizer_splits_exactly_like_datatrove():
    from builders import PROSE

    for code, lang in (("en", "eng_Latn"), ("fr", "fra_Latn"), ("de", "deu_Latn"), ("ja", "jpn_Jpan")):
        text = "\n".join(PROSE[code]) + " (x) -- 3.5% e-mail: a@b.c"
        assert rules_for(lang).words.word_tokenize(text) == load_word_tokenizer(lang).word_tokenize(text)


def test_shared_tokenizer_memory_stays_bounded_with_the_same_words(monkeypatch):
    from builders import PROSE

    monkeypatch.setattr("pipelines.quality_filters.VOCAB_LIMIT", 50)
    words = rules_for("fra_Latn").words
    reference = load_word_tokenizer("fra_Latn")  # the same datatrove object our tokenizer wraps
    for paragraph in PROSE["fr"]:
        ours = words.word_tokenize(paragraph)
        assert words.inner._tokenizer is None  # over the limit: dropped, rebuilt fresh on next use
        assert ours == reference.word_tokenize(paragraph)
