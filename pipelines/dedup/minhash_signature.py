"""MinHash signatures, stage 1 of datatrove's MinHash dedup: the same files, each language's own words, faster.

`MinhashSignatures` writes what datatrove's `MinhashDedupSignature` writes, byte for byte: for
every band `bucket_XXX/{rank:05d}.minhash.sig`, one record per document (the band's hashes as
little-endian uint64, or uint32 at 32-bit precision, then the document's index in the task's
input as uint32), sorted by all fields, the written bytes verified by hash. datatrove's
`MinhashDedupBuckets` reads them unchanged. The signature of a document is bit-identical to
datatrove's whenever both see the same words: the same text normalisation (`simplify_text`), the
same shingles (`" ".join` of n consecutive words, hashed by the configured 32/64-bit hash of its
UTF-8 bytes), the same permutations (`(h * a + b) mod 2^64 mod (2^61 - 1)` with a and b drawn
from `RandomState(seed)`, as datatrove does it, wrap-around included).

What differs from datatrove, and why (measured on FLORES documents of ~12 sentences, 250 English
words, one core of this machine; `bench/dedup.py` prints the current numbers):

- **it runs with xxhash 4**: datatrove 0.10 hashes `str` shingles, which xxhash 4 (installed here
  through `datasets`) refuses with "Strings must be encoded before hashing", so its stage 1 fails
  unless `xxhash<4` is pinned; we hash the UTF-8 bytes, the value xxhash 3 gave for the string.

- **each document's own language**: datatrove's step splits every document with one language's
  tokenizer; ours takes `doc.metadata["lang"]` and that language's shared word tokenizer from
  `pipelines.common.words.shared_word_tokenizer` (spaCy's bare tokenizer, jieba, Sudachi; whitespace where no
  package). On spaCy languages the words are identical to datatrove's tokenizer, and the tokenizer
  was the bottleneck: datatrove rebuilds every word's lexeme inside a per-document memory zone,
  5.5 ms of its 8.7 ms per document; the shared tokenizer keeps its vocabulary: 0.23 ms.
- **Japanese and the whitespace fallback**: the same words by a shorter road (`word_tokenizer`):
  Sudachi's surfaces without building a spaCy `Doc` (3.7 ms instead of 18-24 ms per document),
  and spaCy's `xx` tokenizer run bare instead of in a per-document memory zone (0.19 ms instead
  of 5.4 ms per Thai document).
- **normalisation**: `simplify_text` maps punctuation and drops combining marks one character at a
  time; we do both with a code-point lookup table in numpy, same output on all 28 FLORES
  languages (1.65x faster on them).
- **permutations**: `% (2^61 - 1)` on uint64 is numpy's slowest operation here; the same value
  comes from a Mersenne fold (`(x & p) + (x >> 61)`, minus p once if needed) in preallocated
  buffers: 2-3x faster on this step, identical results.
- **documents shorter than n words**: datatrove emits no signature, so such a document is never a
  near-duplicate of anything. We hash its whole (normalised) word sequence as one shingle
  (`short_docs="one_shingle"`, the default): identical short documents then share every band and
  are found; a one-shingle signature cannot match a longer document's (its shingle joins fewer
  than n words, so equal hashes would need a 64-bit collision). `short_docs="skip"` is
  datatrove's behaviour. Documents with no words at all get no signature in either.
- **sorting in bounded memory**: datatrove reads a whole band file into memory to sort it (68 bytes
  per document per band). We spill sorted runs of at most `sort_buffer_records` records and merge
  them, so memory stays flat however many documents a task holds; one run is the common case
  and gives the very same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import unicodedata
from dataclasses import replace
from functools import cache
from typing import BinaryIO, Callable, Literal

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.utils.hashing import HashConfig, create_hash_func
from datatrove.utils.text import PUNCTUATION_TRANS, WHITESPACE_PATTERN, TextNormConfig, simplify_text
from datatrove.utils.typeshelper import StatHints
from datatrove.utils.word_tokenizers import SpaCyTokenizer, WhitespaceTokenizer, WordTokenizer, chunk_text_on_bytes
from fsspec.implementations.local import LocalFileSystem

from pipelines.common.words import SharedWordTokenizer, shared_word_tokenizer

MERSENNE = np.uint64((1 << 61) - 1)
DEFAULT_LANG = "eng_Latn"
ShortDocs = Literal["one_shingle", "skip"]

# Shingles per block of the (shingles x hashes) permutation matrix: 2048 x 112 x 8 bytes = 1.8 MB,
# small enough for the cache (one big matrix for a batch of documents measured 3-5x slower).
BLOCK_ROWS = 2048
# Documents hashed together (shingling is per document; records are written once per batch).
BATCH_DOCS = 256


# --- text -> shingles ----------------------------------------------------------------------------


@cache
def _lookup(kind: str) -> np.ndarray:
    """A bool per code point: combining marks (category Mn, what `simplify_text` drops) or its punctuation."""
    table = np.zeros(0x110000, dtype=bool)
    if kind == "marks":
        table[[cp for cp in range(0x110000) if unicodedata.category(chr(cp)) == "Mn"]] = True
    else:
        table[list(PUNCTUATION_TRANS)] = True
    return table


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def normalise(text: str, config: TextNormConfig | None = None) -> str:
    """datatrove's `simplify_text(text, config)`, same output, faster on non-ASCII text.

    `simplify_text` maps punctuation and drops combining marks one character at a time through
    Python dicts and a generator (0.3-0.5 ms per FLORES document in Russian or Thai); we do both
    with a lookup table over the code points in numpy, and skip the marks in ASCII text.
    """
    config = config or TextNormConfig()
    text = simplify_text(text, replace(config, remove_punctuation=False, norm_whitespace=False, norm_unicode_diacritics=False))
    if config.remove_punctuation:
        points = _code_points(text).copy()
        points[_lookup("punctuation")[points]] = ord(" ")
        text = points.tobytes().decode("utf-32-le")
    if config.norm_whitespace:
        text = WHITESPACE_PATTERN.sub(" ", text.strip())
    if config.norm_unicode_diacritics and not text.isascii():  # ASCII: NFD changes nothing, no marks
        points = _code_points(unicodedata.normalize("NFD", text))
        text = points[~_lookup("marks")[points]].tobytes().decode("utf-32-le")
    return text.strip()


class SudachiWords(WordTokenizer):
    """datatrove's Japanese words straight from Sudachi: the same words, without building a spaCy Doc.

    datatrove's Japanese tokenizer runs Sudachi, then builds a spaCy `Doc` with tags, lemmas and
    readings for every morpheme, of which word splitting keeps only the surface: 21-24 ms of a
    FLORES document, against 3.5-4.3 ms for Sudachi alone (identical words on all 997 FLORES
    Japanese sentences and on normalised documents; the test suite checks it).
    """

    def __init__(self, inner: WordTokenizer) -> None:
        super().__init__(inner.language)
        self.inner = inner
        self._sudachi = inner.tokenizer.tokenizer.tokenizer  # spaCy nlp -> datatrove's JapaneseTokenizer -> Sudachi

    def word_tokenize(self, text: str) -> list[str]:
        # datatrove's byte chunks (Sudachi's input limit), then its strip_strings on the surfaces
        return [
            w for chunk in chunk_text_on_bytes(text, 40000) for m in self._sudachi.tokenize(chunk) if (w := m.surface().strip())
        ]

    def sent_tokenize(self, text: str) -> list[str]:
        return self.inner.sent_tokenize(text)

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return self.inner.span_tokenize(text)


@cache
def word_tokenizer(lang: str) -> WordTokenizer:
    """The language's shared word tokenizer (the quality filters'), on its fastest path to the same words.

    Two cases take a shortcut that gives identical words: Japanese (`SudachiWords`), and the
    whitespace fallback, which is datatrove's spaCy `xx` tokenizer run inside a per-document memory
    zone (6 ms per Thai FLORES document): we run it bare, as the shared tokenizer runs spaCy.
    """
    words = shared_word_tokenizer(lang)
    inner = getattr(words, "inner", None)
    if isinstance(inner, WhitespaceTokenizer):
        return SharedWordTokenizer(inner._spacy_xx)
    if isinstance(inner, SpaCyTokenizer) and inner.language == "ja":
        return SudachiWords(inner)
    return words


def shingle_hashes(
    words: list[str],
    n_grams: int,
    hash_func: Callable[[bytes], int],
    short_docs: ShortDocs = "one_shingle",
) -> np.ndarray:
    """Hashes (uint64) of `" ".join` of each run of `n_grams` words, datatrove's shingles.

    With fewer than `n_grams` words: one shingle of all of them (`one_shingle`) or none (`skip`).
    """
    count = len(words) - n_grams + 1
    if count <= 0:
        if not words or short_docs == "skip":
            return np.empty(0, dtype=np.uint64)
        return np.array([hash_func(" ".join(words).encode())], dtype=np.uint64)
    # a join per shingle measured faster than slicing one joined buffer (fewer Python objects)
    return np.fromiter((hash_func(" ".join(words[i : i + n_grams]).encode()) for i in range(count)), np.uint64, count)


def shingles(
    text: str,
    lang: str = DEFAULT_LANG,
    n_grams: int = 5,
    config: MinhashConfig | None = None,
    short_docs: ShortDocs = "one_shingle",
) -> np.ndarray:
    """The distinct shingle hashes of `text` exactly as `MinhashSignatures` sees them (sorted uint64).

    This is the set whose Jaccard similarity MinHash estimates: use it to measure true similarity.
    """
    config = config or MinhashConfig(n_grams=n_grams)
    words = word_tokenizer(lang).word_tokenize(normalise(text, config.norm_config))
    hashes = shingle_hashes(words, config.n_grams, create_hash_func(config.hash_config, bytes), short_docs)
    return np.unique(hashes)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sets of distinct shingle hashes (1.0 for two empty sets)."""
    union = len(np.union1d(a, b))
    return len(np.intersect1d(a, b, assume_unique=True)) / union if union else 1.0


# --- shingles -> signatures ----------------------------------------------------------------------


def permutation_parameters(config: MinhashConfig) -> tuple[np.ndarray, np.ndarray]:
    """datatrove's (a, b), shape (1, hashes): the same draws from `RandomState(seed)`."""
    num_hashes = config.num_buckets * config.hashes_per_bucket
    gen = np.random.RandomState(config.seed)
    a = gen.randint(1, MERSENNE, dtype=np.uint64, size=(1, num_hashes))
    b = gen.randint(0, MERSENNE, dtype=np.uint64, size=(1, num_hashes))
    return a, b


class Permuter:
    """Min over a document's shingles of each permutation, bit-identical to datatrove's `get_signature`."""

    def __init__(self, config: MinhashConfig) -> None:
        self.a, self.b = permutation_parameters(config)
        self.hash_config = config.hash_config
        self._mask = np.uint64(config.hash_config.max) if config.hash_config.precision == 32 else None
        num_hashes = self.a.shape[1]
        self._x = np.empty((BLOCK_ROWS, num_hashes), dtype=np.uint64)
        self._t = np.empty((BLOCK_ROWS, num_hashes), dtype=np.uint64)

    def signature(self, shingle_hashes: np.ndarray) -> np.ndarray:
        """(hashes,) signature of a non-empty array of shingle hashes, in the configured precision."""
        best = None
        for start in range(0, len(shingle_hashes), BLOCK_ROWS):
            block = shingle_hashes[start : start + BLOCK_ROWS].reshape(-1, 1)
            x, t = self._x[: len(block)], self._t[: len(block)]
            np.multiply(block, self.a, out=x)  # wraps mod 2^64, as datatrove's does
            x += self.b
            # x mod (2^61 - 1) without a division: x = q * 2^61 + r ≡ q + r, and q + r < 2 * (2^61 - 1)
            np.right_shift(x, np.uint64(61), out=t)
            x &= MERSENNE
            x += t
            np.subtract(x, MERSENNE, out=t)  # wraps to a huge value where x < p, so min() picks x
            np.minimum(x, t, out=x)
            if self._mask is not None:  # 32-bit: datatrove keeps the low 32 bits, then takes the min
                x &= self._mask
            low = x.min(axis=0)
            best = low if best is None else np.minimum(best, low)
        return best.astype(self.hash_config.np_dtype)


# --- the pipeline step ---------------------------------------------------------------------------


def record_dtype(config: MinhashConfig) -> np.dtype:
    """One band record of a stage-1 file: the band's hashes, then the document index (datatrove's layout)."""
    hash_format = f"<{config.hash_config.struct_format}"
    fields = [(f"field{i + 1}", hash_format) for i in range(config.hashes_per_bucket)]
    return np.dtype(fields + [(f"field{config.hashes_per_bucket + 1}", "<I")])


def signature_file(bucket: int, rank: int) -> str:
    return f"bucket_{bucket:03d}/{rank:05d}.minhash.sig"


class MinhashSignatures(PipelineStep):
    """MinHash stage 1: per-band signature files in datatrove's format, each document in its own language.

    Args:
        output_folder: where `bucket_XXX/{rank:05d}.minhash.sig` go (any datatrove folder).
        config: datatrove's `MinhashConfig` (n-grams, bands, hashes per band, seed, normalisation, hash).
        default_lang: the language of documents without `metadata["lang"]`.
        short_docs: what a document with fewer words than `n_grams` gets (see the module docstring).
        sort_buffer_records: the most records per band sorted in memory at once (68 bytes each).

    Raises `ValueError` at the end of `run` if a written file does not read back as written.
    """

    type = "🫂 - DEDUP"
    name = "🎯 MinHash signatures (per language)"

    def __init__(
        self,
        output_folder: DataFolderLike,
        config: MinhashConfig | None = None,
        default_lang: str = DEFAULT_LANG,
        short_docs: ShortDocs = "one_shingle",
        sort_buffer_records: int = 262_144,
    ) -> None:
        super().__init__()
        self.output_folder = get_datafolder(output_folder)
        self.config = config or MinhashConfig()
        self.default_lang = default_lang
        self.short_docs = short_docs
        self.sort_buffer_records = max(2, sort_buffer_records)
        self.dtype = record_dtype(self.config)
        self._hash = create_hash_func(self.config.hash_config, bytes)
        self._permuter: Permuter | None = None
        self._tokenizers: dict[str, WordTokenizer] = {}

    def _words(self, text: str, lang: str) -> list[str]:
        tokenizer = self._tokenizers.get(lang)
        if tokenizer is None:
            tokenizer = self._tokenizers[lang] = word_tokenizer(lang)
        return tokenizer.word_tokenize(normalise(text, self.config.norm_config))

    def signatures(self, texts: list[str], langs: list[str]) -> list[np.ndarray | None]:
        """One signature (hashes,) per text, None where the text has no shingle."""
        if self._permuter is None:
            self._permuter = Permuter(self.config)
        out: list[np.ndarray | None] = []
        for text, lang in zip(texts, langs):
            words = self._words(text, lang)
            if 0 < len(words) < self.config.n_grams:
                self.stat_update("short_doc")
            hashes = shingle_hashes(words, self.config.n_grams, self._hash, self.short_docs)
            out.append(self._permuter.signature(hashes) if len(hashes) else None)
        return out

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        """Consume the documents and write this rank's band files (eagerly, like datatrove's stage 1)."""
        with self.track_time():
            spill_dir = self._spill_dir(rank)
            try:
                spills = [open(os.path.join(spill_dir, f"{bi:03d}.unsorted"), "wb") for bi in range(self.config.num_buckets)]
                try:
                    batch: list[tuple[int, str, str]] = []
                    for doc_idx, doc in enumerate(data):
                        self.stat_update(StatHints.total)
                        batch.append((doc_idx, doc.text, doc.metadata.get("lang") or self.default_lang))
                        if len(batch) == BATCH_DOCS:
                            self._write_batch(batch, spills)
                            batch = []
                    if batch:
                        self._write_batch(batch, spills)
                finally:
                    for f in spills:
                        f.close()
                for bi in range(self.config.num_buckets):
                    self._sort_bucket(os.path.join(spill_dir, f"{bi:03d}.unsorted"), signature_file(bi, rank), spill_dir)
            finally:
                shutil.rmtree(spill_dir, ignore_errors=True)

    def _spill_dir(self, rank: int) -> str:
        """An empty folder for this rank's spills: next to the output when it is local (sized for it), else in
        the system's temp folder. The local one is named by the rank alone, so a rerun of a task that was killed
        mid-spill clears what the killed attempt left there instead of leaving it in the lake for good."""
        if not isinstance(self.output_folder.fs, LocalFileSystem):
            return tempfile.mkdtemp(prefix=f".spill-{rank:05d}-")
        spill_dir = os.path.join(self.output_folder.path, f".spill-{rank:05d}")
        shutil.rmtree(spill_dir, ignore_errors=True)
        os.makedirs(spill_dir)
        return spill_dir

    def _write_batch(self, batch: list[tuple[int, str, str]], spills: list[BinaryIO]) -> None:
        sigs = self.signatures([text for _, text, _ in batch], [lang for _, _, lang in batch])
        kept = [(idx, sig) for (idx, _, _), sig in zip(batch, sigs) if sig is not None]
        self.stat_update("no_signature", value=len(batch) - len(kept))
        if not kept:
            return
        matrix = np.stack([sig for _, sig in kept])
        indices = np.array([idx for idx, _ in kept], dtype=np.uint32)
        rows = self.config.hashes_per_bucket
        records = np.empty(len(kept), dtype=self.dtype)
        names = self.dtype.names
        for bi, spill in enumerate(spills):
            for j in range(rows):
                records[names[j]] = matrix[:, bi * rows + j]
            records[names[rows]] = indices
            spill.write(records.tobytes())

    # --- sorting: sorted runs of bounded size, merged -----------------------------------------

    def _sorted(self, records: np.ndarray) -> np.ndarray:
        """Records in datatrove's order (all fields, first to last); lexsort takes the last key first."""
        order = np.lexsort([records[name] for name in reversed(self.dtype.names)])
        return records[order]

    def _sort_bucket(self, unsorted_path: str, file_path: str, spill_dir: str) -> None:
        size = os.path.getsize(unsorted_path)
        itemsize = self.dtype.itemsize
        if size % itemsize:
            raise ValueError(f"corrupted signature spill {unsorted_path}: {size} bytes is not a whole number of records")
        total = size // itemsize
        with open(unsorted_path, "rb") as f:
            if total <= self.sort_buffer_records:
                blocks = iter([self._sorted(np.fromfile(f, dtype=self.dtype, count=total))] if total else [])
            else:
                runs = []
                while chunk := f.read(self.sort_buffer_records * itemsize):
                    run_path = f"{unsorted_path}.run{len(runs):05d}"
                    self._sorted(np.frombuffer(chunk, dtype=self.dtype)).tofile(run_path)
                    runs.append(run_path)
                blocks = self._merge(runs)
        os.remove(unsorted_path)
        self._write_verified(blocks, file_path, total)

    def _merge(self, runs: list[str]):
        """Sorted blocks from sorted run files: each step emits every record ≤ the smallest buffer tail."""
        per_run = max(1024, self.sort_buffer_records // len(runs))
        files = [open(path, "rb") for path in runs]
        try:
            buffers = [np.fromfile(f, dtype=self.dtype, count=per_run) for f in files]
            done = [len(b) < per_run for b in buffers]
            while any(len(b) for b in buffers):
                # the smallest last record among buffers whose run has more on disk bounds what is safe to emit
                tails = [tuple(b[-1].item()) for b, d in zip(buffers, done) if len(b) and not d]
                bound = min(tails) if tails else None
                parts = []
                for i, buf in enumerate(buffers):
                    take = len(buf) if bound is None else self._count_at_most(buf, bound)
                    if take:
                        parts.append(buf[:take])
                        buffers[i] = buf[take:]
                    if not len(buffers[i]) and not done[i]:
                        buffers[i] = np.fromfile(files[i], dtype=self.dtype, count=per_run)
                        done[i] = len(buffers[i]) < per_run
                if parts:
                    yield self._sorted(np.concatenate(parts))
        finally:
            for f in files:
                f.close()
            for path in runs:
                os.remove(path)

    def _count_at_most(self, buf: np.ndarray, bound: tuple) -> int:
        """How many leading records of the sorted `buf` are ≤ `bound` (lexicographic over all fields)."""
        less = np.zeros(len(buf), dtype=bool)
        equal = np.ones(len(buf), dtype=bool)
        for name, value in zip(self.dtype.names, bound):
            column = buf[name]
            less |= equal & (column < value)
            equal &= column == value
        return int(np.count_nonzero(less | equal))

    def _write_verified(self, blocks, file_path: str, total: int) -> None:
        """Write the sorted blocks, then read the file back and compare its hash (datatrove's check)."""
        digest = hashlib.blake2b(digest_size=16)
        written = 0
        last = None
        with self.output_folder.open(file_path, mode="wb") as fo:
            for block in blocks:
                first = tuple(block[0].item())
                if last is not None and first < last:
                    raise ValueError(f"signature records out of order in {file_path}")
                last = tuple(block[-1].item())
                data = memoryview(block.view(np.uint8))
                digest.update(data)
                fo.write(data)
                written += len(block)
        if written != total:
            raise ValueError(f"wrote {written} signature records to {file_path}, expected {total}")
        verify = hashlib.blake2b(digest_size=16)
        read = 0
        with self.output_folder.open(file_path, mode="rb") as fi:
            while chunk := fi.read(1 << 20):
                verify.update(chunk)
                read += len(chunk)
        if read != total * self.dtype.itemsize or verify.digest() != digest.digest():
            raise ValueError(
                f"corrupted MinHash signature file {file_path}: expected {total * self.dtype.itemsize} bytes, read {read}"
            )


def reference_signature_step(output_folder: DataFolderLike, config: MinhashConfig | None = None, lang: str = DEFAULT_LANG):
    """datatrove's own `MinhashDedupSignature` for one language, the anchor of tests and the benchmark.

    Two adjustments, so that it runs here and does the same work as ours:
    - datatrove hashes `str` shingles with `xxhash.xxh64_intdigest(str)`, which xxhash < 4 encoded
      as UTF-8 and xxhash 4 refuses ("Strings must be encoded before hashing"); under xxhash 4 we
      hand it the UTF-8 bytes itself, the value xxhash 3 computed;
    - where datatrove's tokenizer for the language cannot load (its package is not installed), it
      splits on whitespace, as our shared tokenizer then does.
    """
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
    from datatrove.utils.word_tokenizers import WhitespaceTokenizer, load_word_tokenizer

    try:
        tokenizer = load_word_tokenizer(lang)
        tokenizer.word_tokenize("probe text")
    except Exception:  # same fallback as pipelines.common.words
        tokenizer = WhitespaceTokenizer()
    step = MinhashDedupSignature(output_folder, config or MinhashConfig(), language=tokenizer)
    bytes_hash = create_hash_func(step.config.hash_config, bytes)
    try:
        step._hash_func("probe")
    except TypeError:
        step._hash_func = lambda text: bytes_hash(text.encode("utf-8"))
    return step


__all__ = [
    "MERSENNE",
    "HashConfig",
    "MinhashConfig",
    "MinhashSignatures",
    "Permuter",
    "jaccard",
    "normalise",
    "permutation_parameters",
    "reference_signature_step",
    "record_dtype",
    "shingle_hashes",
    "shingles",
    "signature_file",
]
