"""Per-language compression counts for one tokenizer: the evaluation half of the compression report.

Petrov et al. 2023 ("Language Model Tokenizers Introduce Unfairness Between Languages") measure a
tokenizer on aligned text: the same sentences in every language, so the token count of a language
over the token count of English is what that language pays for the same content (its *premium*).
This module counts tokens, bytes, characters and words per language for a tokenizer from `loading`
on text from `parallel` or the lake's held-out documents.

The counts must equal what the raw libraries give and cost no more than ~10% over their batch encode,
so everything beyond the encode itself (word spans, which words the tokenizer splits) is vectorised
with numpy and worked out while the tokenizer's own threads encode.
"""

from __future__ import annotations

import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from pipelines.common.parallel_text import REFERENCE_LANGUAGE, ParallelTextError
from pipelines.common.scripts import is_spaced
from tokenizer_training.loading import LoadedTokenizer


@dataclass(frozen=True)
class LanguageCounts:
    """What one tokenizer makes of one language's text.

    `words` are whitespace-separated words (`str.split()`); `split_words` are those that two or more
    tokens overlap in the encoding of the whole text (a GPT-style " hello" counts for "hello").
    Ratios over zero (no tokens, no words) are None.
    """

    tokens: int
    bytes: int
    chars: int
    words: int
    split_words: int
    documents: int
    spaced: bool

    @property
    def bytes_per_token(self) -> float | None:
        return _ratio(self.bytes, self.tokens)

    @property
    def chars_per_token(self) -> float | None:
        return _ratio(self.chars, self.tokens)

    @property
    def tokens_per_char(self) -> float | None:
        return _ratio(self.tokens, self.chars)

    @property
    def tokens_per_word(self) -> float | None:
        """Fertility; None for scripts without spaces, where a whitespace word is no word."""
        return _ratio(self.tokens, self.words) if self.spaced else None

    @property
    def split_word_share(self) -> float | None:
        """Share of words cut into several tokens; None for scripts without spaces."""
        return _ratio(self.split_words, self.words) if self.spaced else None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class _Words:
    """The words of a language's documents joined with single spaces (so no word spans two documents).

    `starts` and `ends` are byte offsets into the UTF-8 of the joined text; `extra[i]` is how many
    bytes beyond one per character the characters before offset i take (one entry past the end too).
    """

    starts: np.ndarray
    ends: np.ndarray
    extra: np.ndarray
    doc_chars: np.ndarray
    doc_bytes: np.ndarray

    def byte_offsets(self, chars: np.ndarray) -> np.ndarray:
        """The byte offsets of character offsets into the joined text."""
        return chars + self.extra[chars]


@cache
def _isspace_table() -> np.ndarray:
    """True at every code point that `str.isspace()` (hence `str.split()`) treats as whitespace."""
    table = np.zeros(sys.maxunicode + 1, dtype=bool)
    table[[point for point in range(sys.maxunicode + 1) if chr(point).isspace()]] = True
    return table


def _words(docs: list[str]) -> _Words:
    """Word spans as `str.split()` sees them, from the code points, without a Python loop over the text."""
    joined = " ".join(docs)
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    inside = np.zeros(len(points) + 2, dtype=np.int8)
    np.logical_not(np.take(_isspace_table(), points), out=inside[1:-1].view(bool))
    edges = np.flatnonzero(np.diff(inside))  # a word starts at each even edge and ends at the odd one after it
    starts, ends = edges[0::2], edges[1::2]
    extra = np.zeros(len(points) + 1, dtype=np.int64)
    beyond_first = (points >= 0x80).view(np.int8) + (points >= 0x800).view(np.int8) + (points >= 0x10000).view(np.int8)
    np.cumsum(beyond_first, out=extra[1:])
    lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
    doc_chars = np.cumsum(lengths + 1) - lengths - 1
    doc_ends = doc_chars + lengths
    return _Words(
        starts=starts + extra[starts],
        ends=ends + extra[ends],
        extra=extra,
        doc_chars=doc_chars,
        doc_bytes=doc_ends + extra[doc_ends] - doc_chars - extra[doc_chars],
    )


def count_languages(tokenizer: LoadedTokenizer, texts: dict[str, list[str]]) -> dict[str, LanguageCounts]:
    """Count every language's documents with one batch encode over all of them.

    `texts` maps a language to its documents (one string per language for aligned text, many for
    held-out lake text). The ids are those of `encode_batch`, taken as arrays where the library allows
    (tiktoken's `encode_to_numpy` on the same 8 threads, `tokenizers`' `encode_batch_fast`). Raises
    UnicodeEncodeError (a ValueError) for text holding lone surrogates, which has no UTF-8 bytes.
    """
    documents = [doc for docs in texts.values() for doc in docs]
    encode = tokenizer.encode_ids if tokenizer.byte_lengths is not None else tokenizer.encode_offsets
    # Word spans need no tokenizer: work them out while the tokenizer's own threads encode.
    with ThreadPoolExecutor(1) as background:
        pending = background.submit(encode, documents)
        words = {lang: _words(docs) for lang, docs in texts.items()}
        encoded = pending.result()
    counts = {}
    first = 0
    for lang, docs in texts.items():
        pieces = encoded[first : first + len(docs)]
        first += len(docs)
        counts[lang] = _language_counts(tokenizer, lang, docs, pieces, words[lang])
    return counts


def _language_counts(
    tokenizer: LoadedTokenizer, lang: str, docs: list[str], pieces: list[np.ndarray], words: _Words
) -> LanguageCounts:
    return LanguageCounts(
        tokens=sum(map(len, pieces)),
        bytes=int(words.doc_bytes.sum()),
        chars=sum(map(len, docs)),
        words=len(words.starts),
        split_words=_split_words(tokenizer, docs, pieces, words),
        documents=len(docs),
        spaced=is_spaced(lang),
    )


def _split_words(tokenizer: LoadedTokenizer, docs: list[str], pieces: list[np.ndarray], words: _Words) -> int:
    """How many words two or more tokens overlap.

    tiktoken's pieces are the text's own bytes by construction. A byte-level tokenizer.json may still
    normalise, add a prefix space, strip around added tokens or drop unknown bytes; its pieces are
    trusted only where the text is in its normal form and they add up to each document, and the
    language is encoded again with offsets otherwise.
    """
    if tokenizer.byte_lengths is not None:
        form = tokenizer.normal_form
        verify = tokenizer.kind != "tiktoken"
        if not form or all(unicodedata.is_normalized(form, doc) for doc in docs):
            ends = _tiled_ends(pieces, tokenizer.byte_lengths, words, verify=verify)
            if ends is not None:
                # Tokens tile each document: a word is split when the first token to end inside it ends before it.
                return int(np.count_nonzero(ends[np.searchsorted(ends, words.starts, "right")] < words.ends))
        pieces = tokenizer.encode_offsets(docs)
    starts, ends = _offset_spans(pieces, words)
    # Tokens overlapping a word: those starting before it ends, less those ending before it starts.
    covering = np.searchsorted(starts, words.ends, "left") - np.searchsorted(ends, words.starts, "right")
    return int(np.count_nonzero(covering >= 2))


def _tiled_ends(pieces: list[np.ndarray], byte_lengths: np.ndarray, words: _Words, *, verify: bool) -> np.ndarray | None:
    """Where each token ends in the joined text, for tokens that tile each document.

    None when `verify` finds a document its tokens do not add up to.
    """
    lengths = byte_lengths[np.concatenate(pieces)] if pieces else np.zeros(0, dtype=byte_lengths.dtype)
    ends = np.cumsum(lengths, dtype=np.int64)
    counts = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    if verify:
        at_doc_ends = np.concatenate(([0], ends))[np.cumsum(counts)]
        if not np.array_equal(np.diff(at_doc_ends, prepend=0), words.doc_bytes):
            return None
    if len(pieces) > 1:  # one separator byte before each further document in the joined text
        ends += np.repeat(np.arange(len(pieces)), counts)
    return ends


def _offset_spans(pieces: list[np.ndarray], words: _Words) -> tuple[np.ndarray, np.ndarray]:
    """Byte spans of tokens from their character offsets, starts and ends each sorted.

    Pieces with an empty span (a prepended marker, say) cover no word and drop out.
    """
    counts = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    offsets = np.concatenate(pieces) if pieces else np.zeros((0, 2), dtype=np.int64)
    spans = words.byte_offsets(offsets + np.repeat(words.doc_chars, counts)[:, None])
    spans = spans[spans[:, 1] > spans[:, 0]]
    return np.sort(spans[:, 0]), np.sort(spans[:, 1])


def language_entry(counts: LanguageCounts, *, reference: LanguageCounts | None, price_per_1m_tokens: float, source: str) -> dict:
    """One language's row of the report, JSON-ready.

    With a `reference` (English on aligned text) the row adds the premium and what the same content
    costs per 1M English words, which is defined for every script.
    """
    entry: dict[str, Any] = {"tokens": counts.tokens, "bytes": counts.bytes, "chars": counts.chars, "words": counts.words}
    if reference is not None:
        entry["premium"] = _ratio(counts.tokens, reference.tokens)
    tokens_per_word = counts.tokens_per_word
    entry |= {
        "documents": counts.documents,
        "spaced": counts.spaced,
        "source": source,
        "bytes_per_token": counts.bytes_per_token,
        "chars_per_token": counts.chars_per_token,
        "tokens_per_char": counts.tokens_per_char,
        "tokens_per_word": tokens_per_word,
        "split_word_share": counts.split_word_share,
        "cost_per_1m_words": None if tokens_per_word is None else tokens_per_word * price_per_1m_tokens,
    }
    if reference is not None:
        per_english_word = _ratio(counts.tokens, reference.words)
        entry["cost_per_1m_english_words"] = None if per_english_word is None else per_english_word * price_per_1m_tokens
    return entry


def tokenizer_entry(
    tokenizer: LoadedTokenizer,
    parallel: dict[str, LanguageCounts],
    heldout: dict[str, LanguageCounts],
    *,
    price_per_1m_tokens: float,
    encode_seconds: float,
    reference_language: str = REFERENCE_LANGUAGE,
) -> dict:
    """One tokenizer's part of the report: aligned languages with premiums, held-out lake languages without.

    Raises ParallelTextError when there is aligned text but none in the reference language.
    """
    if parallel and reference_language not in parallel:
        raise ParallelTextError(f"parallel text has no {reference_language}.txt: premiums are relative to {reference_language}")
    reference = parallel.get(reference_language)
    return {
        "kind": tokenizer.kind,
        "lmforge": tokenizer.lmforge,
        "path": tokenizer.path,
        "vocab_size": tokenizer.vocab_size,
        "encode_seconds": encode_seconds,
        "languages": {
            lang: language_entry(counts, reference=reference, price_per_1m_tokens=price_per_1m_tokens, source="parallel")
            for lang, counts in parallel.items()
        },
        "heldout": {
            lang: language_entry(counts, reference=None, price_per_1m_tokens=price_per_1m_tokens, source="lake")
            for lang, counts in heldout.items()
        },
    }
