"""Per-language quality rules: non-English text is judged by its own language, not wiped out."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from builders import plain
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter
from datatrove.utils.text import split_into_sentences
from datatrove.utils.word_tokenizers import WhitespaceTokenizer, load_word_tokenizer

from pipelines.ingest.language import LanguageID, lid_model_path, to_flores
from pipelines.ingest.quality_filters import PerLanguage, c4_quality, gopher_quality, rules_for


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

    monkeypatch.setattr("pipelines.common.words.VOCAB_LIMIT", 50)
    monkeypatch.setattr("pipelines.ingest.quality_filters.VOCAB_LIMIT", 50)
    words = rules_for("fra_Latn").words
    reference = load_word_tokenizer("fra_Latn")  # the same datatrove object our tokenizer wraps
    for paragraph in [p.upper() for p in PROSE["fr"]]:  # words not seen yet
        ours = words.word_tokenize(paragraph)
        nlp = words.inner._tokenizer
        assert nlp is None or len(nlp.vocab) <= 50  # over the limit: dropped, rebuilt fresh on next use
        assert len(words._chunks._chunks) + len(words._chunks._regions) <= 50
        assert ours == reference.word_tokenize(paragraph)


# ---------------------------------------------------------------- same decisions as datatrove, faster

HANDBOOK = Path("/usr/share/doc/debian-handbook/html")
REFERENCE = Path("/usr/share/debian-reference")
FLORES = Path("/work/shared/data/flores200-dev")
# handbook / debian-reference pages (language folder or suffix) and FLORES files, by FLORES code
REAL_TEXT = {
    "eng_Latn": ("en-US", "en", "eng_Latn"),
    "deu_Latn": ("de-DE", "de", "deu_Latn"),
    "fra_Latn": ("fr-FR", "fr", "fra_Latn"),
    "spa_Latn": ("es-ES", "es", "spa_Latn"),
    "rus_Cyrl": ("ru-RU", None, "rus_Cyrl"),
    "ind_Latn": ("id-ID", None, None),
    "arb_Arab": ("ar-MA", None, "arb_Arab"),
    "jpn_Jpan": ("ja-JP", "ja", "jpn_Jpan"),
    "cmn_Hani": ("zh-CN", "zh-cn", "zho_Hans"),
    "vie_Latn": ("vi-VN", None, "vie_Latn"),  # no spaCy tokenizer: datatrove's whitespace fallback
}
PAGES = ("sect.kali.html", "sect.tails.html")  # short handbook sections


@functools.cache
def real_documents() -> tuple[tuple[str, str], ...]:
    """(lang, text) pairs: handbook and debian-reference pages through our extraction, FLORES paragraphs."""
    from pipelines.ingest.resiliparse_extract import Resiliparse

    extract = Resiliparse()
    docs = []
    for lang, (folder, suffix, flores) in REAL_TEXT.items():
        pages = [HANDBOOK / folder / page for page in PAGES]
        if suffix:
            pages.append(REFERENCE / f"ch08.{suffix}.html")
        for page in pages:
            if page.is_file():
                docs.append((lang, extract.extract(page.read_text(errors="replace"))))
        if flores and (FLORES / f"{flores}.txt").is_file():
            lines = (FLORES / f"{flores}.txt").read_text().splitlines()[:48]
            docs += [(lang, "\n".join(lines[i : i + 12])) for i in range(0, len(lines), 12)]
    return tuple((lang, text) for lang, text in docs if text)


ADVERSARIAL_LINES = [
    "e.g . and e.g. and i.e .x :( :-) ( : ) :) :P :-P (: ;) <3 </3 o.O O.o ._. -_- ^_^ :'( 10a.m . 5 p.m. a.m .",
    "Dr. iur. Dr.  iur. Dr.\tiur. EE. UU. EE.UU. EE.  UU. в н.в. в  н.в. ب. م ب.م .ق foo .ق",
    "One. Two! Three? four . five .six ...seven… „quoted.“ (parens.) [x.] 'single.' U.S. e.g. etc.",
    "tabs\tand  double  spaces. Then\u00a0nbsp. And\u3000ideographic. End.\x1c sep.\x1fmore",
    "a . b . c .. d ... e !? f ?! g 。h ！i ？ j ։ k ؟ l ۔ m । n",
    "www.example.com/path?x=1. mail@example.org. $3.50. 3.5% 1,000.00 -- (x) 'quote' \"dq\".",
]


def adversarial_documents() -> list[tuple[str, str]]:
    text = "\n".join(ADVERSARIAL_LINES)
    langs = ("eng_Latn", "spa_Latn", "rus_Cyrl", "ind_Latn", "arb_Arab", "fas_Arab", "fra_Latn", "deu_Latn")
    return [(lang, text) for lang in langs] + [(lang, "\n\n".join([text] * 3)) for lang in langs[:2]]


def test_shared_tokenizer_words_and_sentence_counts_match_datatrove():
    compared = lines = 0
    for lang, text in real_documents() + tuple(adversarial_documents()):
        ours, theirs = rules_for(lang).words, rules_for(lang).words.inner  # theirs: datatrove's own tokenizer
        assert ours._split(text) == theirs.word_tokenize(text), lang
        for line in text.splitlines() + ["", "   ", "Dr. iur.", "a .", ". b"]:
            line = line.strip()
            assert ours.count_sentences(line) == len(split_into_sentences(line, theirs)), (lang, line)
            lines += 1
        compared += 1
    assert compared > 40 and lines > 500


def test_chunk_memo_retokenizes_special_cases_that_span_two_chunks():
    words = rules_for("spa_Latn").words
    assert "EE. UU." in words.inner.word_tokenize("los EE. UU. hoy")  # spaCy's special case over a space
    assert words.word_tokenize("los EE. UU. hoy") == words.inner.word_tokenize("los EE. UU. hoy")
    assert words.word_tokenize("los EE.\tUU. hoy") == words.inner.word_tokenize("los EE.\tUU. hoy")


def test_text_that_breaks_spacy_takes_datatroves_own_path():
    words = rules_for("eng_Latn").words
    for text in ("x IS_ALPHA y. Next one.", "IS_ALPHA"):  # datatrove's answer itself depends on spaCy's state
        assert isinstance(words._split(text), list) and words.count_sentences(text) >= 1
    text = "plain words. After it."  # and nothing is left broken
    assert words._split(text) == words.inner.word_tokenize(text)
    assert words.count_sentences(text) == len(split_into_sentences(text, words.inner)) == 2


def _datatrove_ngrams(words: list[str]) -> list[int | None]:
    from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate, find_top_duplicate, get_n_grams

    top = [find_top_duplicate(get_n_grams(words, n)) if len(words) >= n else None for n in (2, 3, 4)]
    return top + [find_all_duplicate(words, n) for n in range(5, 11)]


def _our_ngrams(words: list[str]) -> list[int | None]:
    from pipelines.ingest.repetition import NgramStats

    stats = NgramStats(words)
    return [stats.top_duplicate(n) if len(words) >= n else None for n in (2, 3, 4)] + [
        stats.all_duplicate(n) for n in range(5, 11)
    ]


def test_ngram_statistics_equal_datatrove_on_real_and_adversarial_words():
    import random

    cases = [rules_for(lang).words.word_tokenize(text) for lang, text in real_documents()]
    cases += [
        [],
        ["one"],
        ["a", "b"] * 3,
        ["ab", "c", "x", "y", "z", "a", "bc", "x", "y", "z"] * 2,  # "" joins collide: abcxyz twice per copy
        ["a", "bc", "d", "e", "f", "ab", "c", "d", "e", "f", "abc", "def", "g", "h", "i", "ab", "cd", "e", "f", "g"],
        ["x", "y", "p", "q", "x", "y", "p", "q", "long-word", "w"],  # most_common tie: first 2-gram wins
        ["b", "b", "aaa", "aaa", "b", "b", "aaa", "aaa"],  # ties between n-grams of different lengths
        ["w"] * 40,
        ["the", "cat", "sat", "on", "the", "mat"] * 7 + ["the", "cat"],
    ]
    rng = random.Random(7)
    for _ in range(300):  # short words from a tiny alphabet: "" collisions and hash-class merges everywhere
        cases.append(["".join(rng.choice("ab") for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(0, 60))])
    for words in cases:
        assert _our_ngrams(words) == _datatrove_ngrams(words), words[:20]


def test_fast_gopher_repetition_gives_datatrove_verdicts():
    from datatrove.pipeline.filters import GopherRepetitionFilter

    from pipelines.ingest.repetition import FastGopherRepetition

    texts = [(lang, text) for lang, text in real_documents()] + adversarial_documents()
    texts += [
        ("eng_Latn", ""),
        ("eng_Latn", "same line\n" * 10 + "other line"),
        ("eng_Latn", "para one\n\npara one\n\npara two"),
        ("eng_Latn", "buy now cheap " * 30),
        ("eng_Latn", "Dr. iur. " * 5),
        ("rus_Cyrl", "в н.в. был " * 20 + "и так далее"),  # a word with a space in it: datatrove's own path
    ]
    for lang, text in texts:
        rules = rules_for(lang)
        ours = FastGopherRepetition(language=rules.words)
        theirs = GopherRepetitionFilter(language=rules.words.inner)
        assert ours.filter(doc(text, lang)) == theirs.filter(doc(text, lang)), (lang, text[:80])


def test_filter_chain_keeps_drops_and_rewrites_exactly_like_datatrove():
    from pipelines.ingest.quality_filters import DATATROVE_CHAIN, FINEWEB_CHAIN

    checked = 0
    for lang, text in real_documents() + tuple(adversarial_documents()):
        rules = rules_for(lang)
        for (step, ours_make), (_, theirs_make) in zip(FINEWEB_CHAIN, DATATROVE_CHAIN):
            ours, theirs = doc(text, lang), doc(text, lang)
            verdict = ours_make(rules).filter(ours)
            assert verdict == theirs_make(dataclasses.replace(rules, words=rules.words.inner)).filter(theirs), (step, lang)
            assert ours.text == theirs.text  # C4 rewrites the text: the same lines must be kept
            checked += 1
            if verdict is not True:
                break
            text = ours.text
    assert checked > 100
