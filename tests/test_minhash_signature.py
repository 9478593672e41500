"""MinHash stage 1: datatrove's file format and signatures, each document's own language, bad input."""

from __future__ import annotations

import filecmp
import random
import struct
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
from datatrove.utils.hashing import HashConfig
from datatrove.utils.text import simplify_text
from planted import FLORES, KINDS, THRESHOLD, flores_available, max_unrelated_jaccard, planted_corpus, score, sentences

from pipelines.dedup.minhash_signature import (
    MinhashSignatures,
    jaccard,
    normalise,
    reference_signature_step,
    shingles,
    word_tokenizer,
)

CONFIG = MinhashConfig()
needs_flores = pytest.mark.skipif(not flores_available(), reason="../shared/data/flores200-dev is not here")


def docs(texts: list[str], lang: str | None = "eng_Latn") -> list[Document]:
    return [Document(text=t, id=str(i), metadata={"lang": lang} if lang else {}) for i, t in enumerate(texts)]


def sign(folder: Path, documents: list[Document], config: MinhashConfig = CONFIG, rank: int = 0, **kwargs) -> Path:
    MinhashSignatures(str(folder), config, **kwargs).run(iter(documents), rank=rank)
    return folder


def sig_files(folder: Path, config: MinhashConfig = CONFIG, rank: int = 0) -> list[Path]:
    return [folder / f"bucket_{b:03d}" / f"{rank:05d}.minhash.sig" for b in range(config.num_buckets)]


def records(path: Path, config: MinhashConfig = CONFIG) -> list[tuple]:
    fmt = f"<{config.hashes_per_bucket}{config.hash_config.struct_format}I"
    data = path.read_bytes()
    return list(struct.iter_unpack(fmt, data))


def duplicate_pairs(sig_folder: Path, tmp_path: Path, config: MinhashConfig = CONFIG) -> set[tuple[int, int]]:
    """Run datatrove's own stage 2 on the folder; the (doc, doc) pairs it finds, over all bands."""
    out = tmp_path / "dups"
    for bucket in range(config.num_buckets):
        MinhashDedupBuckets(str(sig_folder), str(out), config=config).run(rank=bucket, world_size=config.num_buckets)
    pairs = set()
    for f in out.glob("*.dups"):
        for _, a, _, b in struct.iter_unpack("<4I", f.read_bytes()):
            pairs.add((min(a, b), max(a, b)))
    return pairs


def clusters(pairs: set[tuple[int, int]]) -> list[set[int]]:
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    groups: dict[int, set[int]] = {}
    for x in list(parent):
        groups.setdefault(find(x), set()).add(x)
    return list(groups.values())


def flores_docs(lang: str, n: int, seed: int = 0) -> list[str]:
    lines = sentences(lang)
    rng = random.Random(seed)
    return ["\n".join(rng.sample(lines, rng.randint(10, 15))) for _ in range(n)]


# --- the same files as datatrove ---------------------------------------------------------------


@needs_flores
@pytest.mark.parametrize(
    "lang, hash_config",
    [
        ("eng_Latn", HashConfig()),
        ("eng_Latn", HashConfig(precision=32)),
        ("cmn_Hani", HashConfig()),
        ("jpn_Jpan", HashConfig()),
        ("tha_Thai", HashConfig()),
        ("rus_Cyrl", HashConfig(hash_fc="sha1")),
    ],
    ids=["eng-xxhash64", "eng-xxhash32", "cmn", "jpn", "tha-whitespace", "rus-sha1"],
)
def test_signature_files_are_byte_identical_to_datatrove(tmp_path: Path, lang: str, hash_config: HashConfig):
    config = MinhashConfig(hash_config=hash_config)
    texts = flores_docs(lang, 12)
    texts += [texts[3], "Ünïcödé café, naïve façade — 12,5 % of “quoted” words here.", texts[7].upper()]
    documents = docs(texts, lang)
    reference_signature_step(str(tmp_path / "datatrove"), config, lang).run(iter(documents))
    # datatrove gives no signature to a document shorter than 5 words: `skip` does the same
    sign(tmp_path / "ours", documents, config, short_docs="skip")
    for theirs, ours in zip(sig_files(tmp_path / "datatrove", config), sig_files(tmp_path / "ours", config)):
        assert ours.stat().st_size == len(texts) * (8 * hash_config.precision // 8 + 4)
        assert filecmp.cmp(theirs, ours, shallow=False), f"{ours} differs from datatrove's"


@needs_flores
def test_normalisation_is_datatroves_simplify_text_in_every_flores_language():
    texts = [
        "Crème brûlée: 3,5 €!",
        "ÅÄÖ åäö ß Ǆ",
        "e\u0301 a\u0308\u0323 x",
        " \u0301 lead ",
        "—«»—",
        "",
        "ascii only, 12 words.",
    ]
    for path in sorted(FLORES.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        texts += ["\n".join(lines[i : i + 12]) for i in range(0, 120, 12)]
    for text in texts:
        assert normalise(text) == simplify_text(text), text[:80]
    assert all(unicodedata.category(c) != "Mn" for c in normalise("Tiếng Việt"))


@needs_flores
@pytest.mark.parametrize("lang", ["jpn_Jpan", "tha_Thai", "eng_Latn"])
def test_word_shortcuts_give_datatroves_words(lang: str):
    from datatrove.utils.word_tokenizers import WhitespaceTokenizer, load_word_tokenizer

    try:
        theirs = load_word_tokenizer(lang)
        theirs.word_tokenize("probe text")
    except Exception:  # no package for the language: both fall back to whitespace
        theirs = WhitespaceTokenizer()
    ours = word_tokenizer(lang)
    for text in list(sentences(lang)[:200]) + [normalise(t) for t in flores_docs(lang, 10)]:
        assert list(ours.word_tokenize(text)) == theirs.word_tokenize(text), text[:80]


@needs_flores
def test_datatrove_buckets_find_the_planted_near_duplicates(tmp_path: Path):
    corpus = planted_corpus(n_originals=30, langs=("eng_Latn",), planted_fraction=1.0, variants_per_group=3, seed=1)
    sign(tmp_path / "sigs", [Document(text=d.text, id=d.id, metadata={"lang": d.lang}) for d in corpus])
    found = clusters(duplicate_pairs(tmp_path / "sigs", tmp_path))
    # keep the first document of each cluster, as the dedup does: its score on the planted groups
    removed = {corpus[i].id for c in found for i in sorted(c)[1:]}
    result = score(corpus, removed, THRESHOLD)
    assert result.fp == 0
    assert result.per_kind["exact"]["recall"] == 1.0
    assert result.recall >= 0.8, result.as_dict()
    # nothing is joined across groups
    for c in found:
        assert len({corpus[i].group for i in c}) == 1


# --- bad input ---------------------------------------------------------------------------------


def test_empty_input_writes_empty_files_that_stage_2_reads(tmp_path: Path):
    sign(tmp_path / "sigs", [])
    assert [f.stat().st_size for f in sig_files(tmp_path / "sigs")] == [0] * CONFIG.num_buckets
    assert duplicate_pairs(tmp_path / "sigs", tmp_path) == set()


def test_short_documents_are_one_shingle_so_short_copies_match(tmp_path: Path):
    texts = ["Click here.", "click HERE!", "Read more", "", "  ...  ", "A much longer sentence about the harbour and its boats."]
    sign(tmp_path / "sigs", docs(texts))
    # the empty and punctuation-only documents get no signature; the others one record per band
    assert sorted(r[-1] for r in records(sig_files(tmp_path / "sigs")[0])) == [0, 1, 2, 5]
    assert duplicate_pairs(tmp_path / "sigs", tmp_path) == {(0, 1)}
    sign(tmp_path / "skip", docs(texts), short_docs="skip")
    assert [r[-1] for r in records(sig_files(tmp_path / "skip")[0])] == [5]


def test_all_duplicate_input_is_one_cluster_even_through_the_merge_sort(tmp_path: Path):
    text = " ".join(f"word{i}" for i in range(60))
    sign(tmp_path / "sigs", docs([text] * 50), sort_buffer_records=7)
    files = sig_files(tmp_path / "sigs")
    assert [r[-1] for r in records(files[0])] == list(range(50))  # equal hashes: ordered by document index
    assert clusters(duplicate_pairs(tmp_path / "sigs", tmp_path)) == [set(range(50))]


@needs_flores
def test_merge_sort_in_bounded_memory_writes_the_same_bytes(tmp_path: Path):
    texts = flores_docs("eng_Latn", 30, seed=2)
    documents = docs(texts + texts[:5])
    sign(tmp_path / "memory", documents)
    sign(tmp_path / "merged", documents, sort_buffer_records=4)
    for a, b in zip(sig_files(tmp_path / "memory"), sig_files(tmp_path / "merged")):
        assert filecmp.cmp(a, b, shallow=False)


@needs_flores
def test_signatures_are_deterministic_and_ranked(tmp_path: Path):
    documents = docs(flores_docs("eng_Latn", 10))
    sign(tmp_path / "a", documents, rank=3)
    sign(tmp_path / "b", documents, rank=3)
    for a, b in zip(sig_files(tmp_path / "a", rank=3), sig_files(tmp_path / "b", rank=3)):
        assert a.exists() and filecmp.cmp(a, b, shallow=False)


def test_documents_without_lang_use_the_default_language(tmp_path: Path):
    text = "The harbour master counted forty boats in the morning fog before the ferry left."
    sign(tmp_path / "a", docs([text], lang=None))
    sign(tmp_path / "b", docs([text], lang="eng_Latn"))
    assert filecmp.cmp(sig_files(tmp_path / "a")[0], sig_files(tmp_path / "b")[0], shallow=False)


# --- scripts without spaces --------------------------------------------------------------------


@needs_flores
@pytest.mark.parametrize("lang", ["cmn_Hani", "jpn_Jpan", "tha_Thai"])
def test_scripts_without_spaces_get_signatures_and_their_near_duplicates_are_found(tmp_path: Path, lang: str):
    corpus = planted_corpus(
        n_originals=8, langs=(lang,), planted_fraction=1.0, variants_per_group=2, kinds=("exact", "edit_1", "reorder"), seed=3
    )
    # words, not whole lines: a 5-gram shingle set per document with many members
    assert min(len(shingles(d.text, lang)) for d in corpus) > 20
    sign(tmp_path / "sigs", [Document(text=d.text, id=d.id, metadata={"lang": lang}) for d in corpus])
    assert len(records(sig_files(tmp_path / "sigs")[0])) == len(corpus)
    found = clusters(duplicate_pairs(tmp_path / "sigs", tmp_path))
    removed = {corpus[i].id for c in found for i in sorted(c)[1:]}
    result = score(corpus, removed)
    assert result.fp == 0 and result.per_kind["exact"]["recall"] == 1.0
    assert result.recall >= 0.75, result.as_dict()


# --- the planted corpus and its shingles -------------------------------------------------------


@needs_flores
def test_planted_corpus_is_real_text_with_the_similarities_it_claims():
    corpus = planted_corpus(n_originals=24, langs=("eng_Latn",), planted_fraction=0.5, variants_per_group=3)
    originals = [d for d in corpus if d.kind == "original"]
    assert len(originals) == 24 and corpus[: len(originals)] == originals  # originals come first
    by_id = {d.id: d for d in corpus}
    for d in corpus:
        assert d.jaccard == pytest.approx(jaccard(shingles(by_id[d.group].text, d.lang), shingles(d.text, d.lang)))
    kinds = {d.kind: d.jaccard for d in corpus if d.kind != "original"}
    assert set(kinds) <= set(KINDS) and kinds["exact"] == 1.0
    # unrelated documents are unrelated at the 5-gram level
    best, pair = max_unrelated_jaccard(corpus)
    assert best < 0.3, pair


def test_scorer_counts_survivors_and_false_positives():
    from planted import PlantedDoc

    corpus = [
        PlantedDoc("a", "eng_Latn", "", "original", "a", 1.0),
        PlantedDoc("b", "eng_Latn", "", "original", "b", 1.0),
        PlantedDoc("a/exact", "eng_Latn", "", "exact", "a", 1.0),
        PlantedDoc("a/edit_20", "eng_Latn", "", "edit_20", "a", 0.2),
    ]
    perfect = score(corpus, {"a/exact"})
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    assert score(corpus, {"a/exact", "a/edit_20"}).f1 == 1.0  # under the threshold: either way
    assert score(corpus, {"a/exact", "b"}).fp == 1  # an unrelated document
    assert score(corpus, {"a", "a/exact"}).fp == 1  # no copy left
    assert score(corpus, set()).fn == 1


def test_signature_agreement_estimates_the_true_jaccard(tmp_path: Path):
    rng = random.Random(0)
    words = [f"w{rng.randrange(5000)}" for _ in range(400)]
    edited = [w if rng.random() > 0.04 else "x" for w in words]
    a, b = " ".join(words), " ".join(edited)
    step = MinhashSignatures(str(tmp_path), CONFIG)
    sa, sb = step.signatures([a, b], ["eng_Latn", "eng_Latn"])
    estimate = float(np.mean(sa == sb))
    assert estimate == pytest.approx(jaccard(shingles(a), shingles(b)), abs=0.1)
