"""Per-language compression counts for one tokenizer: the evaluation half of the compression report.

Petrov et al. 2023 ("Language Model Tokenizers Introduce Unfairness Between Languages") measure a
tokenizer on aligned text: the same sentences in every language, so the token count of a language
over the token count of English is what that language pays for the same content (its *premium*).
This module loads reference tokenizers (tiktoken rank files, HF `tokenizer.json`) and ours, reads the
aligned FLORES-style text, and counts tokens, bytes, characters and words per language.

The counts must equal what the raw libraries give and cost no more than ~10% over their batch encode,
so everything beyond the encode itself (word spans, which words the tokenizer splits) is vectorised
with numpy and worked out while the tokenizer's own threads encode.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import tiktoken
import tiktoken.load
from tokenizers import Tokenizer, pre_tokenizers

from pipelines.lake import MANIFEST


class TokenizerLoadError(ValueError):
    """The path is not a tokenizer this report can load (unknown file type, bad tiktoken stem, unreadable json)."""


class ParallelTextError(ValueError):
    """The aligned text cannot be measured (invalid UTF-8, unaligned files, no files, no English)."""


REFERENCE_LANGUAGE = "eng_Latn"
# ISO 15924 scripts written without spaces between words: a whitespace "word" there is a phrase or a
# sentence, so tokens per word would compare nothing with the spaced languages.
UNSPACED_SCRIPTS = frozenset({"Hani", "Hans", "Hant", "Hira", "Kana", "Jpan", "Thai", "Khmr", "Mymr", "Laoo", "Tibt"})
TIKTOKEN_ENCODINGS = ("r50k_base", "p50k_base", "cl100k_base", "o200k_base")
# tiktoken's own batch encode uses 8 threads; the counting path uses as many, to compare like with like.
_TIKTOKEN_THREADS = 8
_NORMAL_FORMS = (None, "NFC", "NFD", "NFKC", "NFKD")  # normalisers that leave text already in their form alone
_EXPECTED = f"expected a *.tiktoken rank file ({', '.join(TIKTOKEN_ENCODINGS)}), a tokenizer.json, or a folder holding one"


def is_spaced(lang: str) -> bool:
    """Whether a FLORES-style code (`tha_Thai`, `cmn_Hani`) names a language written with spaces between words."""
    return lang.rpartition("_")[2] not in UNSPACED_SCRIPTS


@dataclass(frozen=True)
class LoadedTokenizer:
    """A reference or lmforge tokenizer, encoding without special tokens, as the report measures it.

    The library object is `encoding` (tiktoken) or `tokenizer` (HF `tokenizers`), whichever `kind` says.
    `_byte_lengths` holds each token id's length in UTF-8 bytes when the tokenizer's pieces are bytes of
    the text itself (tiktoken, byte-level `tokenizer.json`): then token spans follow from the ids alone,
    with no offsets to convert. `_normal_form` is the Unicode form a `tokenizer.json` normaliser applies.
    """

    name: str
    kind: str
    path: str
    vocab_size: int
    lmforge: bool
    encoding: tiktoken.Encoding | None = field(default=None, compare=False, repr=False)
    tokenizer: Tokenizer | None = field(default=None, compare=False, repr=False)
    _byte_lengths: np.ndarray | None = field(default=None, compare=False, repr=False)
    _normal_form: str | None = field(default=None, compare=False, repr=False)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, special tokens neither added nor recognised as such by tiktoken."""
        if self.encoding is not None:
            return self.encoding.encode_ordinary_batch(texts)
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        """The text of the ids (invalid UTF-8 from a partial byte sequence becomes U+FFFD)."""
        if self.encoding is not None:
            return self.encoding.decode(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _encode_ids(self, texts: list[str]) -> list[np.ndarray]:
        """Ids as arrays, skipping the Python lists (and, for `tokenizers`, the offsets) the counts do not need."""
        if self.encoding is not None:
            encode = partial(self.encoding.encode_to_numpy, disallowed_special=())
            with ThreadPoolExecutor(_TIKTOKEN_THREADS) as pool:
                return list(pool.map(encode, texts))
        encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        return [np.fromiter(encoding.ids, dtype=np.int64, count=len(encoding)) for encoding in encodings]

    def _encode_offsets(self, texts: list[str]) -> list[np.ndarray]:
        """Each token's (start, end) character offsets into its text, for tokenizers whose pieces are not its bytes."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [
            np.fromiter(chain.from_iterable(encoding.offsets), dtype=np.int64, count=2 * len(encoding)).reshape(-1, 2)
            for encoding in encodings
        ]


def load_tokenizer(path: str | os.PathLike) -> LoadedTokenizer:
    """Load a `<encoding>.tiktoken` rank file, a `*.json` tokenizer, or a folder holding `tokenizer.json`.

    Works offline. Raises TokenizerLoadError for anything else, a rank file whose stem is no known
    encoding or whose bytes are not that encoding's, and an unreadable tokenizer.json.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise TokenizerLoadError(f"cannot load tokenizer {path}: no tokenizer.json in the folder; {_EXPECTED}")
        return _load_huggingface(path / "tokenizer.json", name=path.name)
    if path.is_file() and path.suffix == ".tiktoken":
        return _load_tiktoken(path)
    if path.is_file() and path.suffix == ".json":
        return _load_huggingface(path, name=path.parent.name if path.name == "tokenizer.json" else path.stem)
    raise TokenizerLoadError(f"cannot load tokenizer {path}: {_EXPECTED}")


def _load_tiktoken(path: Path) -> LoadedTokenizer:
    """A tiktoken Encoding from a local rank file, with the split pattern and specials of the encoding it names."""
    if path.stem not in TIKTOKEN_ENCODINGS:
        raise TokenizerLoadError(
            f"unknown tiktoken encoding {path.stem!r} ({path}): the file stem must be one of {', '.join(TIKTOKEN_ENCODINGS)}"
        )
    spec = _tiktoken_spec(path)
    encoding = tiktoken.Encoding(**spec)
    byte_lengths = np.zeros(encoding.n_vocab, dtype=np.int64)
    for piece, rank in spec["mergeable_ranks"].items():
        byte_lengths[rank] = len(piece)
    for special, rank in spec["special_tokens"].items():
        byte_lengths[rank] = len(special.encode())
    return LoadedTokenizer(
        name=path.stem,
        kind="tiktoken",
        path=str(path),
        vocab_size=encoding.n_vocab,
        lmforge=False,
        encoding=encoding,
        _byte_lengths=byte_lengths,
    )


def _tiktoken_spec(path: Path) -> dict[str, Any]:
    """Run tiktoken's own constructor for the encoding, its rank file read from `path` instead of downloaded.

    The split pattern and specials live inside tiktoken's constructor functions; running a copy whose
    `load_tiktoken_bpe` reads the local file keeps them exact without patching tiktoken for other threads.
    The constructor passes the rank file's expected sha256, so a mislabelled file is refused.
    """
    from tiktoken_ext import openai_public

    def load_local(_url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        data = path.read_bytes()
        if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
            raise TokenizerLoadError(
                f"{path} is not tiktoken's {path.stem} rank file (sha256 differs): name the file after the encoding it holds"
            )
        try:
            return tiktoken.load.load_tiktoken_bpe(str(path), expected_hash=expected_hash)
        except ValueError as error:
            raise TokenizerLoadError(f"cannot read tiktoken rank file {path}: {error}") from error

    constructor = openai_public.ENCODING_CONSTRUCTORS[path.stem]
    local_globals = {**vars(openai_public), "load_tiktoken_bpe": load_local}
    local = types.FunctionType(
        constructor.__code__, local_globals, constructor.__name__, constructor.__defaults__, constructor.__closure__
    )
    return local()


def _load_huggingface(path: Path, name: str) -> LoadedTokenizer:
    """A `tokenizers.Tokenizer` from a json file; lmforge's when its folder holds our `_manifest.json`."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for every parse failure
        raise TokenizerLoadError(f"cannot read tokenizer {path}: {error}") from error
    config = json.loads(tokenizer.to_str())
    normalizer = config.get("normalizer") or {}
    return LoadedTokenizer(
        name=name,
        kind="huggingface",
        path=str(path),
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        lmforge=(path.parent / MANIFEST).is_file(),
        tokenizer=tokenizer,
        _byte_lengths=_byte_level_lengths(tokenizer, config),
        _normal_form=normalizer.get("type"),
    )


def _byte_level_lengths(tokenizer: Tokenizer, config: dict[str, Any]) -> np.ndarray | None:
    """Each id's length in bytes when every piece is spelled in the byte-level alphabet; None otherwise.

    Only a byte-level pre-tokenizer without a prefix space, after no normaliser or one Unicode normal
    form (checked per text), makes pieces that are the text's own bytes; count_languages still checks
    that they add up to each text.
    """
    normalizer = config.get("normalizer") or {"type": None}
    pre_tokenizer = config.get("pre_tokenizer") or {}
    byte_level = [step for step in pre_tokenizer.get("pretokenizers", [pre_tokenizer]) if step.get("type") == "ByteLevel"]
    # A prefix space is a byte the text does not have.
    if normalizer["type"] not in _NORMAL_FORMS or not byte_level or any(step.get("add_prefix_space") for step in byte_level):
        return None
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    added = {token["id"]: token["content"] for token in config.get("added_tokens", [])}
    lengths = np.zeros(max(chain(vocab.values(), added, [-1])) + 1, dtype=np.int64)
    for piece, token_id in vocab.items():
        if not alphabet.issuperset(piece):
            return None
        lengths[token_id] = len(piece)
    for token_id, content in added.items():
        lengths[token_id] = len(content.encode())
    return lengths


def read_parallel(folder: str | os.PathLike) -> dict[str, str]:
    """The text of every `<lang>.txt` in `folder`, sorted by language, newlines replaced by single spaces.

    That is Petrov et al.'s recipe (a file's final newline becomes a final space). Every file is read
    and checked before anything is returned. Raises ParallelTextError on invalid UTF-8 (file, line,
    byte offset), on files with different line counts, and on a folder with no .txt files.
    """
    folder = Path(folder)
    files = sorted(file for file in folder.glob("*.txt") if file.is_file()) if folder.is_dir() else []
    if not files:
        raise ParallelTextError(f"no <lang>.txt files in {folder}: expected one UTF-8 file per language, aligned by line")
    contents = {file.stem: _read_utf8(file) for file in files}
    _check_aligned(folder, {lang: _line_count(text) for lang, text in contents.items()})
    return {lang: text.replace("\n", " ") for lang, text in contents.items()}


def _read_utf8(file: Path) -> str:
    """The file decoded as strict UTF-8; where it is not, the error says the line and the byte."""
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ParallelTextError(
            f"{file}: invalid UTF-8 at line {line}, byte offset {error.start} (byte 0x{data[error.start]:02x}: {error.reason})"
        ) from error


def _line_count(text: str) -> int:
    """Lines as an editor counts them: a last line without a newline still counts."""
    return text.count("\n") + (bool(text) and not text.endswith("\n"))


def _check_aligned(folder: Path, lines: dict[str, int]) -> None:
    """Raise ParallelTextError naming the files whose line count differs from the majority's (English's on a tie)."""
    tally = Counter(lines.values())
    if len(tally) == 1:
        return
    top = max(tally.values())
    candidates = [count for count, files in tally.items() if files == top]
    english = lines.get(REFERENCE_LANGUAGE)
    majority = english if english in candidates else candidates[0]
    agreeing = [lang for lang, count in lines.items() if count == majority]
    witness = REFERENCE_LANGUAGE if REFERENCE_LANGUAGE in agreeing else agreeing[0]
    others = f" and {len(agreeing) - 1} other files have" if len(agreeing) > 1 else " has"
    odd = ", ".join(f"{lang}.txt has {count}" for lang, count in lines.items() if count != majority)
    raise ParallelTextError(
        f"unaligned parallel files in {folder}: {witness}.txt{others} {majority} lines, but {odd}; "
        "line N of every file must translate the same sentence"
    )


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
    encode = tokenizer._encode_ids if tokenizer._byte_lengths is not None else tokenizer._encode_offsets
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
    if tokenizer._byte_lengths is not None:
        form = tokenizer._normal_form
        verify = tokenizer.kind != "tiktoken"
        if not form or all(unicodedata.is_normalized(form, doc) for doc in docs):
            ends = _tiled_ends(pieces, tokenizer._byte_lengths, words, verify=verify)
            if ends is not None:
                # Tokens tile each document: a word is split when the first token to end inside it ends before it.
                return int(np.count_nonzero(ends[np.searchsorted(ends, words.starts, "right")] < words.ends))
        pieces = tokenizer._encode_offsets(docs)
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
