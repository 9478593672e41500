"""Tokenize for training: a lake dataset's text, through one of the lake's tokenizers, into packed token
ids under `tokens/<tokenizer>/<dataset>/` that the trainer memory-maps (`model/token_shards.py` reads them).

The format (the trainer's data loader depends on exactly this):
- `documents` is an alias for the lake dataset `documents/dedup`; any other name (`synthetic/wrap`,
  `synthetic/mix`, `documents/clean`) is that lake dataset, read from its listed shards (column `text`,
  `id` for the split) and written to `tokens/<tokenizer>/<name>/`.
- Per split (`train`, `val`), `<split>/<run>_<NNNNN>.bin`: flat little-endian token ids (uint16 when every
  id fits, else uint32; the manifest's `dtype`), each document's tokens followed by one `<|endoftext|>`;
  beside it `<run>_<NNNNN>.idx.npy`: int64 document start offsets into the .bin, n_docs + 1 long (the last
  is the .bin's length). NNNNN is the input shard's position in the dataset's sorted listed shards; a split
  that got no document from an input shard has no file for it.
- A document is in `val` iff xxh64(id) mod 1e6 < val_fraction·1e6: the same document is always in the same
  split, whatever the order or the other documents. Documents are in input order within a shard.
- `_manifest.json` (`TokensManifest`) names the run whose shards make the folder and lists them per split.
- Text is text: a literal `<|endoftext|>` inside a document is encoded as its characters, never as the id.

The text streams a record batch at a time; batches are gathered across input shards into `encode_batch` calls
of about `batch_rows` documents or `batch_bytes` of text, and the next call runs in a thread while the last
one's ids are written, so reading and writing hide behind the encoding. Each input shard's outputs are written
under temporary names and renamed, then recorded by a marker in `_work/tokenize/<run>/`, so a killed run
resumes where it stopped; the manifest is published last, and only then are an earlier run's files removed.
The same inputs again are a no-op.

Not datatrove's `DocumentTokenizer` (it does load a local tokenizer.json offline; `bench/tokens.py` measures
it): it writes its own `.ds` / `.ds.index` files in place, with no temporary names, no resume within a task, no
validation split and no manifest, and shuffles unless told not to.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from itertools import chain
from typing import Any, Literal

import fasteners
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from pydantic import BaseModel, Field
from tokenizers import Tokenizer

from model.token_shards import (
    DOCUMENTS_ALIAS,
    EOT,
    SCHEMA_VERSION,
    SplitRecord,
    TokensManifest,
    read_tokens_manifest,
    source_dataset,
    tokens_dir,
)
from pipelines.common.errors import UserError
from pipelines.lake import (
    DOCUMENTS_DEDUP,
    MANIFEST,
    SCHEMAS,
    TOKENIZERS,
    WORK_ROOT,
    Lake,
    atomic_write_bytes,
    fingerprint,
    listed_runs,
    listed_shards,
    lmforge_version,
    publish,
    read_manifest,
    shard_batches,
    shard_rows,
    utc_now,
)
from pipelines.lake.locks import run_lock
from pipelines.lake.token_layout import SPLITS, TOKENS, token_shard_run

STAGE = "tokenize"
VAL_BUCKETS = 1_000_000
UINT16_IDS = 65_536  # ids 0..65535 fit in uint16
LOCK = "_tokenize.lock"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]*(/[A-Za-z0-9][A-Za-z0-9._=-]*)*$")
_TOKENIZER = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class TokenizeError(UserError, ValueError):
    """Input the stage cannot tokenize (unknown tokenizer or dataset, no `<|endoftext|>`, a dtype too narrow,
    no text at all); raised before anything is written, and the message says what to do."""


class TokenizeConfig(BaseModel):
    """How to tokenize. `tokenizer`, `val_fraction` and the dtype (with the tokenizer's and the data's
    fingerprints) name the run; the batch sizes change only speed and memory, never the output."""

    tokenizer: str = Field(pattern=_TOKENIZER, description="folder name under tokenizers/")
    val_fraction: float = Field(default=0.01, ge=0.0, le=0.5, description="documents held out for validation, by id hash")
    dtype: Literal["auto", "uint16", "uint32"] = Field(default="auto", description="token id type; auto: uint16 if it fits")
    batch_rows: int = Field(default=1000, ge=1, description="documents per encode_batch call, about")
    batch_bytes: int = Field(default=1_000_000, ge=1, description="UTF-8 bytes of text per encode_batch call, about")


@dataclass
class TokenizeResult:
    dataset: str
    path: str
    manifest: TokensManifest
    up_to_date: bool = False
    resumed_shards: int = 0  # input shards a killed run had finished, not tokenized again
    replaced_run: str | None = None  # the earlier run whose files this one replaced


# --- names and places --------------------------------------------------------------------------


def dataset_names(datasets: list[str] | None) -> list[str]:
    """The datasets asked for, each once, in order; `documents` when none is."""
    return list(dict.fromkeys(datasets or [DOCUMENTS_ALIAS]))


def _work_dir(lake: Lake, run: str) -> str:
    return lake.path(WORK_ROOT, STAGE, run)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or any(part in SPLITS for part in name.split("/")):
        raise TokenizeError(
            f"bad dataset name {name!r}: use `documents` or a lake dataset such as synthetic/wrap "
            f"(no '..', no part named {' or '.join(SPLITS)})"
        )


def lake_tokenizers(lake: Lake) -> list[str]:
    """The names of the lake's tokenizers (`tokenizers/<name>/tokenizer.json`)."""
    fs, root = lake.fs, lake.path(TOKENIZERS)
    if not fs.isdir(root):
        return []
    folders = fs.ls(root, detail=False)
    return sorted(posixpath.basename(p.rstrip("/")) for p in folders if fs.isfile(posixpath.join(p, "tokenizer.json")))


@dataclass(frozen=True)
class LakeTokenizer:
    name: str
    tokenizer: Tokenizer = field(repr=False)
    sha256: str
    vocab_size: int
    eot_id: int


def load_lake_tokenizer(lake: Lake, name: str) -> LakeTokenizer:
    """`tokenizers/<name>/tokenizer.json`, set to encode special tokens in text as text.

    Raises TokenizeError for an unknown name (listing the lake's tokenizers), an unreadable file and a
    tokenizer without `<|endoftext|>`.
    """
    path = lake.path(TOKENIZERS, name, "tokenizer.json")
    fs = lake.fs
    if not fs.isfile(path):
        known = lake_tokenizers(lake)
        there = f"the lake has {', '.join(known)}" if known else "the lake has none: run `lmforge tokenizer train` first"
        raise TokenizeError(f"unknown tokenizer {name!r}: no {path}; {there}")
    with fs.open(path, "rb") as f:
        blob = f.read()
    try:
        tokenizer = Tokenizer.from_str(blob.decode())
    except Exception as error:  # tokenizers raises a bare Exception for every parse failure
        raise TokenizeError(f"cannot read tokenizer {path}: {error}") from error
    eot = tokenizer.token_to_id(EOT)
    if eot is None:
        raise TokenizeError(
            f"tokenizer {name!r} has no {EOT} token to end documents with; train one with `lmforge tokenizer train`"
        )
    tokenizer.encode_special_tokens = True  # a document's text never becomes a control token
    ids = tokenizer.get_vocab(with_added_tokens=True).values()
    vocab_size = max(tokenizer.get_vocab_size(with_added_tokens=True), max(ids, default=-1) + 1)
    return LakeTokenizer(name, tokenizer, hashlib.sha256(blob).hexdigest(), vocab_size, eot)


def resolve_dtype(requested: str, vocab_size: int) -> Literal["uint16", "uint32"]:
    """uint16 when every id fits (vocab ≤ 65536) unless uint32 is asked for; TokenizeError if uint16 is
    forced on a larger vocabulary."""
    fits = vocab_size <= UINT16_IDS
    if requested == "uint16" and not fits:
        raise TokenizeError(
            f"--dtype uint16 cannot hold a vocabulary of {vocab_size} ids (at most {UINT16_IDS}); use uint32 or auto"
        )
    if requested == "auto":
        return "uint16" if fits else "uint32"
    return requested  # type: ignore[return-value]


def val_mask(ids: list[str], val_fraction: float) -> np.ndarray:
    """Which documents are in the validation split: xxh64 of the id, mod 1e6, below val_fraction·1e6."""
    below = round(val_fraction * VAL_BUCKETS)
    if below == 0:
        return np.zeros(len(ids), dtype=bool)
    digest = xxhash.xxh64_intdigest
    return np.fromiter((digest(i.encode()) % VAL_BUCKETS < below for i in ids), dtype=bool, count=len(ids))


# --- the plan: everything checked before anything is written ------------------------------------


@dataclass(frozen=True)
class Plan:
    name: str
    source: str
    dest: str
    shards: list[str]
    rows: int
    run: str
    tok: LakeTokenizer
    dtype: Literal["uint16", "uint32"]
    parameters: dict[str, Any]
    source_runs: list[str]


def _source_shards(lake: Lake, name: str, source: str) -> list[str]:
    shards = listed_shards(lake, source)
    if shards:
        return shards
    with_text = sorted(d for d, s in SCHEMAS.items() if "text" in s.names and listed_shards(lake, d))
    names = [DOCUMENTS_ALIAS if d == DOCUMENTS_DEDUP else d for d in with_text]
    there = f"datasets with text: {', '.join(names)}"
    if not names:
        there = "the lake has no documents yet: run `lmforge ingest` and `lmforge dedup`"
    if lake.fs.exists(lake.path(source)):
        raise TokenizeError(f"dataset {name!r} is empty: {lake.path(source)} lists no shards; {there}")
    raise TokenizeError(f"unknown dataset {name!r}: no {lake.path(source)}; {there}")


def _check_columns(lake: Lake, name: str, shard: str) -> None:
    with lake.fs.open(shard, "rb") as f, pq.ParquetFile(f) as parquet:
        columns = set(parquet.schema_arrow.names)
    missing = sorted({"id", "text"} - columns)
    if missing:
        raise TokenizeError(f"dataset {name!r} has no {' or '.join(missing)} column ({shard}); tokenize a dataset of texts")


def plan_tokenize(lake: Lake, config: TokenizeConfig, name: str) -> Plan:
    """What a run would do, and its fingerprint; raises TokenizeError for every bad input, writing nothing."""
    _check_name(name)
    tok = load_lake_tokenizer(lake, config.tokenizer)
    dtype = resolve_dtype(config.dtype, tok.vocab_size)
    source = source_dataset(name)
    shards = _source_shards(lake, name, source)
    _check_columns(lake, name, shards[0])
    fs, base = lake.fs, lake.path(source)
    runs = sorted(listed_runs(lake, source))
    parameters = {
        "val_fraction": config.val_fraction,
        "dtype": dtype,
        "eot_token": EOT,
        "split": f"xxh64(id) % {VAL_BUCKETS} < val_fraction * {VAL_BUCKETS}",
        "tokenizers_version": metadata.version("tokenizers"),
    }
    run = fingerprint(
        {
            "schema_version": SCHEMA_VERSION,  # a new format makes every run new
            "tokenizer_sha256": tok.sha256,
            "source": source,
            "source_runs": runs,
            "shards": [(posixpath.relpath(s, base), fs.size(s)) for s in shards],
            "parameters": parameters,
        }
    )
    listed = read_manifest(lake, source)
    rows = listed.rows if listed is not None else 0  # the listed shards' rows, counted when their runs finished
    dest = tokens_dir(lake, config.tokenizer, name)
    return Plan(name, source, dest, shards, rows, run, tok, dtype, parameters, runs)


def check_datasets(lake: Lake, config: TokenizeConfig, names: list[str]) -> None:
    """Raise TokenizeError for the first bad input among the datasets, before any of them is tokenized."""
    for name in names:
        plan_tokenize(lake, config, name)


# --- writing -----------------------------------------------------------------------------------


class _SplitWriter:
    """One output shard of one split: ids streamed to a temporary file, offsets kept, both renamed into place."""

    def __init__(self, lake: Lake, folder: str, stem: str, dtype: str) -> None:
        self.fs, self.folder, self.stem, self.dtype = lake.fs, folder, stem, np.dtype(dtype).newbyteorder("<")
        self.bin = posixpath.join(folder, f"{stem}.bin")
        self.tmp = posixpath.join(folder, f".{stem}.bin.{uuid.uuid4().hex[:8]}.tmp")
        self.file: Any = None
        self.starts: list[np.ndarray] = []
        self.tokens = self.documents = self.bytes = 0

    def write(self, encodings: list[Any], eot: int, text_bytes: int) -> None:
        if not encodings:
            return
        if self.file is None:
            self.fs.makedirs(self.folder, exist_ok=True)
            self.file = self.fs.open(self.tmp, "wb")
        lengths = np.fromiter((len(e) + 1 for e in encodings), dtype=np.int64, count=len(encodings))
        total = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(chain(e.ids, (eot,)) for e in encodings), dtype=self.dtype, count=total)
        self.file.write(ids.data)
        self.starts.append(self.tokens + np.cumsum(lengths) - lengths)
        self.tokens += total
        self.documents += len(encodings)
        self.bytes += text_bytes

    def finish(self) -> str | None:
        """Publish the shard (the offsets last: their presence means the .bin is whole); None if it got no document."""
        if self.file is None:
            return None
        self.file.close()
        offsets = np.concatenate([*self.starts, np.array([self.tokens], dtype=np.int64)])
        buffer = io.BytesIO()
        np.save(buffer, offsets, allow_pickle=False)
        publish(self.fs, self.tmp, self.bin)
        atomic_write_bytes(self.fs, posixpath.join(self.folder, f"{self.stem}.idx.npy"), buffer.getvalue())
        return posixpath.basename(self.bin)

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            if self.fs.exists(self.tmp):
                self.fs.rm(self.tmp)


def _record_batches(lake: Lake, shard: str, config: TokenizeConfig) -> Iterator[pa.RecordBatch]:
    """Record batches of at most `batch_rows` rows, cut further so each holds about `batch_bytes` of text."""
    for batch in shard_batches(lake.fs, shard, ["id", "text"], config.batch_rows):
        sizes = pc.binary_length(batch.column("text")).fill_null(0).to_numpy(zero_copy_only=False)
        ends = np.cumsum(sizes)
        start = 0
        while start < batch.num_rows:
            before = ends[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, before + config.batch_bytes, side="right")))
            yield batch.slice(start, stop - start)
            start = stop


@dataclass
class _Batch:
    """The documents of one record batch that have text, ready to encode; `last` ends its input shard."""

    index: int  # the input shard
    rows: int  # input rows it covers, kept or not
    ids: list[str]
    texts: list[str]
    sizes: np.ndarray  # UTF-8 bytes of each text
    skipped: Counter[str]
    last: bool = False


def _read(lake: Lake, config: TokenizeConfig, index: int, shard: str) -> Iterator[_Batch]:
    """One input shard as batches of documents with text (rows without are counted by reason), the last marked."""
    batch: _Batch | None = None
    for records in _record_batches(lake, shard, config):
        if batch is not None:
            yield batch
        ids, texts = records.column("id"), records.column("text")
        sizes = pc.binary_length(texts).fill_null(0).to_numpy(zero_copy_only=False)
        null_id = ids.is_null().to_numpy(zero_copy_only=False)
        null_text = texts.is_null().to_numpy(zero_copy_only=False) & ~null_id
        empty = (sizes == 0) & ~null_id & ~null_text
        reasons = (("null id", null_id), ("null text", null_text), ("empty text", empty))
        skipped = Counter({reason: int(rows.sum()) for reason, rows in reasons if rows.any()})
        keep = np.flatnonzero(~(null_id | null_text | empty))
        batch = _Batch(index, records.num_rows, ids.take(keep).to_pylist(), texts.take(keep).to_pylist(), sizes[keep], skipped)
    batch = batch or _Batch(index, 0, [], [], np.zeros(0, dtype=np.int64), Counter())
    batch.last = True
    yield batch


def _groups(batches: Iterator[_Batch], config: TokenizeConfig) -> Iterator[list[_Batch]]:
    """Consecutive batches, across input shards, gathered into groups of about `batch_rows` documents or
    `batch_bytes` of text: one encode call each, whatever the shards' sizes (small shards would otherwise
    make small calls, which keep the tokenizer's threads idle)."""
    group: list[_Batch] = []
    rows = size = 0
    for batch in batches:
        group.append(batch)
        rows, size = rows + len(batch.texts), size + int(batch.sizes.sum())
        if rows >= config.batch_rows or size >= config.batch_bytes:
            yield group
            group, rows, size = [], 0, 0
    if group:
        yield group


def _encode_ahead(tokenizer: Tokenizer, groups: Iterator[list[_Batch]]) -> Iterator[tuple[_Batch, list[Any]]]:
    """Each batch with its encodings, in order. The next group's encoding already runs in a thread while this
    one's are written (`encode_batch_fast` releases the GIL), so reading, hashing and writing overlap the encoding."""

    def encode(group: list[_Batch]) -> list[Any]:
        texts = list(chain.from_iterable(b.texts for b in group))
        return tokenizer.encode_batch_fast(texts, add_special_tokens=False) if texts else []

    with ThreadPoolExecutor(1, thread_name_prefix="encode") as pool:
        ahead: deque[tuple[list[_Batch], Future]] = deque()
        for group in groups:
            ahead.append((group, pool.submit(encode, group)))
            if len(ahead) > 1:
                yield from _split(*ahead.popleft())
        while ahead:
            yield from _split(*ahead.popleft())


def _split(group: list[_Batch], encoded: Future) -> Iterator[tuple[_Batch, list[Any]]]:
    encodings, start = encoded.result(), 0
    for batch in group:
        yield batch, encodings[start : start + len(batch.texts)]
        start += len(batch.texts)


class _ShardWriter:
    """The outputs of one input shard: one `_SplitWriter` per split, and what its marker will record."""

    def __init__(self, lake: Lake, plan: Plan, index: int, shard: str) -> None:
        self.lake, self.plan, self.shard = lake, plan, shard
        stem = f"{plan.run}_{index:05d}"
        self.splits = {split: _SplitWriter(lake, posixpath.join(plan.dest, split), stem, plan.dtype) for split in SPLITS}
        self.skipped: Counter[str] = Counter()

    def write(self, batch: _Batch, encodings: list[Any], val_fraction: float) -> None:
        self.skipped.update(batch.skipped)
        if not encodings:
            return
        val = val_mask(batch.ids, val_fraction)
        for split, chosen in (("train", ~val), ("val", val)):
            rows = np.flatnonzero(chosen)
            self.splits[split].write([encodings[r] for r in rows], self.plan.tok.eot_id, int(batch.sizes[rows].sum()))

    def finish(self) -> dict[str, Any]:
        """Publish every split's shard; returns the marker's record."""
        files = {split: w.finish() for split, w in self.splits.items()}
        lake = self.lake
        return {
            "shard": posixpath.relpath(self.shard, lake.path(self.plan.source)) if lake.is_local else self.shard,
            "skipped": dict(self.skipped),
            "splits": {
                split: {"documents": w.documents, "tokens": w.tokens, "bytes": w.bytes, "file": files[split]}
                for split, w in self.splits.items()
            },
        }

    def abort(self) -> None:
        for w in self.splits.values():
            w.abort()


def _tokenize_shards(
    lake: Lake, plan: Plan, config: TokenizeConfig, todo: list[int], progress: Callable[[int], None]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Tokenize the input shards `todo` (positions in `plan.shards`), one output shard per split each, as one
    stream of batches; yields each shard's position and marker record as its files are published."""
    batches = chain.from_iterable(_read(lake, config, i, plan.shards[i]) for i in todo)
    writer: _ShardWriter | None = None
    try:
        for batch, encodings in _encode_ahead(plan.tok.tokenizer, _groups(batches, config)):
            if writer is None:
                writer = _ShardWriter(lake, plan, batch.index, plan.shards[batch.index])
            writer.write(batch, encodings, config.val_fraction)
            progress(batch.rows)
            if batch.last:
                record = writer.finish()
                writer = None
                yield batch.index, record
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


def _marker(lake: Lake, plan: Plan, index: int) -> str:
    return posixpath.join(_work_dir(lake, plan.run), f"{index:05d}.json")


def _record_shard(lake: Lake, plan: Plan, index: int, record: dict[str, Any]) -> None:
    """Mark an input shard done once its files are published: a rerun of the same run keeps them."""
    atomic_write_bytes(lake.fs, _marker(lake, plan, index), json.dumps(record).encode())


def _finished(lake: Lake, plan: Plan, index: int) -> dict[str, Any] | None:
    """What a run (this one, earlier killed) recorded for an input shard, if it and its files are all there."""
    fs, path = lake.fs, _marker(lake, plan, index)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        record = json.loads(f.read())
    for split, s in record["splits"].items():
        if s["file"] is not None:
            stem = posixpath.join(plan.dest, split, s["file"].removesuffix(".bin"))
            if not (fs.exists(f"{stem}.bin") and fs.exists(f"{stem}.idx.npy")):
                return None
    return record


@contextmanager
def _writing(lake: Lake, dest: str) -> Iterator[None]:
    """Hold the tokens folder for one run (local lakes): a second run into the same folder would remove
    the first one's shards when it finished."""
    if not lake.is_local:
        yield
        return
    os.makedirs(dest, exist_ok=True)
    lock = fasteners.InterProcessLock(posixpath.join(dest, LOCK))
    if not lock.acquire(blocking=False):
        raise TokenizeError(f"another `lmforge tokenize` is writing {dest}; wait for it to finish, then rerun")
    try:
        yield
    finally:
        lock.release()


def _up_to_date(lake: Lake, plan: Plan) -> TokensManifest | None:
    manifest = read_tokens_manifest(lake, plan.tok.name, plan.name)
    if manifest is None or manifest.run != plan.run:
        return None
    fs = lake.fs
    for split, s in manifest.splits.items():
        for name in s.shards:
            stem = posixpath.join(plan.dest, split, name.removesuffix(".bin"))
            if not (fs.exists(f"{stem}.bin") and fs.exists(f"{stem}.idx.npy")):
                return None
    return manifest


def _remove_others(lake: Lake, plan: Plan) -> None:
    """Remove what is not this run's in the split folders: an earlier run's shards, temporary files."""
    fs = lake.fs
    for split in SPLITS:
        folder = posixpath.join(plan.dest, split)
        if not fs.isdir(folder):
            continue
        for path in fs.ls(folder, detail=False):
            name = posixpath.basename(path)
            if token_shard_run(name) != plan.run or name.startswith("."):
                fs.rm(path)


def tokenize_dataset(
    lake: Lake, config: TokenizeConfig, name: str, progress: Callable[[int, int], None] | None = None
) -> TokenizeResult:
    """Tokenize dataset `name` with `config.tokenizer` into `tokens/<tokenizer>/<name>/`.

    A no-op (`up_to_date`) when the manifest already names this run and its files are there; a killed run's
    finished input shards are kept (`resumed_shards`). Raises TokenizeError before writing anything for bad
    input, and with "empty token shards" when no row had text (leaving nothing behind). `progress(rows_done,
    rows_total)` follows the input rows.
    """
    plan = plan_tokenize(lake, config, name)
    manifest = _up_to_date(lake, plan)
    if manifest is not None:
        if progress:
            progress(plan.rows, plan.rows)
        return TokenizeResult(name, plan.dest, manifest, up_to_date=True)
    started = time.perf_counter()
    done = 0

    def advance(rows: int) -> None:
        nonlocal done
        done += rows
        if progress:
            progress(done, plan.rows)

    with _writing(lake, plan.dest), run_lock(lake, plan.run):
        previous = read_tokens_manifest(lake, plan.tok.name, name)
        records = {i: r for i in range(len(plan.shards)) if (r := _finished(lake, plan, i)) is not None}
        for i in records:
            advance(shard_rows(lake.fs, plan.shards[i]))
        resumed = len(records)
        todo = [i for i in range(len(plan.shards)) if i not in records]
        for index, record in _tokenize_shards(lake, plan, config, todo, advance):
            _record_shard(lake, plan, index, record)
            records[index] = record
        manifest = _manifest(plan, [records[i] for i in range(len(plan.shards))], time.perf_counter() - started)
        if manifest.tokens == 0:  # nothing was published: leave the lake as it was
            _clear_work(lake, plan)
            _drop_if_bare(lake, plan.dest)
            raise TokenizeError(
                f"empty token shards: no row of {name!r} ({lake.path(plan.source)}) has text "
                f"(skipped: {', '.join(f'{n} {r}' for r, n in manifest.skipped.items()) or 'none'})"
            )
        path = posixpath.join(plan.dest, MANIFEST)
        atomic_write_bytes(lake.fs, path, manifest.model_dump_json(indent=2).encode())
        _remove_others(lake, plan)
        _clear_work(lake, plan)
    replaced = previous.run if previous is not None and previous.run != plan.run else None
    return TokenizeResult(name, plan.dest, manifest, resumed_shards=resumed, replaced_run=replaced)


def _drop_if_bare(lake: Lake, dest: str) -> None:
    """Remove a tokens folder that holds nothing but the lock this run made, and the empty folders above it."""
    fs = lake.fs
    if not (fs.isdir(dest) and [posixpath.basename(p) for p in fs.ls(dest, detail=False)] == [LOCK]):
        return
    fs.rm(dest, recursive=True)
    folder, top = posixpath.dirname(dest), lake.path(TOKENS)
    while folder.startswith(top) and fs.isdir(folder) and not fs.ls(folder, detail=False):
        fs.rmdir(folder)
        folder = posixpath.dirname(folder)


def _clear_work(lake: Lake, plan: Plan) -> None:
    work = _work_dir(lake, plan.run)
    if lake.fs.exists(work):
        lake.fs.rm(work, recursive=True)


def _manifest(plan: Plan, records: list[dict[str, Any]], seconds: float) -> TokensManifest:
    splits = {split: SplitRecord() for split in SPLITS}
    skipped: Counter[str] = Counter()
    for record in records:
        skipped.update(record["skipped"])
        for split, s in record["splits"].items():
            total = splits[split]
            total.documents += s["documents"]
            total.tokens += s["tokens"]
            total.bytes += s["bytes"]
            if s["file"] is not None:
                total.shards.append(s["file"])
    return TokensManifest(
        dataset=plan.name,
        source_dataset=plan.source,
        tokenizer=plan.tok.name,
        tokenizer_sha256=plan.tok.sha256,
        vocab_size=plan.tok.vocab_size,
        dtype=plan.dtype,
        eot_id=plan.tok.eot_id,
        run=plan.run,
        parameters=plan.parameters,
        source_runs=plan.source_runs,
        source_shards=len(plan.shards),
        created=utc_now(),
        lmforge_version=lmforge_version(),
        seconds=round(seconds, 3),
        splits=splits,
        skipped=dict(sorted(skipped.items())),
    )
