"""A corpus with planted near-duplicates, made from real text, and the score of a dedup on it.

Originals are made of FLORES-200 dev sentences (`../shared/data/flores200-dev`, real text in 28
languages; tests only, never a training corpus): 3-5 paragraphs, each a run of 2-4 consecutive
sentences from a random place, so each original is a new combination and two originals share a
sentence only by chance (two random originals share ≥ 8 of their ~12 sentences with probability
~1e-13; `max_unrelated_jaccard` measures what a corpus really has). Some originals get planted
copies, one variant kind each:

- `exact`: the same text;
- `edit_1` … `edit_20`: that percentage of the words substituted, deleted or inserted (words as the
  language's word tokenizer splits them, so Chinese, Japanese and Thai are edited too);
- `boilerplate`: a site header and footer added;
- `reorder`: the paragraphs shuffled;
- `truncate`: cut after 80% of the text.

Every copy carries its true Jaccard similarity with its original over the shingles the dedup
hashes (`pipelines.dedup.minhash_signature.shingles`: normalised text, the language's words, 5-grams).
In input order all originals come first, so a dedup that keeps the earliest document of a cluster
keeps the original. `score` turns the ids a dedup removed into precision, recall and F1:
in each group (an original and its copies) every member with J ≥ threshold but one must go;
copies under the threshold may go or stay; removing an original that had no copy above the
threshold, or the last member above it, is a false positive.

Callers skip when `flores_available()` is false (the folder lives outside the repository).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from builders import list_run, run_id

from pipelines.dedup.minhash_signature import jaccard, shingles, word_tokenizer
from pipelines.lake.contract import DOCUMENTS_CLEAN, DOCUMENTS_SCHEMA, Lake, _tmp_name, publish

FLORES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flores200-dev"
FILE_OF = {"cmn_Hani": "zho_Hans"}  # the lake's code (datatrove's table: jieba) -> FLORES file
DEFAULT_LANGS = ("eng_Latn", "fra_Latn", "deu_Latn", "rus_Cyrl", "cmn_Hani", "jpn_Jpan", "tha_Thai")
EDITS = {"edit_1": 1, "edit_3": 3, "edit_5": 5, "edit_10": 10, "edit_20": 20}
KINDS = ("exact", *EDITS, "boilerplate", "reorder", "truncate")
NO_SPACE_BETWEEN_SENTENCES = ("Hani", "Hans", "Hant", "Jpan")
TRUNCATE_AT = 0.8
THRESHOLD = (1 / 14) ** (1 / 8)  # FineWeb's 14 bands x 8 rows: ≈ 0.72
HEADERS = (
    "Home | News | Sport | Business | Weather | Contact us | Sign in | Subscribe",
    "Skip to main content. Menu. Search this site. Latest stories. Most read. Newsletters.",
)
FOOTERS = (
    "© 2024 Example Media Group. All rights reserved. Privacy policy · Terms of use · Cookie settings · Advertise with us",
    "Share this article on Facebook, Twitter or by e-mail. Related topics. Back to top. About us. Careers. Help centre.",
)


def flores_available() -> bool:
    return (FLORES / "eng_Latn.txt").is_file()


@cache
def sentences(lang: str) -> tuple[str, ...]:
    """The 997 FLORES dev sentences of a language (lake code, e.g. `cmn_Hani` or `eng_Latn`)."""
    return tuple((FLORES / f"{FILE_OF.get(lang, lang)}.txt").read_text(encoding="utf-8").splitlines())


@cache
def vocabulary(lang: str) -> tuple[str, ...]:
    """Words of the language (its tokenizer's, letters or digits only), to substitute and insert."""
    tokenizer = word_tokenizer(lang)
    words = {w for s in sentences(lang)[:300] for w in tokenizer.word_tokenize(s) if any(c.isalnum() for c in w)}
    return tuple(sorted(words))


@dataclass(frozen=True)
class PlantedDoc:
    id: str
    lang: str
    text: str
    kind: str  # "original" or a variant kind
    group: str  # the id of the original (an original is in its own group)
    jaccard: float | None  # with the group's original over the dedup's shingles (None: not computed)


# --- making documents --------------------------------------------------------------------------


def _plan(rng: random.Random, n_sentences: int) -> list[tuple[int, int]]:
    """(start, length) of each paragraph: 3-5 runs of 2-4 consecutive sentences."""
    runs = []
    for _ in range(rng.randint(3, 5)):
        length = rng.randint(2, 4)
        runs.append((rng.randrange(n_sentences - length), length))
    return runs


def _paragraphs(lang: str, plan: list[tuple[int, int]]) -> list[str]:
    joiner = "" if lang.rsplit("_", 1)[-1] in NO_SPACE_BETWEEN_SENTENCES else " "
    lines = sentences(lang)
    return [joiner.join(lines[start : start + length]) for start, length in plan]


def spaced(lang: str) -> bool:
    return lang.rsplit("_", 1)[-1] not in NO_SPACE_BETWEEN_SENTENCES + ("Thai", "Khmr", "Laoo", "Mymr", "Tibt")


def edit_words(text: str, lang: str, percent: float, rng: random.Random) -> str:
    """Substitute, delete or insert `percent`% of the words (at least one), in place in the text."""
    tokens = word_tokenizer(lang).word_tokenize(text)
    spans, pos = [], 0
    for token in tokens:
        start = text.find(token, pos)
        if start < 0:  # a tokenizer that rewrites its input: leave that token alone
            continue
        pos = start + len(token)
        if any(c.isalnum() for c in token):
            spans.append((start, pos))
    if not spans:
        return text
    count = max(1, round(len(spans) * percent / 100))
    chosen = sorted(rng.sample(range(len(spans)), min(count, len(spans))), reverse=True)
    vocab, sep = vocabulary(lang), " " if spaced(lang) else ""
    for i in chosen:  # from the end, so earlier spans stay valid
        start, end = spans[i]
        op = rng.choice(("substitute", "delete", "insert"))
        if op == "substitute":
            text = text[:start] + rng.choice(vocab) + text[end:]
        elif op == "delete":
            if sep and text[end : end + 1] == " ":
                end += 1
            text = text[:start] + text[end:]
        else:
            text = text[:start] + rng.choice(vocab) + sep + text[start:]
    return text


def make_variant(kind: str, paragraphs: list[str], lang: str, rng: random.Random) -> str:
    text = "\n\n".join(paragraphs)
    if kind == "exact":
        return text
    if kind in EDITS:
        return edit_words(text, lang, EDITS[kind], rng)
    if kind == "boilerplate":
        return f"{rng.choice(HEADERS)}\n\n{text}\n\n{rng.choice(FOOTERS)}"
    if kind == "reorder":
        order = list(range(len(paragraphs)))
        while order == sorted(order):
            rng.shuffle(order)
        return "\n\n".join(paragraphs[i] for i in order)
    if kind == "truncate":
        cut = int(len(text) * TRUNCATE_AT)
        if spaced(lang):
            cut = text.rfind(" ", 0, cut) if text.rfind(" ", 0, cut) > 0 else cut
        return text[:cut]
    raise ValueError(f"unknown variant kind {kind!r}; known: {', '.join(KINDS)}")


def iter_planted(
    n_originals: int = 140,
    langs: Iterable[str] = DEFAULT_LANGS,
    planted_fraction: float = 0.5,
    variants_per_group: int = 2,
    kinds: Iterable[str] = KINDS,
    seed: int = 0,
    n_grams: int = 5,
    with_jaccard: bool = True,
) -> Iterator[PlantedDoc]:
    """Documents in input order, language by language: its originals, then the planted copies.

    `n_originals` are spread over `langs`; a `planted_fraction` of them get `variants_per_group`
    copies, kinds taken in turn so that each kind is planted about as often. Memory holds the plan
    of each original (a few integers), not its text: 100k documents stream.
    """
    langs, kinds = list(langs), list(kinds)
    turn = 0
    for li, lang in enumerate(langs):
        count = n_originals // len(langs) + (li < n_originals % len(langs))
        rng = random.Random(f"{seed}/{lang}")
        plans = [_plan(rng, len(sentences(lang))) for _ in range(count)]
        planted = [i for i in range(count) if rng.random() < planted_fraction]
        for i, plan in enumerate(plans):
            yield PlantedDoc(f"{lang}/o{i:06d}", lang, "\n\n".join(_paragraphs(lang, plan)), "original", f"{lang}/o{i:06d}", 1.0)
        for i in planted:
            paragraphs = _paragraphs(lang, plans[i])
            original = shingles("\n\n".join(paragraphs), lang, n_grams) if with_jaccard else None
            for _ in range(variants_per_group):
                kind = kinds[turn % len(kinds)]
                turn += 1
                text = make_variant(kind, paragraphs, lang, random.Random(f"{seed}/{lang}/{i}/{kind}"))
                similarity = jaccard(original, shingles(text, lang, n_grams)) if with_jaccard else None
                yield PlantedDoc(f"{lang}/o{i:06d}/{kind}", lang, text, kind, f"{lang}/o{i:06d}", similarity)


def planted_corpus(**kwargs) -> list[PlantedDoc]:  # noqa: ANN003 - the parameters of iter_planted
    return list(iter_planted(**kwargs))


# --- the lake ----------------------------------------------------------------------------------


def document_row(doc: PlantedDoc) -> dict:
    return {
        "id": doc.id,
        "text": doc.text,
        "url": f"https://planted.example/{doc.id}",
        "source": "flores200-dev (planted)",
        "lang": doc.lang,
        "lang_score": 1.0,
        "n_chars": len(doc.text),
        "n_words": len(doc.text.split()),
        "date": None,
        "content_type": "text/plain",
        "minhash_cluster_size": None,
    }


def write_clean_shards(lake: Lake | str, docs: Iterable[PlantedDoc], name: str = "planted", batch_rows: int = 2000) -> list[str]:
    """Write the documents, in order, as the `documents/clean/lang=<code>/<run>_00000.parquet` shards
    of one run named after `name`.

    Streams (`batch_rows` per row group and language), publishes each shard complete, then lists
    the run in the dataset's manifest. Returns the shard paths.
    """
    lake = lake if isinstance(lake, Lake) else Lake.at(lake)
    run = run_id(name)
    fs = lake.fs
    writers: dict[str, tuple[str, str, object, pq.ParquetWriter]] = {}
    pending: dict[str, list[dict]] = defaultdict(list)

    def flush(lang: str) -> None:
        if lang not in writers:
            path = lake.path(DOCUMENTS_CLEAN, f"lang={lang}", f"{run}_00000.parquet")
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            tmp = _tmp_name(path)
            sink = fs.open(tmp, "wb")
            writers[lang] = (path, tmp, sink, pq.ParquetWriter(sink, DOCUMENTS_SCHEMA, compression="zstd"))
        writers[lang][3].write_table(pa.Table.from_pylist(pending.pop(lang), DOCUMENTS_SCHEMA))

    for doc in docs:
        pending[doc.lang].append(document_row(doc))
        if len(pending[doc.lang]) >= batch_rows:
            flush(doc.lang)
    for lang in list(pending):
        flush(lang)
    paths = []
    for path, tmp, sink, writer in writers.values():
        writer.close()
        sink.close()
        publish(fs, tmp, path)
        paths.append(path)
    list_run(lake, run, DOCUMENTS_CLEAN)
    return sorted(paths)


# --- scoring -----------------------------------------------------------------------------------


@dataclass
class Score:
    tp: int
    fp: int
    fn: int
    threshold: float
    per_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    originals_removed: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "threshold": self.threshold,
            "originals_removed": self.originals_removed,
            "per_kind": self.per_kind,
        }


def score(docs: Iterable[PlantedDoc], removed: set[str], threshold: float = THRESHOLD) -> Score:
    """Precision, recall and F1 of a dedup that removed the documents `removed` (ids).

    Per group: the members with J ≥ threshold (the original included) must all go but one; a
    removal beyond that (or of an original with no such copy) is a false positive; copies under the
    threshold count for nothing. Per kind: of the copies with J ≥ threshold, how many were removed
    (`recall`), and how many copies under the threshold were removed too (`removed_below`).
    """
    groups: dict[str, list[PlantedDoc]] = defaultdict(list)
    for doc in docs:
        if doc.jaccard is None:
            raise ValueError("scoring needs each copy's Jaccard: make the corpus with with_jaccard=True")
        groups[doc.group].append(doc)
    tp = fp = fn = originals_removed = 0
    kinds: dict[str, Counter] = defaultdict(Counter)
    for members in groups.values():
        above = [d for d in members if d.jaccard >= threshold]
        gone = sum(d.id in removed for d in above)
        must = len(above) - 1
        tp += min(gone, must)
        fp += max(0, gone - must)
        fn += max(0, must - gone)
        for d in members:
            originals_removed += d.kind == "original" and d.id in removed
            if d.kind == "original":
                continue
            k = kinds[d.kind]
            k["planted"] += 1
            k["jaccard_sum"] += d.jaccard
            if d.jaccard >= threshold:
                k["above"] += 1
                k["removed"] += d.id in removed
            else:
                k["removed_below"] += d.id in removed
    per_kind = {
        kind: {
            "planted": k["planted"],
            "mean_jaccard": k["jaccard_sum"] / k["planted"],
            "above_threshold": k["above"],
            "recall": k["removed"] / k["above"] if k["above"] else None,
            "removed_below": k["removed_below"],
        }
        for kind, k in sorted(kinds.items(), key=lambda kv: KINDS.index(kv[0]) if kv[0] in KINDS else len(KINDS))
    }
    return Score(tp, fp, fn, threshold, per_kind, originals_removed)


def max_unrelated_jaccard(docs: Iterable[PlantedDoc], n_grams: int = 5) -> tuple[float, tuple[str, str] | None]:
    """The highest Jaccard between two documents of different groups (same language), and their ids.

    Counts shared shingles through an inverted index, so only pairs that share one are compared.
    """
    docs = list(docs)
    sets = [shingles(d.text, d.lang, n_grams) for d in docs]
    owners: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (doc, hashes) in enumerate(zip(docs, sets)):
        for h in hashes.tolist():
            owners[(doc.lang, h)].append(i)
    shared: Counter = Counter()
    for ids in owners.values():
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                if docs[ids[a]].group != docs[ids[b]].group:
                    shared[(ids[a], ids[b])] += 1
    best, pair = 0.0, None
    for (a, b), inter in shared.items():
        j = inter / (len(sets[a]) + len(sets[b]) - inter)
        if j > best:
            best, pair = j, (docs[a].id, docs[b].id)
    return best, pair
