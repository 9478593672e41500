"""tokenizer_training.evaluate: counts identical to raw tiktoken / tokenizers, premiums, words, refused input.

Measured on FLORES-200 dev (`../shared/data`), which is never used to train anything here: the tiny
HF tokenizers are trained on sentences written in this file.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import tiktoken
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from pipelines.common.parallel_text import REFERENCE_LANGUAGE, ParallelTextError, read_parallel
from pipelines.common.scripts import is_spaced
from tokenizer_training.evaluate import LanguageCounts, count_languages, language_entry, tokenizer_entry
from tokenizer_training.loading import LoadedTokenizer, TokenizerLoadError, load_tokenizer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ENCODINGS = ("r50k_base", "cl100k_base", "o200k_base")
HF_VARIANTS = ("lmforge_like", "prefix_space", "nfc", "latin_bytes", "whitespace")
REFERENCE_LANGUAGES = ("zho_Hans", "tha_Thai", "amh_Ethi", "fra_Latn")  # fra_Latn has U+00A0 and U+2009
ASTRAL = ["\U0001f600", "\U0001d518\U0001d52b", "\U00020000"]
ODD_SPACES = ["\u3000", "\u00a0", "\x1c", "\u2028", "\u0085", "\t", "\u2009", "\r\n", "  "]
ENTRY_KEYS = {
    "tokens", "bytes", "chars", "words", "documents", "spaced", "source", "bytes_per_token", "chars_per_token",
    "tokens_per_char", "tokens_per_word", "split_word_share", "cost_per_1m_words",
}  # fmt: skip
TRAINING_LINES = [
    "The committee met on Tuesday to discuss the new budget for the public library.",
    "Most of the members agreed that the reading rooms should stay open later in the evening.",
    "A small group of students asked for more computers and a quiet place to work together.",
    "The weather was cold and windy, so only a few people walked along the river that morning.",
    "She wrote three letters to her brother, who had moved to a village in the mountains.",
    "Der Ausschuss traf sich am Dienstag, um über den neuen Haushalt der Bibliothek zu sprechen.",
    "Die meisten Mitglieder waren sich einig, dass die Lesesäle abends länger geöffnet bleiben sollten.",
    "Eine kleine Gruppe von Studenten bat um mehr Computer und einen ruhigen Ort zum Arbeiten.",
    "Das Wetter war kalt und windig, deshalb gingen am Morgen nur wenige Menschen am Fluss spazieren.",
    "Sie schrieb drei Briefe an ihren Bruder, der in ein Dorf in den Bergen gezogen war.",
]


@pytest.fixture(scope="module")
def data() -> Path:
    if not DATA.is_dir():
        pytest.skip("needs ../shared/data (FLORES-200 dev and the tiktoken rank files beside the checkout)")
    return DATA


@pytest.fixture(scope="module")
def flores_files(data) -> dict[str, Path]:
    return {file.stem: file for file in sorted((data / "flores200-dev").glob("*.txt"))}


@pytest.fixture(scope="module")
def flores(data) -> dict[str, str]:
    return read_parallel(data / "flores200-dev")


@pytest.fixture(scope="module")
def raw_encodings(data, tmp_path_factory) -> dict[str, tiktoken.Encoding]:
    """tiktoken's own `get_encoding`, independent of the loader: its download cache is seeded with the
    rank files (tiktoken checks their sha256 there), so nothing is fetched."""
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for stem in ENCODINGS:
        url = f"https://openaipublic.blob.core.windows.net/encodings/{stem}.tiktoken"
        shutil.copy(data / "tokenizers" / f"{stem}.tiktoken", cache / hashlib.sha1(url.encode()).hexdigest())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        return {stem: tiktoken.get_encoding(stem) for stem in ENCODINGS}


@pytest.fixture(scope="module")
def loaded(data) -> dict[str, LoadedTokenizer]:
    return {stem: load_tokenizer(data / "tokenizers" / f"{stem}.tiktoken") for stem in ENCODINGS}


def train_tiny_bpe(path: Path, variant: str) -> Path:
    """A 600-token BPE trained on TRAINING_LINES; `variant` picks the pipeline the counting must cope with."""
    if variant == "whitespace":  # not byte-level: unknown characters become [UNK], offsets only
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["[UNK]"], show_progress=False)
    else:
        tokenizer = Tokenizer(models.BPE())
        if variant == "lmforge_like":  # lmforge's own pipeline: a split regex, then bytes
            tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(r" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+"), behavior="isolated"),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                ]
            )
        else:  # prefix_space adds a byte the text lacks; nfc changes the text where it is not NFC
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=variant == "prefix_space")
        if variant == "nfc":
            tokenizer.normalizer = normalizers.NFC()
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(  # latin_bytes knows only the bytes of its training text and drops the others
            vocab_size=600,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=[] if variant == "latin_bytes" else pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    tokenizer.train_from_iterator(TRAINING_LINES * 3, trainer)
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope="module")
def hf_paths(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hf")
    return {variant: train_tiny_bpe(folder / f"{variant}.json", variant) for variant in HF_VARIANTS}


def byte_spans_tiktoken(encoding: tiktoken.Encoding, text: str) -> list[tuple[int, int]]:
    """Each token's byte span, from the bytes each token decodes to."""
    spans, position = [], 0
    for token in encoding.encode_ordinary(text):
        size = len(encoding.decode_single_token_bytes(token))
        spans.append((position, position + size))
        position += size
    assert position == len(text.encode())
    return spans


def reference_split_words(text: str, spans: list[tuple[int, int]], unit: str) -> int:
    """Words (runs of non-space characters) that two or more token spans overlap, the slow obvious way.

    `unit` is what the spans count: "byte" (UTF-8 bytes) or "char" (code points).
    """
    owners: dict[int, set[int]] = {}
    for index, (start, end) in enumerate(spans):
        for position in range(start, end):
            owners.setdefault(position, set()).add(index)
    split, position, word = 0, 0, None
    for char in text + " ":
        size = len(char.encode()) if unit == "byte" else 1
        if char.isspace():
            split += word is not None and len(word) >= 2
            word = None
        else:
            word = word or set()
            for unit_position in range(position, position + size):
                word |= owners.get(unit_position, set())
        position += size
    return split


def odd_space_text(flores: dict[str, str]) -> str:
    """English sentences whose spaces are, in turn, every kind of whitespace str.split() knows about,
    with a 4-byte character (emoji, math letters, CJK extension B) in every seventh word."""
    words = [
        word + ASTRAL[i % len(ASTRAL)] if i % 7 == 0 else word
        for i, word in enumerate(flores[REFERENCE_LANGUAGE].split(" ")[:1500])
    ]
    return "\u3000" + "".join(word + ODD_SPACES[i % len(ODD_SPACES)] for i, word in enumerate(words)) + "\x1f"


def reference_texts(flores: dict[str, str]) -> dict[str, list[str]]:
    """A few hundred lines of the languages the reference checks, one document each, plus odd whitespace."""
    texts = {lang: [" ".join(flores[lang].split(" ")[:1500])] for lang in REFERENCE_LANGUAGES}
    return texts | {"odd_Latn": [odd_space_text(flores)]}


# --- counts equal the raw libraries' ---------------------------------------------------------------


@pytest.mark.parametrize("stem", ENCODINGS)
def test_counts_equal_raw_tiktoken_on_every_flores_language(stem, flores_files, flores, loaded, raw_encodings):
    raw = {
        lang: len(raw_encodings[stem].encode_ordinary(file.read_text(encoding="utf-8").replace("\n", " ")))
        for lang, file in flores_files.items()
    }
    counts = count_languages(loaded[stem], {lang: [text] for lang, text in flores.items()})
    assert len(counts) == 28 and {lang: c.tokens for lang, c in counts.items()} == raw
    for lang, text in flores.items():
        assert (counts[lang].bytes, counts[lang].chars, counts[lang].words) == (len(text.encode()), len(text), len(text.split()))
        assert counts[lang].documents == 1 and counts[lang].spaced == is_spaced(lang)
    assert loaded[stem].vocab_size == raw_encodings[stem].n_vocab


@pytest.mark.parametrize("stem", ENCODINGS)
def test_tiktoken_round_trips_every_flores_language(stem, flores, loaded):
    texts = list(flores.values())
    assert [loaded[stem].decode(ids) for ids in loaded[stem].encode_batch(texts)] == texts


@pytest.mark.parametrize("variant", HF_VARIANTS)
def test_counts_equal_raw_tokenizers_for_a_tokenizer_json(variant, hf_paths, flores):
    texts = {lang: [" ".join(text.split(" ")[:600])] for lang, text in flores.items()}
    raw_tokenizer = Tokenizer.from_file(str(hf_paths[variant]))
    raw = raw_tokenizer.encode_batch([docs[0] for docs in texts.values()], add_special_tokens=False)
    tok = load_tokenizer(hf_paths[variant])
    counts = count_languages(tok, texts)
    assert {lang: c.tokens for lang, c in counts.items()} == {lang: len(e.ids) for lang, e in zip(texts, raw)}
    assert tok.kind == "huggingface" and tok.vocab_size == raw_tokenizer.get_vocab_size(with_added_tokens=True)
    assert [tok.encode_batch(docs) for docs in texts.values()][:3] == [[e.ids] for e in raw[:3]]


# --- split words: exact against a slow reference -------------------------------------------------


@pytest.mark.parametrize("stem", ENCODINGS)
def test_split_words_equal_a_slow_reference_for_tiktoken(stem, flores, loaded, raw_encodings):
    texts = reference_texts(flores)
    counts = count_languages(loaded[stem], texts)
    for lang, (text,) in texts.items():
        expected = reference_split_words(text, byte_spans_tiktoken(raw_encodings[stem], text), "byte")
        assert counts[lang].split_words == expected, lang
        assert counts[lang].words == len(text.split()) and 0 < expected <= counts[lang].words


@pytest.mark.parametrize("variant", HF_VARIANTS)
def test_split_words_equal_a_slow_reference_for_tokenizer_json(variant, hf_paths, flores):
    texts = reference_texts(flores)
    raw_tokenizer = Tokenizer.from_file(str(hf_paths[variant]))
    counts = count_languages(load_tokenizer(hf_paths[variant]), texts)
    for lang, (text,) in texts.items():
        offsets = raw_tokenizer.encode(text, add_special_tokens=False).offsets
        assert counts[lang].split_words == reference_split_words(text, offsets, "char"), lang


def test_text_that_normalising_reshuffles_is_measured_by_offsets(hf_paths, flores):
    """NFC takes a byte off U+212B and adds two to U+0344: the bytes add up, the positions in between do not."""
    text = "\u212b\u212b " + " ".join(flores[REFERENCE_LANGUAGE].split(" ")[:300]) + " \u0344"
    raw_tokenizer = Tokenizer.from_file(str(hf_paths["nfc"]))
    offsets = raw_tokenizer.encode(text, add_special_tokens=False).offsets
    counts = count_languages(load_tokenizer(hf_paths["nfc"]), {"eng_Latn": [text]})["eng_Latn"]
    assert (counts.tokens, counts.split_words) == (len(offsets), reference_split_words(text, offsets, "char"))


def test_documents_are_counted_apart_and_add_up(flores, flores_files, loaded, raw_encodings):
    """Held-out lake text: many documents per language; a word never runs from one document into the next."""
    lines = {lang: flores_files[lang].read_text(encoding="utf-8").splitlines()[:300] for lang in ("eng_Latn", "tha_Thai")}
    lines["odd_Latn"] = [odd_space_text(flores)[i : i + 97] for i in range(0, 6000, 97)] + ["", " ", "abc", "def"]
    counts = count_languages(loaded["o200k_base"], lines)
    raw = raw_encodings["o200k_base"]
    for lang, docs in lines.items():
        assert counts[lang].documents == len(docs)
        assert counts[lang].tokens == sum(len(raw.encode_ordinary(doc)) for doc in docs)
        assert counts[lang].words == sum(len(doc.split()) for doc in docs)
        assert counts[lang].bytes == sum(len(doc.encode()) for doc in docs) and counts[lang].chars == sum(map(len, docs))
        expected = sum(reference_split_words(doc, byte_spans_tiktoken(raw, doc), "byte") for doc in docs)
        assert counts[lang].split_words == expected, lang
    separate = count_languages(loaded["o200k_base"], {"xxx_Latn": ["abc", "def"], "yyy_Latn": []})
    assert separate["xxx_Latn"].words == 2 and separate["yyy_Latn"] == LanguageCounts(0, 0, 0, 0, 0, 0, True)


# --- premiums and the report entries ---------------------------------------------------------------


def test_english_premium_is_one_and_doubled_english_costs_twice(tmp_path, flores_files, loaded, raw_encodings):
    folder = tmp_path / "parallel"
    folder.mkdir()
    shutil.copy(flores_files[REFERENCE_LANGUAGE], folder)
    english_lines = flores_files[REFERENCE_LANGUAGE].read_text(encoding="utf-8").splitlines()
    (folder / "dbl_Latn.txt").write_text("".join(f"{line} {line}\n" for line in english_lines), encoding="utf-8")
    parallel = read_parallel(folder)
    counts = count_languages(loaded["cl100k_base"], {lang: [text] for lang, text in parallel.items()})
    entry = tokenizer_entry(loaded["cl100k_base"], counts, {}, price_per_1m_tokens=2.5, encode_seconds=0.1)

    raw = {lang: len(raw_encodings["cl100k_base"].encode_ordinary(text)) for lang, text in parallel.items()}
    english, doubled = entry["languages"][REFERENCE_LANGUAGE], entry["languages"]["dbl_Latn"]
    assert english["premium"] == 1.0
    assert doubled["premium"] == raw["dbl_Latn"] / raw[REFERENCE_LANGUAGE] and doubled["premium"] == pytest.approx(2.0, rel=1e-2)
    assert english["cost_per_1m_english_words"] == pytest.approx(english["cost_per_1m_words"])
    assert doubled["cost_per_1m_english_words"] == raw["dbl_Latn"] / counts[REFERENCE_LANGUAGE].words * 2.5
    assert entry["kind"] == "tiktoken" and entry["lmforge"] is False and entry["vocab_size"] == 100277
    assert entry["encode_seconds"] == 0.1 and entry["heldout"] == {}


def test_language_entry_keys_and_values(flores, loaded):
    texts = {lang: [flores[lang]] for lang in ("eng_Latn", "deu_Latn", "zho_Hans", "jpn_Jpan", "tha_Thai")}
    counts = count_languages(loaded["o200k_base"], texts)
    reference = counts[REFERENCE_LANGUAGE]
    german = language_entry(counts["deu_Latn"], reference=reference, price_per_1m_tokens=3.0, source="parallel")
    assert set(german) == ENTRY_KEYS | {"premium", "cost_per_1m_english_words"}
    assert german["tokens_per_word"] == counts["deu_Latn"].tokens / len(flores["deu_Latn"].split())
    assert german["cost_per_1m_words"] == german["tokens_per_word"] * 3.0 and german["spaced"] is True
    assert german["bytes_per_token"] == len(flores["deu_Latn"].encode()) / counts["deu_Latn"].tokens
    assert 0 < german["split_word_share"] < 1 and german["source"] == "parallel"
    for lang in ("zho_Hans", "jpn_Jpan", "tha_Thai"):
        entry = language_entry(counts[lang], reference=reference, price_per_1m_tokens=3.0, source="parallel")
        assert entry["spaced"] is False and entry["tokens_per_word"] is None and entry["split_word_share"] is None
        assert entry["cost_per_1m_words"] is None and entry["cost_per_1m_english_words"] > 0
    heldout = language_entry(counts["deu_Latn"], reference=None, price_per_1m_tokens=3.0, source="lake")
    assert set(heldout) == ENTRY_KEYS and heldout["source"] == "lake"


def test_tokenizer_entry_needs_english_among_aligned_languages(flores, loaded):
    counts = count_languages(loaded["r50k_base"], {"deu_Latn": [flores["deu_Latn"]]})
    with pytest.raises(ParallelTextError, match="eng_Latn"):
        tokenizer_entry(loaded["r50k_base"], counts, {}, price_per_1m_tokens=1.0, encode_seconds=0.0)
    heldout_only = tokenizer_entry(loaded["r50k_base"], {}, counts, price_per_1m_tokens=1.0, encode_seconds=0.0)
    assert heldout_only["languages"] == {} and "premium" not in heldout_only["heldout"]["deu_Latn"]


def test_scripts_without_spaces():
    assert not any(map(is_spaced, ["zho_Hans", "cmn_Hani", "jpn_Jpan", "tha_Thai", "khm_Khmr", "mya_Mymr", "lao_Laoo"]))
    assert all(map(is_spaced, ["eng_Latn", "kor_Hang", "amh_Ethi", "arb_Arab"]))


# --- loading -------------------------------------------------------------------------------------


def test_tokenizer_json_names_and_lmforge_flag(tmp_path, hf_paths):
    ours = tmp_path / "ours-32k"
    ours.mkdir()
    shutil.copy(hf_paths["lmforge_like"], ours / "tokenizer.json")
    (ours / "_manifest.json").write_text("{}")
    by_folder, by_file = load_tokenizer(ours), load_tokenizer(ours / "tokenizer.json")
    assert (by_folder.name, by_folder.kind, by_folder.lmforge) == ("ours-32k", "huggingface", True)
    assert (by_file.name, by_file.lmforge) == ("ours-32k", True)
    plain = load_tokenizer(hf_paths["nfc"])
    assert (plain.name, plain.lmforge, plain.path) == ("nfc", False, str(hf_paths["nfc"]))
    assert plain.decode(plain.encode_batch(["Der Ausschuss traf sich."])[0]) == "Der Ausschuss traf sich."


def test_unknown_tokenizers_are_refused_with_what_was_expected(tmp_path, data):
    model = tmp_path / "spm.model"
    model.write_bytes(b"\x00\x01")
    (tmp_path / "empty").mkdir()
    bogus = tmp_path / "bogus.tiktoken"
    shutil.copy(data / "tokenizers" / "r50k_base.tiktoken", bogus)
    for path in (model, tmp_path / "empty", tmp_path / "missing", tmp_path / "notes.txt"):
        with pytest.raises(TokenizerLoadError, match=r"expected a \*\.tiktoken rank file \(r50k_base, p50k_base"):
            load_tokenizer(path)
    with pytest.raises(TokenizerLoadError, match="'bogus'.*cl100k_base"):
        load_tokenizer(bogus)
    corrupt = tmp_path / "tokenizer.json"
    corrupt.write_text('{"model": ')
    with pytest.raises(TokenizerLoadError, match="cannot read tokenizer"):
        load_tokenizer(corrupt)
    mislabelled = tmp_path / "cl100k_base.tiktoken"
    shutil.copy(data / "tokenizers" / "r50k_base.tiktoken", mislabelled)
    with pytest.raises(TokenizerLoadError, match="not tiktoken's cl100k_base"):
        load_tokenizer(mislabelled)


# --- parallel text -----------------------------------------------------------------------------


def test_parallel_text_is_petrovs_recipe(tmp_path):
    (tmp_path / "eng_Latn.txt").write_text("One line.\nTwo  lines.\n", encoding="utf-8")
    (tmp_path / "fra_Latn.txt").write_text("Une ligne.\nDeux\u00a0lignes.", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a language")
    assert read_parallel(tmp_path) == {"eng_Latn": "One line. Two  lines. ", "fra_Latn": "Une ligne. Deux\u00a0lignes."}


def test_invalid_utf8_names_file_line_and_byte(tmp_path):
    (tmp_path / "eng_Latn.txt").write_text("fine\nalso fine\n")
    (tmp_path / "xyz_Latn.txt").write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(ParallelTextError, match=r"xyz_Latn\.txt: invalid UTF-8 at line 2, byte offset 9"):
        read_parallel(tmp_path)


def test_unaligned_files_are_named_with_their_line_counts(tmp_path, flores_files):
    shutil.copy(flores_files[REFERENCE_LANGUAGE], tmp_path)
    lines = flores_files["fra_Latn"].read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "xyz_Latn.txt").write_text("".join(lines[:-1]), encoding="utf-8")
    with pytest.raises(ParallelTextError, match=r"eng_Latn\.txt has 997 lines, but xyz_Latn\.txt has 996"):
        read_parallel(tmp_path)
    shutil.copy(flores_files["deu_Latn"], tmp_path)
    with pytest.raises(ParallelTextError, match=r"eng_Latn\.txt and 1 other files have 997 lines, but xyz_Latn\.txt has 996"):
        read_parallel(tmp_path)


def test_no_parallel_files(tmp_path):
    for folder in (tmp_path, tmp_path / "missing"):
        with pytest.raises(ParallelTextError, match="no <lang>.txt files"):
            read_parallel(folder)
