"""Which lake documents a tokenizer trains on: a held-out split and temperature sampling per language.

Two passes over the parquet shards keep memory flat in corpus size: `survey` reads only ids,
languages and text lengths (12 bytes per document stay in memory, never the text), `plan_sample`
decides how many copies of each document the trainer sees, and `stream_texts` reads the text a
batch at a time and yields each kept document that many times.

Temperature sampling, as multilingual models do it (XLM-R, mT5): a language with n training bytes
gets a share p ∝ n^alpha of the sample. alpha = 1 keeps the natural mix, alpha = 0 gives every
language the same share, 0.3 (the default) lifts small languages without drowning big ones. The
sample's total size stays that of the training data (or `budget_bytes`), so a large language is
downsampled and a small one is repeated: for BPE, whose merges depend only on word counts, a
repeated document is exactly a document with a higher weight.

Every choice is made by a hash of the document id, never by a random generator or by file order,
so the same lake gives the same sample on any machine, and the held-out documents (the smallest
hashes of each language) can be found again later by the report without storing their ids.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, TypeVar

import numpy as np
import pyarrow.compute as pc

from pipelines.common.errors import UserError
from pipelines.lake import Lake, shard_batches

T = TypeVar("T")
UNKNOWN_LANGUAGE = "und"
MIN_DOCUMENTS = 2  # one to train on and one held out


class TrainingDataError(UserError, ValueError):
    """The lake cannot give the sample asked for (no documents, unknown or too small languages)."""


def doc_hashes(ids: list[str]) -> np.ndarray:
    """A stable 64-bit hash per document id (blake2b: the same on every machine and Python)."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "big") for i in ids], dtype=np.uint64
    )


@dataclass(frozen=True)
class Survey:
    """Per document, in shard order: language, id hash and UTF-8 size. No text."""

    shards: list[str]
    languages: list[str]
    lang: np.ndarray  # int32 index into `languages`
    hashes: np.ndarray  # uint64
    sizes: np.ndarray  # int64 bytes

    @property
    def documents(self) -> int:
        return len(self.lang)


def survey(lake: Lake, shards: list[str], batch_rows: int = 4096) -> Survey:
    codes: dict[str, int] = {}
    lang, hashes, sizes = [], [], []
    for shard in shards:
        for batch in shard_batches(lake.fs, shard, ["id", "lang", "text"], batch_rows):
            names = batch.column("lang").to_pylist()
            lang.append(np.array([codes.setdefault(n or UNKNOWN_LANGUAGE, len(codes)) for n in names], dtype=np.int32))
            hashes.append(doc_hashes(batch.column("id").to_pylist()))
            lengths = pc.binary_length(batch.column("text"))
            sizes.append(np.array(lengths.fill_null(0), dtype=np.int64))
    join = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
    return Survey(shards, list(codes), join(lang, np.int32), join(hashes, np.uint64), join(sizes, np.int64))


@dataclass(frozen=True)
class LanguageSample:
    """What one language contributes, in documents and UTF-8 bytes."""

    documents: int
    bytes: int
    heldout_documents: int
    heldout_bytes: int
    heldout_below: str  # a document is held out iff its id hash < this (hex); see `is_heldout`
    weight: float  # p ∝ n^alpha
    target_bytes: int
    repeats: int  # whole passes over the language's training documents
    sampled_documents: int  # copies included
    sampled_bytes: int

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SamplePlan:
    languages: dict[str, LanguageSample]
    skipped: dict[str, str]  # language -> why it is not in the sample
    copies: np.ndarray  # int32 per surveyed document: how often the trainer sees it
    budget_bytes: int

    @property
    def sampled_bytes(self) -> int:
        return sum(s.sampled_bytes for s in self.languages.values())

    @property
    def sampled_documents(self) -> int:
        return sum(s.sampled_documents for s in self.languages.values())


def plan_sample(
    found: Survey,
    languages: list[str] | None,
    alpha: float,
    heldout_fraction: float,
    budget_bytes: int | None = None,
) -> SamplePlan:
    """Split each language into held-out and training documents, then size its share of the sample.

    Raises TrainingDataError for an empty lake, a requested language the lake lacks or holds only
    one document of, or when no language is left. Unrequested small languages are skipped and
    named in `skipped`.
    """
    if found.documents == 0:
        raise TrainingDataError("the lake holds no documents")
    counts = np.bincount(found.lang, minlength=len(found.languages))
    available = {name: int(counts[i]) for i, name in enumerate(found.languages)}
    wanted = languages or sorted(available)
    unknown = [x for x in wanted if x not in available]
    if unknown:
        listing = ", ".join(f"{k} ({v})" for k, v in sorted(available.items()))
        raise TrainingDataError(f"no documents in language {', '.join(unknown)}; the lake has: {listing}")
    too_small = {x: available[x] for x in wanted if available[x] < MIN_DOCUMENTS}
    if languages and too_small:
        named = ", ".join(f"{k} has {v}" for k, v in too_small.items())
        raise TrainingDataError(f"too few documents to train on and hold one out ({MIN_DOCUMENTS} needed): {named}")
    skipped = {x: f"{available[x]} document: {MIN_DOCUMENTS} needed (one is held out)" for x in too_small}

    order = np.lexsort((found.hashes, found.lang))  # by language, then by id hash
    starts = np.searchsorted(found.lang[order], np.arange(len(found.languages) + 1))
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in wanted:
        if name in skipped:
            continue
        members = order[starts[found.languages.index(name)] : starts[found.languages.index(name) + 1]]
        held = max(1, round(heldout_fraction * len(members)))
        splits[name] = members[:held], members[held:]
    if not splits:
        raise TrainingDataError("no language has enough documents to train on")

    train_bytes = {name: int(found.sizes[train].sum()) for name, (_, train) in splits.items()}
    mass = {name: float(b) ** alpha if b else 0.0 for name, b in train_bytes.items()}
    total_mass = sum(mass.values())
    budget = int(budget_bytes if budget_bytes is not None else sum(train_bytes.values()))
    copies = np.zeros(found.documents, dtype=np.int32)
    chosen: dict[str, LanguageSample] = {}
    for name, (held, train) in splits.items():
        weight = mass[name] / total_mass if total_mass else 0.0
        target = weight * budget
        size = train_bytes[name]
        repeats = int(target / size + 1e-9) if size else 0  # float shares: 0.99999… of a language is all of it
        rest = max(0.0, target - repeats * size)
        cumulative = np.cumsum(found.sizes[train])
        partial = min(len(train), int(np.searchsorted(cumulative, rest, side="left")) + 1) if rest >= 0.5 else 0
        copies[train] = repeats
        copies[train[:partial]] += 1
        chosen[name] = LanguageSample(
            documents=len(held) + len(train),
            bytes=int(found.sizes[held].sum()) + size,
            heldout_documents=len(held),
            heldout_bytes=int(found.sizes[held].sum()),
            heldout_below=f"{int(found.hashes[train[0]]) if len(train) else 2**64 - 1:016x}",
            weight=round(weight, 6),
            target_bytes=int(round(target)),
            repeats=repeats,
            sampled_documents=repeats * len(train) + partial,
            sampled_bytes=repeats * size + (int(cumulative[partial - 1]) if partial else 0),
        )
    return SamplePlan(chosen, skipped, copies, budget)


def _prefetched(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`batches`, produced `depth` ahead on a background thread.

    The trainer pulls text under a lock that its worker threads share; a parquet batch decoded
    inside that pull stalls them all (measured: ~6% of a 32k-vocab training run). Decoding releases
    the GIL, so a thread can do it while the trainer works. Errors reach the consumer; a consumer
    that stops early stops the producer.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(done)
        except BaseException as error:  # handed to the consumer, which raises it
            ready.put(error)

    producer = threading.Thread(target=produce, name="lmforge-text-prefetch", daemon=True)
    producer.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join()


def _kept_batches(lake: Lake, found: Survey, copies: np.ndarray, batch_rows: int) -> Iterator[tuple[list[str], list[int], int]]:
    """Per record batch: the kept texts, their copy counts, and their UTF-8 bytes times copies."""
    position = 0
    for shard in found.shards:
        for batch in shard_batches(lake.fs, shard, ["text"], batch_rows):
            wanted = copies[position : position + batch.num_rows]
            if len(wanted) != batch.num_rows:
                raise TrainingDataError(f"{shard} changed while the tokenizer was training; run it again")
            picked = np.flatnonzero(wanted)
            size = int((found.sizes[position + picked] * wanted[picked]).sum())
            position += batch.num_rows
            if len(picked):
                yield batch.column("text").take(picked).to_pylist(), wanted[picked].tolist(), size
    if position != found.documents:
        raise TrainingDataError("the lake's documents changed while the tokenizer was training; run it again")


def stream_texts(
    lake: Lake,
    found: Survey,
    copies: np.ndarray,
    batch_rows: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """The training text, document by document, each `copies[i]` times, read one record batch at a time.

    Single documents, not lists: `tokenizers` buffers 256 items of the iterator it trains from, so
    yielding batches would let it pull 256 batches into memory at once. Reports the UTF-8 bytes
    yielded so far to `progress`. Raises TrainingDataError if the shards no longer hold what
    `survey` saw (the lake changed under the run).
    """
    done = 0
    for texts, counts, size in _prefetched(_kept_batches(lake, found, copies, batch_rows)):
        for text, n in zip(texts, counts):
            for _ in range(n if text else 0):
                yield text
        done += size
        if progress:
            progress(done)


def heldout_texts(
    lake: Lake, shards: list[str], heldout: dict[str, str], max_bytes_per_language: int, batch_rows: int = 4096
) -> dict[str, list[str]]:
    """The held-out documents of each language (`heldout`: language -> hash bound), up to a byte cap.

    Documents come in shard order, so the same lake gives the same texts; none of them was in any
    training sample drawn with these bounds.
    """
    bounds = {lang: np.uint64(int(below, 16)) for lang, below in heldout.items()}
    found: dict[str, list[str]] = {lang: [] for lang in heldout}
    taken = dict.fromkeys(heldout, 0)
    for shard in shards:
        for batch in shard_batches(lake.fs, shard, ["id", "lang", "text"], batch_rows):
            hashes = doc_hashes(batch.column("id").to_pylist())
            for lang, text, h in zip(batch.column("lang").to_pylist(), batch.column("text").to_pylist(), hashes):
                if lang in bounds and text and taken[lang] < max_bytes_per_language and h < bounds[lang]:
                    found[lang].append(text)
                    taken[lang] += len(text.encode())
    return {lang: texts for lang, texts in found.items() if texts}
