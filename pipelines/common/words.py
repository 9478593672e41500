"""Words for the quality filters and MinHash: datatrove's word tokenizers with a shared memo.

spaCy is fast when a word is looked up rather than rebuilt; `SharedWordTokenizer` keeps what a
language's tokenizer made of each whitespace chunk (`SpacyChunks`), so the filters and the
signature step reuse the same words instead of tokenising every text again.
"""

from __future__ import annotations

import logging
import re
from functools import cache

from datatrove.utils.text import split_into_sentences
from datatrove.utils.word_tokenizers import (
    SpaCyTokenizer,
    WhitespaceTokenizer,
    WordTokenizer,
    chunk_text_on_bytes,
    load_word_tokenizer,
    strip_strings,
)
from loguru import logger

from pipelines.common.scripts import script_of

# Outside a memory zone spaCy keeps every word it has seen (that is what makes it fast: a word is
# looked up, not rebuilt, the next time); past this many we start from a fresh vocabulary.
VOCAB_LIMIT = 200_000


_CHUNK = re.compile(r"\S+")


# A string spaCy's vocabulary mistakes for its attribute symbol (datatrove retries without it); such
# texts take datatrove's own path, whatever spaCy does with them.
BREAKS_SPACY = "IS_ALPHA"


class SpacyChunks:
    """Words and sentence counts of a rule-based spaCy tokenizer, memoised per whitespace-separated chunk.

    spaCy's `Tokenizer` splits text at whitespace and tokenizes each chunk on its own (prefixes,
    suffixes, infixes, special cases), so the words of a text are the words of its chunks, which
    we keep in a dict: a text costs a `str.split` and dict look-ups instead of a `Doc`. One spaCy
    step looks across chunks: after splitting, a `PhraseMatcher` finds special-case token
    sequences (":)", "Dr. iur.") in the whole `Doc`, and a match may straddle two chunks separated
    by exactly one space. So every boundary where the last token of one chunk and the first of the
    next form a consecutive pair of some special case's tokens (the tokens *before* special cases
    are applied: where a special case touches a chunk's edge we test the chunk's characters) is
    re-tokenized whole, as spaCy would see it. Sentence counts (C4) use the sentencizer's rule on
    the cached tokens. Both are checked against datatrove's tokenizer in the tests.
    """

    def __init__(self, inner: SpaCyTokenizer) -> None:
        from spacy.tokenizer import Tokenizer

        self.inner = inner
        nlp = inner.tokenizer
        tok = nlp.tokenizer
        self.punct_chars = frozenset(nlp.get_pipe("sentencizer").punct_chars)
        self._punct_re = re.compile("[" + re.escape("".join(sorted(self.punct_chars))) + "]")
        # the matcher's patterns: each matched special case, split by the rules without special cases
        plain = Tokenizer(
            nlp.vocab,
            rules={},
            prefix_search=tok.prefix_search,
            suffix_search=tok.suffix_search,
            infix_finditer=tok.infix_finditer,
            token_match=tok.token_match,
            url_match=tok.url_match,
        )
        pairs: set[tuple[str, str]] = set()
        matched: set[str] = set()
        self.usable = True
        for rule in tok.rules:
            if tok.faster_heuristics and not (
                tok.find_prefix(rule) or tok.find_suffix(rule) or tok.find_infix(rule) or " " in rule
            ):
                continue
            matched.add(rule)
            parts = [t.text for t in plain(rule)]
            if len(parts) > 1 and any(not p or p != p.strip() or len(p.split()) != 1 for p in parts):
                self.usable = False  # a pattern with a whitespace token: boundaries are not enough
            pairs.update(zip(parts, parts[1:]))
        self._left = frozenset(a for a, _ in pairs)
        self._right = frozenset(b for _, b in pairs)
        self._matched = frozenset(matched)
        self._matched_lengths = sorted({len(r) for r in matched})
        self._left_lengths = sorted({len(a) for a in self._left})
        self._right_lengths = sorted({len(b) for b in self._right})
        # chunk -> (words, may end a pattern pair, may start one, sentence summary)
        self._chunks: dict[str, tuple[tuple[str, ...], bool, bool, tuple[int, bool, int, bool]]] = {}
        self._regions: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ chunks

    @staticmethod
    def _ends(s: str, strings: frozenset[str], lengths: list[int]) -> bool:
        return any(s[-k:] in strings for k in lengths if k <= len(s))

    @staticmethod
    def _starts(s: str, strings: frozenset[str], lengths: list[int]) -> bool:
        return any(s[:k] in strings for k in lengths if k <= len(s))

    def _summary(self, tokens: list[tuple[str, bool]], seen: bool) -> tuple[int, bool]:
        """The sentencizer's rule over `tokens` (text, is_punct): new sentence starts, and its state after."""
        starts = 0
        for text, is_punct in tokens:
            in_chars = text in self.punct_chars
            if seen and not is_punct and not in_chars:
                starts += 1
                seen = False
            elif in_chars:
                seen = True
        return starts, seen

    def _tokenizer(self):  # noqa: ANN202 - spaCy's Tokenizer
        return self.inner.tokenizer.tokenizer

    def _trim(self) -> None:
        """Bound memory: spaCy's vocabulary as before (VOCAB_LIMIT words), our memo to as many chunks."""
        nlp = self.inner._tokenizer
        if nlp is not None and len(nlp.vocab) > VOCAB_LIMIT:
            self.inner._tokenizer = None  # datatrove rebuilds a fresh blank pipeline on next use
        if len(self._chunks) + len(self._regions) > VOCAB_LIMIT:
            self._chunks.clear()
            self._regions.clear()

    def _entry(self, chunk: str, tokens: list[tuple[str, bool]]) -> tuple:  # noqa: ANN401
        words = tuple(strip_strings([text for text, _ in tokens]))
        if self._ends(chunk, self._matched, self._matched_lengths):  # a special case may have replaced the last token
            end = self._ends(chunk, self._left, self._left_lengths)
        else:
            end = tokens[-1][0] in self._left
        if self._starts(chunk, self._matched, self._matched_lengths):
            start = self._starts(chunk, self._right, self._right_lengths)
        else:
            start = tokens[0][0] in self._right
        entry = (words, end, start, (*self._summary(tokens, False), *self._summary(tokens, True)))
        self._chunks[chunk] = entry
        return entry

    def _fill(self, missing: list[str]) -> None:
        """Tokenize the chunks we have not seen, in one spaCy call: joined by newlines, which become
        whitespace tokens that no special case contains, so no pattern can match across them."""
        missing = list(dict.fromkeys(missing))
        tokens: list[list[tuple[str, bool]]] = [[]]
        for t in self._tokenizer()("\n".join(missing)):
            text = t.text
            if text == "\n":
                tokens.append([])
            else:
                tokens[-1].append((text, t.is_punct))
        if len(tokens) != len(missing) or not all(tokens):  # never seen; one chunk at a time then
            tokens = [[(t.text, t.is_punct) for t in self._tokenizer()(chunk)] for chunk in missing]
        for chunk, chunk_tokens in zip(missing, tokens):
            self._entry(chunk, chunk_tokens)
        self._trim()

    def _entries(self, chunks: list[str]) -> list:  # noqa: ANN401
        get = self._chunks.get
        entries = [get(c) for c in chunks]
        if None in entries:
            self._fill([c for e, c in zip(entries, chunks) if e is None])
            entries = [e if e is not None else get(c) or self._fill([c]) or get(c) for e, c in zip(entries, chunks)]
        return entries

    def _joined(self, text: str, chunks: list[str], entries: list) -> list[tuple[int, int]]:  # noqa: ANN401
        """Runs [first, last] of chunks that spaCy may tokenize together (see the class docstring)."""
        flagged = [i for i in range(len(entries) - 1) if entries[i][1] and entries[i + 1][2]]
        if not flagged:
            return []
        if " ".join(chunks) != text:  # only chunks separated by exactly one space can be matched together
            bounds = [m.span() for m in _CHUNK.finditer(text)]
            flagged = [i for i in flagged if bounds[i + 1][0] - bounds[i][1] == 1 and text[bounds[i][1]] == " "]
        runs: list[tuple[int, int]] = []
        for i in flagged:
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
        return runs

    # ------------------------------------------------------------------ the two questions

    def words(self, text: str) -> list[str]:
        """`datatrove`'s `word_tokenize(text)` for this tokenizer."""
        chunks = text.split()
        entries = self._entries(chunks)
        runs = self._joined(text, chunks, entries)
        if not runs:
            return [w for e in entries for w in e[0]]
        words: list[str] = []
        done = 0
        for first, last in runs:
            words.extend(w for e in entries[done:first] for w in e[0])
            region = " ".join(chunks[first : last + 1])
            region_words = self._regions.get(region)
            if region_words is None:
                region_words = self._regions[region] = strip_strings([t.text for t in self._tokenizer()(region)])
                self._trim()
            words.extend(region_words)
            done = last + 1
        words.extend(w for e in entries[done:] for w in e[0])
        return words

    def sentences(self, line: str) -> int:
        """`len(split_into_sentences(line, datatrove's tokenizer))`: 1 + the sentencizer's new starts."""
        if self._punct_re.search(line) is None:
            return 1  # no sentence-ending token, one sentence (an empty line also counts 1 in datatrove)
        chunks = line.split()
        entries = self._entries(chunks)
        if self._joined(line, chunks, entries):
            tokens = [(t.text, t.is_punct) for t in self._tokenizer()(line)]
            self._trim()
            return 1 + self._summary(tokens, False)[0]
        spaced = " ".join(chunks) == line
        bounds = None if spaced else [m.span() for m in _CHUNK.finditer(line)]
        starts, seen = 0, False
        for i, entry in enumerate(entries):
            if i and not spaced and line[bounds[i - 1][1] : bounds[i][0]] != " " and seen:
                starts += 1  # a whitespace token (anything but one space) starts a sentence after a period
                seen = False
            summary = entry[3]
            if seen:
                starts += summary[2]
                seen = summary[3]
            else:
                starts += summary[0]
                seen = summary[1]
        return 1 + starts


class SharedWordTokenizer(WordTokenizer):
    """datatrove's tokenizer for one language, shared by the filters (see the module docstring)."""

    def __init__(self, inner: WordTokenizer) -> None:
        super().__init__(inner.language)
        self.inner = inner
        self._last: tuple[str, list[str]] | None = None
        self._chunks: SpacyChunks | None = None
        if isinstance(inner, WhitespaceTokenizer) and type(inner) is WhitespaceTokenizer:
            spacy_inner = inner._spacy_xx  # datatrove splits its words with spaCy's multi-language rules
        else:
            spacy_inner = inner
        if isinstance(spacy_inner, SpaCyTokenizer) and _rule_based(spacy_inner):
            try:
                chunks = SpacyChunks(spacy_inner)
            except Exception as e:  # an unexpected spaCy setup: datatrove's way, slower
                logger.warning(f"{inner.language}: words split without the chunk memo ({e})")
            else:
                self._chunks = chunks if chunks.usable else None
        self._sentences_by_chunk = self._chunks is not None and spacy_inner is inner

    def word_tokenize(self, text: str) -> list[str]:
        if self._last is not None and (self._last[0] is text or self._last[0] == text):
            return self._last[1]
        words = self._split(text)
        self._last = (text, words)
        return words

    def _split(self, text: str) -> list[str]:
        inner = self.inner
        if BREAKS_SPACY in text:  # datatrove removes it, or not, depending on where spaCy fails
            return inner.word_tokenize(text)
        if self._chunks is not None:
            try:
                return self._chunks.words(text)
            except Exception:
                return inner.word_tokenize(text)
        if not isinstance(inner, SpaCyTokenizer):
            return inner.word_tokenize(text)
        nlp = inner.tokenizer
        try:
            if inner.language == "ja":  # datatrove splits Japanese into chunks of at most 40 kB
                words = strip_strings([t.text for part in chunk_text_on_bytes(text, 40000) for t in nlp.tokenizer(part)])
            else:
                words = strip_strings([token.text for token in nlp.tokenizer(text)])
        except Exception:  # datatrove knows the strings that break spaCy
            return inner.word_tokenize(text)
        if len(nlp.vocab) > VOCAB_LIMIT:
            inner._tokenizer = None  # datatrove rebuilds a fresh blank pipeline on next use
        return words

    def count_sentences(self, line: str) -> int:
        """`len(split_into_sentences(line, self.inner))`, what C4 counts, without per-call memory zones."""
        inner = self.inner
        if BREAKS_SPACY in line:
            return len(split_into_sentences(line, inner))
        if self._sentences_by_chunk:
            try:
                return self._chunks.sentences(line)
            except Exception:
                return len(split_into_sentences(line, inner))
        if isinstance(inner, SpaCyTokenizer) and len(line.encode()) <= 30_000:  # one datatrove chunk for Japanese
            nlp = inner.tokenizer
            try:
                doc = nlp.get_pipe("sentencizer")(nlp.tokenizer(line))
            except Exception:
                return len(split_into_sentences(line, inner))
            return max(1, sum(1 for _ in doc.sents))
        return len(split_into_sentences(line, inner))

    def sent_tokenize(self, text: str) -> list[str]:
        return self.inner.sent_tokenize(text)

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return self.inner.span_tokenize(text)


def _rule_based(inner: SpaCyTokenizer) -> bool:
    from spacy.tokenizer import Tokenizer

    return type(inner.tokenizer.tokenizer) is Tokenizer


CHINESE_SCRIPTS = frozenset({"Hani", "Hans", "Hant"})  # datatrove splits them with jieba


def _quiet_jieba() -> None:
    """jieba logs its dictionary loading at DEBUG through a stderr handler it adds on import, in every process."""
    try:
        import jieba
    except ImportError:
        return
    jieba.setLogLevel(logging.WARNING)


@cache
def shared_word_tokenizer(lang: str) -> WordTokenizer:
    """One per language and process: the filters and MinHash share its memo."""
    if script_of(lang) in CHINESE_SCRIPTS:
        _quiet_jieba()
    try:
        inner = load_word_tokenizer(lang)
        inner.word_tokenize("probe text")
    except Exception as e:  # no table entry, or its package is not installed
        logger.warning(f"no word tokenizer for {lang} ({e}); splitting its words on whitespace")
        inner = WhitespaceTokenizer()
    return SharedWordTokenizer(inner)
