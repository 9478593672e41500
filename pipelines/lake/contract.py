"""The lake: the one contract every stage shares (DESIGN §3).

A lake is a directory or an fsspec URL. Each dataset is a folder of parquet shards plus a
`_manifest.json`; shards and manifests only ever appear complete (written under a temporary
name, then renamed), so a reader never sees half a file and a killed stage can simply rerun.
The manifest lists the runs that finished, and a dataset is the shards of those runs
(`listed_shards`), whatever else a killed run left in the folder.
This module knows the layout, the schemas and how to write atomically; it does no stage work.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Callable, Iterable, Iterator

import fasteners
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, Field

from pipelines.lake.synthetic_schemas import SYNTHETIC_REJECTED, SYNTHETIC_SCHEMAS

SCHEMA_VERSION = 1
LAKE_ENV = "LMFORGE_LAKE"
DEFAULT_LAKE = "./lake"

DOCUMENTS_CLEAN = "documents/clean"
DOCUMENTS_DEDUP = "documents/dedup"
REJECTED = "documents/rejected"
TOKENIZERS = "tokenizers"
REPORTS = "reports"
CHECKPOINTS = "checkpoints"  # `checkpoints/<run>/`: a training run (model/train.py)
TRAIN_METRICS = "metrics.jsonl"  # `checkpoints/<run>/metrics.jsonl`: its steps and evaluations, one JSON per line
STAGING = "_staging"  # `_staging/<run>/`: a run's files before they are complete
RUN_LOGS = "_datatrove"  # `<dataset>/_datatrove/<run>/`: datatrove's completions, stats and logs of a run
WORK_ROOT = "_work"  # `_work/<stage>/<run>/`: a stage's intermediate files
LOCKS = "_locks"  # `_locks/<run>.lock`: held while a run executes (local lakes)
MANIFEST = "_manifest.json"
MANIFEST_LOCK = "_manifest.lock"

# A run is named by its `fingerprint`; every shard it writes is `[NNN_]<run>_<rank>.parquet` (NNN:
# datatrove's counter when a task's output is split by size).
RUN_ID = re.compile(r"[0-9a-f]{16}")
RUN_SHARD = re.compile(rf"(?:\d+_)?(?P<run>{RUN_ID.pattern})_\d+\.parquet")

# Documents: the text of one web page (or record) and what we know about it.
DOCUMENTS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("source", pa.string(), metadata={"doc": "input file the document came from"}),
        pa.field("lang", pa.string(), metadata={"doc": "FLORES-style code, e.g. eng_Latn"}),
        pa.field("lang_score", pa.float32()),
        pa.field("n_chars", pa.int32()),
        pa.field("n_words", pa.int32(), metadata={"doc": "whitespace-separated words"}),
        pa.field("date", pa.string()),
        pa.field("content_type", pa.string(), metadata={"doc": "what the source held: text/html or text/plain"}),
        pa.field("minhash_cluster_size", pa.int32(), metadata={"doc": "set by dedup"}),
    ]
)

# Rejected: every document or record a stage set aside, with the reason, so nothing is lost.
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("step", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("source", pa.string()),
        pa.field("url", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("text", pa.string()),
        pa.field("n_chars", pa.int32()),
        pa.field("unusable_file", pa.bool_()),
        pa.field("duplicate_of", pa.string(), metadata={"doc": "dedup: id of the document kept in its place"}),
        pa.field("run", pa.string(), metadata={"doc": "fingerprint of the run that set it aside"}),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    DOCUMENTS_CLEAN: DOCUMENTS_SCHEMA,
    DOCUMENTS_DEDUP: DOCUMENTS_SCHEMA,
    REJECTED: REJECTED_SCHEMA,
    SYNTHETIC_REJECTED: REJECTED_SCHEMA,
    **SYNTHETIC_SCHEMAS,
}


def lmforge_version() -> str:
    try:
        return metadata.version("lmforge")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def default_lake_root() -> str:
    """The lake root chosen by the environment (read at call time, never at import)."""
    return os.environ.get(LAKE_ENV, DEFAULT_LAKE)


@dataclass(frozen=True)
class Lake:
    """A lake root on any fsspec filesystem; local paths are made absolute."""

    root: str

    @classmethod
    def at(cls, root: str | os.PathLike[str] | None = None) -> Lake:
        root = str(root) if root is not None else default_lake_root()
        root = root.removeprefix("file://")
        if "://" not in root:
            root = os.path.abspath(os.path.expanduser(root))
        return cls(root.rstrip("/") or "/")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.url_to_fs(self.root)[0]

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, dataset: str) -> bool:
        return self.fs.exists(self.path(dataset))

    def glob(self, *patterns: str) -> list[str]:
        """The files matching any of the patterns (relative to the root), sorted, as addresses DuckDB and
        pyarrow can open (with the protocol on a remote lake)."""
        found = [p for pattern in patterns for p in self.fs.glob(self.path(pattern))]
        return sorted(p if self.is_local else self.fs.unstrip_protocol(p) for p in found)

    def shards(self, dataset: str) -> list[str]:
        """Every complete parquet file in a dataset's folder, sorted, whichever run wrote it (temporary
        files, staging and logs never match).

        This is the folder, not the dataset: it includes the shards of runs that were killed or
        replaced. Readers want `listed_shards`; this is for the stages' own bookkeeping and for gc.
        """
        base = self.path(dataset)
        if not self.fs.exists(base):
            return []
        fs = self.fs
        base = fs._strip_protocol(base)
        found = [p for p in fs.glob(posixpath.join(base, "**", "*.parquet")) if "/_" not in p[len(base) :]]
        return sorted(p if self.is_local else fs.unstrip_protocol(p) for p in found)


# --- atomic writes -----------------------------------------------------------------------------


def _tmp_name(path: str) -> str:
    head, tail = posixpath.split(path)
    return posixpath.join(head, f".{tail}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write `data` so that `path` holds either the old content or all of the new, never a part."""
    _write_then_publish(fs, path, lambda f: f.write(data))


def _write_then_publish(fs: fsspec.AbstractFileSystem, path: str, write: Callable[[Any], object]) -> None:
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with fs.open(tmp, "wb") as f:
            write(f)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    publish(fs, tmp, path)


def publish(fs: fsspec.AbstractFileSystem, tmp: str, path: str) -> None:
    """Move a finished file into place (an atomic rename on local disks)."""
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        os.replace(tmp, path)
    else:
        fs.mv(tmp, path)


def publish_folder(fs: fsspec.AbstractFileSystem, local_dir: str, dest: str) -> None:
    """Put a finished local folder at `dest` whole: readers see the old folder or the new one, never a mix.

    The folder is copied next to `dest` under a temporary name first, then renamed into place; an
    existing `dest` is renamed aside and removed only once the new one is there, so a failure at
    any point leaves the previous version intact.
    """
    parent, name = posixpath.split(dest.rstrip("/"))
    fs.makedirs(parent, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staged, old = posixpath.join(parent, f".{name}.{token}.tmp"), posixpath.join(parent, f".{name}.{token}.old")
    try:
        if isinstance(fs, LocalFileSystem):
            shutil.copytree(local_dir, staged)
        else:
            fs.put(local_dir.rstrip("/") + "/", staged, recursive=True)
        had_old = fs.exists(dest)
        if had_old:
            _move(fs, dest, old)
        _move(fs, staged, dest)
    except BaseException:
        if fs.exists(staged):
            fs.rm(staged, recursive=True)
        if fs.exists(old) and not fs.exists(dest):
            _move(fs, old, dest)
        raise
    if had_old:
        fs.rm(old, recursive=True)


def _move(fs: fsspec.AbstractFileSystem, source: str, dest: str) -> None:
    if isinstance(fs, LocalFileSystem):
        os.rename(source, dest)
    else:
        fs.mv(source, dest, recursive=True)


def write_table(lake: Lake, dataset: str, name: str, table: pa.Table) -> str:
    """Write one complete shard (zstd, ~100k-row row groups) atomically; returns its path."""
    path = lake.path(dataset, name)
    _write_then_publish(lake.fs, path, lambda f: pq.write_table(table, f, compression="zstd", row_group_size=100_000))
    return path


def read_shard(fs: fsspec.AbstractFileSystem, path: str, columns: list[str] | None = None) -> pa.Table:
    """One parquet file, read on this thread only.

    Never `pq.read_table` on a Python file object: it goes through `pyarrow.dataset`, whose scanner
    calls the file's `read` from pyarrow's IO threads even with `pre_buffer=False, use_threads=False`
    (`pre_buffer=True` and `iter_batches(use_threads=True)` can do the same). When the process exits
    while such a thread still holds the file, the thread's next taking of the GIL makes CPython end
    it with `pthread_exit`, whose unwinding reaches a `noexcept` frame of Arrow's worker: `terminate
    called without an active exception`, SIGABRT after all the work was done (4 in 1274 runs of a
    script that reads a shard that way and exits; the resumed dedup of issue 9). `ParquetFile` with
    both off calls the file from the caller's thread alone (`test_shards_are_read_on_the_calling_thread_only`).
    """
    with fs.open(path, "rb") as f, pq.ParquetFile(f, pre_buffer=False) as parquet:
        return parquet.read(columns=columns, use_threads=False)


def shard_batches(
    fs: fsspec.AbstractFileSystem, path: str, columns: list[str] | None, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """One parquet file a record batch at a time, read on this thread only (see `read_shard`)."""
    with fs.open(path, "rb") as f, pq.ParquetFile(f, pre_buffer=False) as parquet:
        yield from parquet.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False)


def shard_rows(fs: fsspec.AbstractFileSystem, path: str) -> int:
    """Rows of one parquet file, from its footer."""
    with fs.open(path, "rb") as f, pq.ParquetFile(f) as parquet:
        return parquet.metadata.num_rows


# --- manifests ---------------------------------------------------------------------------------


class InputRecord(BaseModel):
    path: str
    size: int
    mtime_ns: int
    sha256: str | None = None


class RunRecord(BaseModel):
    """One run of a stage that wrote into the dataset."""

    run: str = Field(description="fingerprint of inputs + parameters")
    stage: str
    parameters: dict[str, Any]
    inputs: list[InputRecord]
    started: str
    finished: str
    lmforge_version: str


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    dataset: str
    rows: int = 0
    bytes: int = 0
    shards: int = 0
    columns: list[str] = []
    runs: list[RunRecord] = []
    updated: str = ""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fingerprint(payload: Any) -> str:
    """A short stable hash of any JSON-serialisable value (inputs + parameters of a run)."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_manifest(lake: Lake, dataset: str) -> Manifest | None:
    path = lake.path(dataset, MANIFEST)
    fs = lake.fs
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return Manifest.model_validate_json(f.read())


def shard_run(path: str) -> str | None:
    """The run that wrote a shard, from its name (`RUN_SHARD`); None for a file no lmforge run wrote."""
    match = RUN_SHARD.fullmatch(posixpath.basename(path))
    return match["run"] if match else None


def listed_runs(lake: Lake, dataset: str) -> set[str]:
    """The runs the dataset's manifest lists: the finished runs whose shards make the dataset."""
    manifest = read_manifest(lake, dataset)
    return {r.run for r in manifest.runs} if manifest else set()


def _shards_of(lake: Lake, dataset: str, runs: set[str]) -> list[str]:
    return [s for s in lake.shards(dataset) if shard_run(s) in runs] if runs else []


def listed_shards(lake: Lake, dataset: str) -> list[str]:
    """The dataset as every reader sees it: the shards of the runs its manifest lists, sorted.

    The manifest is the source of truth. A run that was killed, or replaced before it was recorded,
    may have published shards into the folder; they are not part of the dataset (a rerun with other
    parameters is another run, and reading both would count documents twice) and stay invisible
    until `lmforge lake gc` removes them. A folder without a manifest lists no run, so it shows
    nothing, and files whose names no run wrote (`shard_run` is None) are never read.
    """
    return _shards_of(lake, dataset, listed_runs(lake, dataset))


def run_shards(lake: Lake, dataset: str, run: str) -> list[str]:
    """The shards one run wrote into a dataset, listed or not: how a stage summarises its own run."""
    return _shards_of(lake, dataset, {run})


def refresh_manifest(lake: Lake, dataset: str, new_runs: Iterable[RunRecord] = (), replace_stage: bool = False) -> Manifest:
    """Add `new_runs` to the dataset's runs, recount rows and bytes over the shards of the runs it then
    lists (from their footers), and write the manifest atomically.

    `replace_stage=True` is for a stage whose one run replaces its earlier ones (dedup is global):
    the earlier runs of the new runs' stages leave the list, and with it the dataset, while other
    stages' runs stay (ingest's rejections beside dedup's in `documents/rejected`).
    """
    with _manifest_lock(lake, dataset):  # two runs finishing at once must not lose each other's record
        previous = read_manifest(lake, dataset) or Manifest(dataset=dataset)
        new_runs = list(new_runs)
        replaced = {r.stage for r in new_runs} if replace_stage else set()
        runs = {r.run: r for r in previous.runs if r.stage not in replaced}
        for r in new_runs:
            runs[r.run] = r
        rows = size = 0
        shards = _shards_of(lake, dataset, set(runs))
        fs = lake.fs
        for shard in shards:
            rows += shard_rows(fs, shard)
            size += fs.size(shard)
        schema = SCHEMAS.get(dataset)
        manifest = Manifest(
            dataset=dataset,
            rows=rows,
            bytes=size,
            shards=len(shards),
            columns=schema.names if schema is not None else previous.columns,
            runs=sorted(runs.values(), key=lambda r: r.started),
            updated=utc_now(),
        )
        atomic_write_bytes(fs, lake.path(dataset, MANIFEST), manifest.model_dump_json(indent=2).encode())
        return manifest


@contextmanager
def _manifest_lock(lake: Lake, dataset: str) -> Iterator[None]:
    """Exclusive use of a dataset's manifest on a local lake (read, recount, write); nothing on a remote one."""
    if not lake.is_local:
        yield
        return
    os.makedirs(lake.path(dataset), exist_ok=True)
    with fasteners.InterProcessLock(lake.path(dataset, MANIFEST_LOCK)):
        yield


def ingested_inputs(lake: Lake, dataset: str = DOCUMENTS_CLEAN) -> set[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every input a finished run already took in."""
    manifest = read_manifest(lake, dataset)
    if manifest is None:
        return set()
    return {(i.path, i.size, i.mtime_ns) for r in manifest.runs for i in r.inputs}
