"""Gopher's repetition filter with the n-gram statistics computed on integer arrays, same decisions.

datatrove's `GopherRepetitionFilter` builds every word n-gram as a Python string, 2 ≤ n ≤ 10, and
counts them in a `Counter` or a set: nine string joins per word. We compute the same numbers from
the words once turned into integers:

- **top n-grams** (n = 2, 3, 4; joined with " "): the n-gram *tuples* are ranked with numpy
  (rank of (rank of the (n-1)-gram, next word)): equal ranks ⇔ equal tuples ⇔ equal joined
  strings, as long as no word contains a space (else we run datatrove's code). datatrove takes
  `Counter.most_common(1)`: the highest count, ties going to the n-gram seen first, and multiplies
  its string length by its count; with no repeat that is the first n-gram, count 1.
- **duplicated n-grams** (n = 5..10): datatrove joins these with "" (no separator), so different
  tuples can be the same string (["ab", "c"] and ["a", "bc"]), and its greedy scan (skip n words
  after a duplicate; only visited n-grams enter the set) depends on string equality. We hash each
  n-gram's characters (two 31-bit polynomial hashes over the concatenated words, so equal strings
  ⇔ equal hashes except with probability below len/2^61 per pair). Hashes never decide alone: if
  every hash class holds one tuple class, string classes are the tuple classes (equal tuples are
  equal strings; different hashes are different strings); otherwise (a real "" collision or a
  hash collision) the strings of those n-grams are built and compared. The scan then runs on
  integers, and only over n-grams whose class occurs more than once: the others can never be
  found in the set, so they only advance the scan by one.
"""

from __future__ import annotations

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters.gopher_repetition_filter import (
    GopherRepetitionFilter,
    find_all_duplicate,
    find_duplicates,
    find_top_duplicate,
    get_n_grams,
)
from datatrove.utils.text import split_into_words

_P = (np.uint64(2147483647), np.uint64(2147483629))  # primes below 2^31: products fit in 64 bits
_B = (np.uint64(1_000_003), np.uint64(911_382_323))
_powers: list[tuple[np.ndarray, np.ndarray]] = [(np.ones(1, np.uint64), np.ones(1, np.uint64))] * 2


def _power_tables(size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per modulus: B^k and B^-k mod P for k < size (grown by doubling, kept for the process)."""
    global _powers
    have = len(_powers[0][0])
    if have >= size:
        return _powers
    grown = []
    for (pw, inv), p, b in zip(_powers, _P, _B):
        b_inv = np.uint64(pow(int(b), int(p) - 2, int(p)))
        while len(pw) < size:
            n = len(pw)
            step = np.uint64(pow(int(b), n, int(p)))
            step_inv = np.uint64(pow(int(b_inv), n, int(p)))
            pw = np.concatenate([pw, pw * step % p])
            inv = np.concatenate([inv, inv * step_inv % p])
        grown.append((pw, inv))
    _powers = grown
    return _powers


def _rank(keys: np.ndarray) -> np.ndarray:
    return np.unique(keys, return_inverse=True)[1].reshape(-1)


class NgramStats:
    """One document's words as arrays, for the n-gram questions of the Gopher repetition rules."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.n_words = len(words)
        vocab: dict[str, int] = {}
        self.ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), np.int64, self.n_words)
        self.vocab_size = max(len(vocab), 1)
        self.ends = np.zeros(self.n_words + 1, np.int64)  # character offsets of the words, concatenated
        np.cumsum(np.fromiter(map(len, words), np.int64, self.n_words), out=self.ends[1:])
        self._tuples = [self.ids]  # _tuples[n - 1]: rank of each n-gram tuple
        self._hash: tuple[np.ndarray, ...] | None = None

    def tuples(self, n: int) -> np.ndarray:
        """Rank of each word n-gram (position i: words[i:i+n]); equal ranks ⇔ equal tuples."""
        while len(self._tuples) < n:
            k = len(self._tuples)
            prev = self._tuples[-1][: self.n_words - k]
            self._tuples.append(_rank(prev * self.vocab_size + self.ids[k:]))
        return self._tuples[n - 1]

    def top_duplicate(self, n: int) -> int:
        """datatrove's `find_top_duplicate(get_n_grams(words, n))` (n-grams joined with spaces)."""
        ranks = self.tuples(n)
        counts = np.bincount(ranks)
        top = int(counts.max())
        first = 0 if top == 1 else int(np.argmax(counts[ranks] == top))
        return (int(self.ends[first + n] - self.ends[first]) + n - 1) * top

    def _hashes(self, n: int) -> np.ndarray:
        """A 62-bit hash of each n-gram's characters (words joined with "")."""
        if self._hash is None:
            text = "".join(self.words)
            chars = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.uint64)
            tables = _power_tables(len(chars) + 1)
            prefixes = []
            for (pw, inv), p in zip(tables, _P):
                prefix = np.zeros(len(chars) + 1, np.uint64)
                np.cumsum(chars * pw[: len(chars)] % p, out=prefix[1:])  # < 2^31 per term: no overflow
                prefixes.append((prefix % p, inv))
            self._hash = tuple(prefixes)
        starts, stops = self.ends[: self.n_words - n + 1], self.ends[n:]
        h = []
        for (prefix, inv), p in zip(self._hash, _P):
            h.append((prefix[stops] + p - prefix[starts]) % p * inv[starts] % p)
        return (h[0] << np.uint64(31)) | h[1]

    def string_classes(self, n: int) -> np.ndarray:
        """Class of each n-gram's "".join string: equal classes ⇔ equal strings (exact)."""
        ranks = self.tuples(n)
        hashes = _rank(self._hashes(n))
        if hashes.max() == ranks.max():  # one tuple class per hash class (tuple ⇒ string ⇒ hash)
            return ranks
        # some hash class holds several tuple classes: compare those n-grams' strings themselves
        counts = np.bincount(hashes)
        classes = ranks.copy()
        seen: dict[str, int] = {}
        offset = int(ranks.max()) + 1
        for i in np.flatnonzero(counts[hashes] > 1).tolist():
            s = "".join(self.words[i : i + n])
            classes[i] = seen.setdefault(s, offset + len(seen))
        return _rank(classes)

    def all_duplicate(self, n: int) -> int:
        """datatrove's `find_all_duplicate(words, n)`: characters of the n-grams its greedy scan finds again."""
        if self.n_words < n:
            return 0
        classes = self.string_classes(n)
        counts = np.bincount(classes)
        repeated = np.flatnonzero(counts[classes] > 1)
        if repeated.size == 0:
            return 0
        classes_at = classes[repeated].tolist()
        ends = self.ends
        total, idx, seen = 0, 0, set()
        for pos, cls in zip(repeated.tolist(), classes_at):
            if pos < idx:
                continue
            if cls in seen:
                total += int(ends[pos + n] - ends[pos])
                idx = pos + n
            else:
                seen.add(cls)
                idx = pos + 1
        return total


class FastGopherRepetition(GopherRepetitionFilter):
    """datatrove's `GopherRepetitionFilter`, same parameters, same verdicts, n-grams as arrays."""

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        if not text:
            return False, "empty"

        paragraphs = self.paragraph_exp.split(text.strip())
        paragraphs_duplicates, char_duplicates = find_duplicates(paragraphs)
        if self.dup_para_frac and paragraphs_duplicates / len(paragraphs) > self.dup_para_frac:
            return False, "dup_para_frac"
        if self.dup_para_char_frac and char_duplicates / len(text) > self.dup_para_char_frac:
            return False, "dup_para_char_frac"

        lines = self._line_splitter.split(text)
        line_duplicates, char_duplicates = find_duplicates(lines)
        if self.dup_line_frac and line_duplicates / len(lines) > self.dup_line_frac:
            return False, "dup_line_frac"
        if self.dup_line_char_frac and char_duplicates / len(text) > self.dup_line_char_frac:
            return False, "dup_line_char_frac"

        words = split_into_words(text, self.language)
        if any(" " in w for w in words):  # joined n-grams no longer tell their words apart: datatrove's way
            return self._ngram_verdict_by_strings(words, len(text))
        stats = NgramStats(words)
        for n, n_frac in self.top_n_grams:
            if stats.n_words < n:
                continue
            if stats.top_duplicate(n) / len(text) > n_frac:
                return False, f"top_{n}_gram"
        for n, n_frac in self.dup_n_grams:
            if stats.all_duplicate(n) / len(text) > n_frac:
                return False, f"duplicated_{n}_n_grams"
        return True

    def _ngram_verdict_by_strings(self, words: list[str], length: int) -> bool | tuple[bool, str]:
        for n, n_frac in self.top_n_grams:
            n_grams = get_n_grams(words, n)
            if n_grams and find_top_duplicate(n_grams) / length > n_frac:
                return False, f"top_{n}_gram"
        for n, n_frac in self.dup_n_grams:
            if find_all_duplicate(words, n) / length > n_frac:
                return False, f"duplicated_{n}_n_grams"
        return True
