"""Dedup: `documents/clean` → `documents/dedup`, one copy of each document.

Three kinds of duplicate, removed in this order, all in one pass over the text:

- **exact**: the same text once Unicode (NFKC), case and whitespace are normalised; the earliest
  document is kept;
- **URL**: the same normalised URL (scheme, `www.`, default port, fragment, trailing slash and query
  order ignored); the longest document is kept;
- **near** (MinHash LSH, FineWeb's parameters by default: word 5-grams, 14 bands × 8 rows, so a
  pair is caught from a Jaccard similarity of about (1/14)^(1/8) ≈ 0.72): the earliest document of
  each cluster is kept, with `minhash_cluster_size` = how many documents the cluster held.

Every removed document goes to `documents/rejected/dedup/<kind>/` with its reason and
`duplicate_of`, the id of the document that was kept in its place.

The work is datatrove's MinHash plan, as five executor stages (the `STAGES`) whose intermediate
files spill to `_work/dedup/<run>/` (nothing grows in memory with the corpus but the set of
duplicates itself, as in datatrove's clustering). datatrove's own clustering and filter steps keep
an arbitrary member of a cluster and do not say what a removed document duplicates; ours do, with
exact, URL and near duplicates in one union-find, so stages 4 and 5 are ours:

1. `signatures` (one task per input slice): MinHash signatures per band (`MinhashSignatures`,
   our faster twin of datatrove's stage 1, same file format) and, per task, sorted exact/URL keys
   plus the ids in reading order;
2. `buckets` (one task per band): datatrove's `MinhashDedupBuckets` finds the near-duplicate pairs;
3. `keys` (one task): a streaming k-way merge of the sorted keys finds the exact and URL pairs;
4. `clusters` (one task): union-find over the pairs, exact then URL then near, picks the document
   each cluster keeps and resolves the id every removed document duplicates;
5. `filter` (one task per input slice): reads the documents again in the same order and writes the
   kept ones (with their cluster size) and the removed ones (with their reason).

A run is named by a fingerprint of the input shards and the parameters. Each stage resumes from
datatrove's completion markers, so a killed run rerun gives the same result, and a second run on
an unchanged lake does nothing. When a run finishes, the outputs of earlier runs are removed: dedup
is global, so `documents/dedup` holds exactly one run.
"""

from __future__ import annotations

import heapq
import os
import posixpath
import struct
import unicodedata
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from datatrove.data import DocumentsPipeline
from datatrove.executor.base import PipelineExecutor
from datatrove.io import DataFolder, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
from datatrove.pipeline.readers import ParquetReader
from datatrove.utils.binaryio import read_tuples_from_file
from pydantic import BaseModel, Field

from pipelines.executors import ExecutorConfig, PipelineSubmitted, merged_stats, run_pipeline
from pipelines.lake import (
    DOCUMENTS_CLEAN,
    DOCUMENTS_DEDUP,
    REJECTED,
    STAGING,
    InputRecord,
    Lake,
    RunRecord,
    fingerprint,
    lmforge_version,
    read_manifest,
    read_shard,
    refresh_manifest,
    shard_rows,
    utc_now,
)
from pipelines.lake_writers import DocumentsWriter, RejectedWriter
from pipelines.minhash_signature import MinhashSignatures

STAGE = "dedup"
WORK = "_work/dedup"
EXACT, URL, NEAR = "exact_duplicate", "url_duplicate", "near_duplicate"
REASONS = (EXACT, URL, NEAR)
STEP_OF = {EXACT: "exact", URL: "url", NEAR: "near"}
STAGES = ("signatures", "buckets", "keys", "clusters", "filter")

# One sorted key record: 128-bit key, an ordering field (which member of a group is kept: the
# smallest), and the document's index in its task's reading order.
KEY_DTYPE = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("order", "<i8"), ("idx", "<u4")])
PAIR = struct.Struct("<4I")  # (kept file, kept idx, removed file, removed idx), datatrove's .dups format
CHUNK_ROWS = 1 << 16


class DedupConfig(BaseModel):
    """Parameters of a dedup run (all but `workers` and `executor` are part of the run's fingerprint)."""

    workers: int = Field(default_factory=lambda: max(1, min(2, os.cpu_count() or 1)), ge=1)
    exact: bool = True
    url: bool = True
    minhash: bool = True
    n_grams: int = Field(default=5, ge=1, description="words per shingle")
    bands: int = Field(default=14, ge=1, description="LSH bands (datatrove: num_buckets)")
    rows: int = Field(default=8, ge=1, description="hashes per band (datatrove: hashes_per_bucket)")
    seed: int = 1
    max_tasks: int = Field(default=16, ge=1, description="input shards are split into at most this many tasks")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    def identity(self) -> dict:
        """The parameters that name a run: how and where it executes is not one of them."""
        return self.model_dump(exclude={"workers", "executor"})

    @property
    def threshold(self) -> float:
        """The Jaccard similarity at which a pair has a 50% chance of sharing a band, ≈ (1/b)^(1/r)."""
        return (1 / self.bands) ** (1 / self.rows)

    def minhash_config(self) -> MinhashConfig:
        return MinhashConfig(n_grams=self.n_grams, num_buckets=self.bands, hashes_per_bucket=self.rows, seed=self.seed)


@dataclass
class DedupResult:
    run: str
    lake: str
    documents: int
    kept: int
    removed: dict[str, int]  # reason -> documents
    by_language: dict[str, dict[str, int]]  # lang -> {"in", "kept", reason...}
    threshold: float
    step_stats: list[dict] = field(default_factory=list)
    skipped: bool = False  # the same run had already finished: nothing was redone

    @property
    def duplicates(self) -> int:
        return sum(self.removed.values())


# --- keys ----------------------------------------------------------------------------------------


def normalised_text(text: str) -> str:
    """What two texts must share to be exact duplicates: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def normalised_url(url: str) -> str:
    """One spelling per page: no scheme, `www.`, default port, fragment or trailing slash; sorted query."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").removeprefix("www.")
    port = parts.port if parts.port not in (None, 80, 443) else None
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    path = parts.path.rstrip("/")
    return f"{host}{f':{port}' if port else ''}{path}{'?' + query if query else ''}"


def _key(text: str) -> tuple[int, int]:
    digest = xxhash.xxh3_128_intdigest(text.encode("utf-8", "surrogatepass"))
    return digest >> 64, digest & ((1 << 64) - 1)


class WorkFolder:
    """Where one run's intermediate files live: `_work/dedup/<run>/`, outside the dataset, so that
    `documents/dedup/**/*.parquet` is the documents and nothing else."""

    def __init__(self, lake: Lake, run: str) -> None:
        self.root = lake.path(WORK, run)

    def folder(self, *parts: str) -> DataFolder:
        return get_datafolder(posixpath.join(self.root, *parts))

    @property
    def signatures(self) -> DataFolder:
        return self.folder("minhash_signatures")

    @property
    def buckets(self) -> DataFolder:
        return self.folder("minhash_buckets")

    @property
    def keys(self) -> DataFolder:
        return self.folder("keys")

    @property
    def clusters(self) -> DataFolder:
        return self.folder("clusters")


def _write_atomic(folder: DataFolder, name: str, data: bytes) -> None:
    with folder.open(name + ".tmp", "wb") as f:
        f.write(data)
    folder.fs.mv(folder.resolve_paths(name + ".tmp"), folder.resolve_paths(name))


class DuplicateKeys(PipelineStep):
    """Stage 1 (`signatures`), beside the MinHash step: each task's exact and URL keys, sorted, and its ids.

    Documents pass through unchanged (the signature step after it consumes them); a document's
    index is its position in the task's reading order, the same numbering datatrove's MinHash uses.
    """

    type = "🫂 - DEDUP"
    name = "🔑 exact and URL keys"

    def __init__(self, work: WorkFolder, exact: bool, url: bool) -> None:
        super().__init__()
        self.work, self.exact, self.url = work, exact, url

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        keys = {kind: _KeyColumns() for kind in ("exact", "url")}
        ids: list[str] = []
        for idx, doc in enumerate(data):
            with self.track_time():
                self.stat_update("documents")
                ids.append(doc.id)
                if self.exact:
                    keys["exact"].add(_key(normalised_text(doc.text)), 0, idx)
                if self.url and (address := doc.metadata.get("url")):
                    keys["url"].add(_key(normalised_url(address)), -len(doc.text), idx)
            yield doc
        for kind, columns in keys.items():
            _write_atomic(self.work.keys, f"{kind}/{rank:05d}.keys", columns.sorted_bytes())
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"id": pa.array(ids, pa.string())}), sink, compression="zstd")
        _write_atomic(self.work.keys, f"ids/{rank:05d}.parquet", sink.getvalue().to_pybytes())


class _KeyColumns:
    """One task's keys as compact typed columns (24 bytes a document, not a Python tuple each)."""

    def __init__(self) -> None:
        self.hi, self.lo, self.order, self.idx = array("Q"), array("Q"), array("q"), array("I")

    def add(self, key: tuple[int, int], order: int, idx: int) -> None:
        self.hi.append(key[0])
        self.lo.append(key[1])
        self.order.append(order)
        self.idx.append(idx)

    def sorted_bytes(self) -> bytes:
        records = np.empty(len(self.idx), dtype=KEY_DTYPE)
        for name in KEY_DTYPE.names:
            records[name] = np.frombuffer(getattr(self, name), dtype=KEY_DTYPE[name]) if len(self.idx) else []
        records.sort(order=KEY_DTYPE.names)
        return records.tobytes()


def _sorted_keys(folder: DataFolder, name: str, file: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(hi, lo, order, file, idx) of one task's sorted key file, read a chunk at a time."""
    with folder.open(name, "rb") as f:
        while block := f.read(CHUNK_ROWS * KEY_DTYPE.itemsize):
            for hi, lo, order, idx in np.frombuffer(block, dtype=KEY_DTYPE).tolist():
                yield hi, lo, order, file, idx


class KeyMatches(PipelineStep):
    """Stage 3 (`keys`): one streaming k-way merge per kind, pairs in datatrove's format.

    In a run of equal keys the first record is the one kept (smallest `order`, then earliest), and
    every other member is paired with it.
    """

    type = "🫂 - DEDUP"
    name = "🔑 exact and URL matches"

    def __init__(self, work: WorkFolder) -> None:
        super().__init__()
        self.work = work

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        keys = self.work.keys
        for kind in ("exact", "url"):
            files = keys.list_files(subdirectory=kind, glob_pattern="*.keys")
            merged = heapq.merge(*(_sorted_keys(keys, name, int(posixpath.basename(name)[:5])) for name in files))
            with self.track_time(), self.work.buckets.open(f"{kind}.pairs.tmp", "wb") as out:
                kept: tuple[int, int, int, int, int] | None = None
                for record in merged:
                    if kept is not None and record[:2] == kept[:2]:
                        out.write(PAIR.pack(kept[3], kept[4], record[3], record[4]))
                        self.stat_update(f"{kind}_pairs")
                    else:
                        kept = record
            buckets = self.work.buckets
            buckets.fs.mv(buckets.resolve_paths(f"{kind}.pairs.tmp"), buckets.resolve_paths(f"{kind}.pairs"))
        return
        yield


def _pairs(folder: DataFolder, names: list[str]) -> Iterator[tuple[int, int]]:
    """(kept node, removed node) of pair files; a node is `file << 32 | idx`."""
    for name in names:
        with folder.open(name, "rb") as f:
            for f1, d1, f2, d2 in read_tuples_from_file(f, "4I", lines_to_buffer=CHUNK_ROWS):
                yield f1 << 32 | d1, f2 << 32 | d2


class Clusters(PipelineStep):
    """Stage 4 (`clusters`): union-find over all pairs; writes, per input task, what happens to its duplicates.

    Exact pairs first, then URL pairs between documents still standing, then MinHash pairs, which
    merge whole clusters. A cluster keeps its earliest document (URL groups: their longest), and a
    removed document records the kept one as `duplicate_of`.
    """

    type = "🫂 - DEDUP"
    name = "🧩 clusters"

    def __init__(self, work: WorkFolder, tasks: int) -> None:
        super().__init__()
        self.work, self.tasks = work, tasks

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        parent: dict[int, int] = {}
        reason: dict[int, str] = {}

        def find(node: int) -> int:
            root = node
            while (up := parent.get(root, root)) != root:
                root = up
            while node != root:  # path compression
                parent[node], node = root, parent[node]
            return root

        def remove(node: int, kept: int, why: str) -> None:
            parent[node] = kept
            parent.setdefault(kept, kept)
            reason[node] = why
            self.stat_update(why)

        buckets = self.work.buckets
        with self.track_time():
            for kept, node in _pairs(buckets, ["exact.pairs"]):
                if node not in reason:
                    remove(node, find(kept), EXACT)
            for kept, node in _pairs(buckets, ["url.pairs"]):
                kept = find(kept)
                if node not in reason and kept != node:  # a document already gone as an exact copy stays so
                    remove(node, kept, URL)
            for a, b in _pairs(buckets, buckets.list_files(glob_pattern="*.dups")):
                a, b = find(a), find(b)
                if a != b:
                    kept, node = min(a, b), max(a, b)
                    remove(node, kept, NEAR)
            self._write(parent, reason, find)

    def _write(self, parent: dict[int, int], reason: dict[int, str], find: Callable[[int], int]) -> None:
        sizes = Counter(find(node) for node in parent)
        rows: dict[int, list[tuple[int, str | None, int, int]]] = {}
        for node in sorted(parent):
            root = find(node)
            rows.setdefault(node >> 32, []).append((node & 0xFFFFFFFF, reason.get(node), root, sizes[root]))
        ids = self._ids({root for entries in rows.values() for _, why, root, _ in entries if why})
        for file in range(self.tasks):
            entries = rows.get(file, [])
            table = pa.table(
                {
                    "idx": pa.array([e[0] for e in entries], pa.uint32()),
                    "reason": pa.array([e[1] for e in entries], pa.string()),
                    "duplicate_of": pa.array([ids[e[2]] if e[1] else None for e in entries], pa.string()),
                    "cluster_size": pa.array([e[3] for e in entries], pa.int32()),
                }
            )
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            _write_atomic(self.work.clusters, f"{file:05d}.parquet", sink.getvalue().to_pybytes())

    def _ids(self, nodes: set[int]) -> dict[int, str]:
        """The ids of these nodes, reading each task's id list once."""
        found: dict[int, str] = {}
        by_file: dict[int, list[int]] = {}
        for node in nodes:
            by_file.setdefault(node >> 32, []).append(node)
        for file, members in by_file.items():
            keys = self.work.keys
            column = read_shard(keys.fs, keys.resolve_paths(f"ids/{file:05d}.parquet"), ["id"]).column("id")
            for node in members:
                found[node] = column[node & 0xFFFFFFFF].as_py()
        return found


class ApplyDedup(PipelineStep):
    """Stage 5 (`filter`): drops each task's duplicates (to their exclusion writers) and tags the kept ones."""

    type = "🫂 - DEDUP"
    name = "✂️ drop duplicates"

    def __init__(self, work: WorkFolder, exclusions: dict[str, RejectedWriter]) -> None:
        super().__init__()
        self.work, self.exclusions = work, exclusions

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        clusters = self.work.clusters
        table = read_shard(clusters.fs, clusters.resolve_paths(f"{rank:05d}.parquet")).to_pylist()
        fate = {row["idx"]: row for row in table}
        for idx, doc in enumerate(data):
            with self.track_time():
                self.stat_update("documents")
                row = fate.get(idx)
                doc.metadata["minhash_cluster_size"] = row["cluster_size"] if row else 1
                if row and row["reason"]:
                    doc.metadata["reject_reason"] = row["reason"]
                    doc.metadata["duplicate_of"] = row["duplicate_of"]
                    self.stat_update(row["reason"])
                    self.exclusions[row["reason"]].write(doc, rank)
                    continue
                self.stat_update("kept")
            yield doc
        for writer in self.exclusions.values():  # published only once the whole task went through
            writer.close()


# --- the run -------------------------------------------------------------------------------------


def input_shards(lake: Lake) -> list[tuple[str, int]]:
    """(path relative to documents/clean, size) of every clean shard: the run's input, in reading order.

    Shards go in the order their ingest runs finished (the clean manifest), then by name, so the
    copy a cluster keeps (its earliest) is the one ingested first and stays kept when new data comes.
    """
    manifest = read_manifest(lake, DOCUMENTS_CLEAN)
    finished = {r.run: i for i, r in enumerate(sorted(manifest.runs, key=lambda r: r.finished))} if manifest else {}
    base = lake.path(DOCUMENTS_CLEAN)
    shards = [(posixpath.relpath(s, base), lake.fs.size(s)) for s in lake.shards(DOCUMENTS_CLEAN)]

    def ingested(shard: tuple[str, int]) -> tuple[int, str]:
        run = posixpath.basename(shard[0]).split("_")[-2:][0]  # `[NNN_]<run>_<rank>.parquet`
        return finished.get(run, len(finished)), shard[0]

    return sorted(shards, key=ingested)


def plan_run(lake: Lake, config: DedupConfig) -> tuple[str, int, list[tuple[str, int]]]:
    """(run fingerprint, tasks, input shards) for the lake as it is now."""
    shards = input_shards(lake)
    tasks = max(1, min(len(shards), config.max_tasks))
    run = fingerprint({"inputs": shards, "params": config.identity(), "tasks": tasks})
    return run, tasks, shards


def _reader(lake: Lake, paths_file: str) -> ParquetReader:
    return ParquetReader(lake.path(DOCUMENTS_CLEAN), paths_file=paths_file, batch_size=1000)


def stage_logging_dir(lake: Lake, run: str, stage: str) -> str:
    return lake.path(DOCUMENTS_DEDUP, "_datatrove", run, stage)


def stage_tasks(lake: Lake, run: str, tasks: int, config: DedupConfig) -> dict[str, int]:
    """Each stage's logging dir and task count (for progress: datatrove marks each finished task there)."""
    counts = dict(zip(STAGES, (tasks, config.bands if config.minhash else 0, 1, 1, tasks)))
    return {stage_logging_dir(lake, run, stage): n for stage, n in counts.items() if n}


def _stage(
    lake: Lake, run: str, name: str, pipeline: list[PipelineStep], tasks: int, config: DedupConfig, after: PipelineExecutor | None
) -> PipelineExecutor:
    """Run one stage; on Slurm it is queued after the previous one (`after`) and this returns at once."""
    return run_pipeline(
        pipeline,
        tasks=tasks,
        logging_dir=stage_logging_dir(lake, run, name),
        config=config.executor,
        name=f"dedup-{name}",
        workers=config.workers,
        depends=after,
    )


def _of_run(shard: str, run: str) -> bool:
    """Shard names are `[NNN_]<run>_<rank>.parquet` (datatrove numbers the files of a size-capped task)."""
    return f"{run}_" in posixpath.basename(shard)


def _remove_other_runs(lake: Lake, run: str) -> None:
    """Earlier dedup runs' shards, rejections and work files: dedup is global, one run stands."""
    fs = lake.fs
    doomed = [s for s in lake.shards(DOCUMENTS_DEDUP) if not _of_run(s, run)]
    rejected = lake.path(REJECTED, STAGE)
    doomed += [s for s in lake.shards(REJECTED) if s.startswith(rejected + "/") and not _of_run(s, run)]
    for base in (lake.path(WORK), lake.path(DOCUMENTS_DEDUP, "_datatrove")):
        if fs.exists(base):
            doomed += [p for p in fs.ls(base, detail=False) if posixpath.basename(p) != run]
    for path in doomed:
        fs.rm(path, recursive=True)


def _outputs(lake: Lake, run: str) -> tuple[Counter, Counter]:
    """Kept documents per language and removed ones per (language, reason) of this run, from shard footers."""
    kept: Counter = Counter()
    for shard in lake.shards(DOCUMENTS_DEDUP):
        if _of_run(shard, run):
            lang = shard.rsplit("lang=", 1)[-1].split("/", 1)[0]
            kept[lang] += shard_rows(lake.fs, shard)
    removed: Counter = Counter()
    base = lake.path(REJECTED, STAGE)
    for shard in lake.shards(REJECTED):
        if shard.startswith(base + "/") and _of_run(shard, run):
            for row in read_shard(lake.fs, shard, ["lang", "reason"]).to_pylist():
                removed[(row["lang"], row["reason"])] += 1
    return kept, removed


def _summary(run: str, lake: Lake, config: DedupConfig, skipped: bool, stats: list[dict]) -> DedupResult:
    kept, removed = _outputs(lake, run)
    by_language: dict[str, dict[str, int]] = {}
    for lang, n in kept.items():
        by_language.setdefault(lang, Counter())["kept"] += n
    for (lang, why), n in removed.items():
        by_language.setdefault(lang, Counter())[why] += n
    for counts in by_language.values():
        counts["in"] = sum(counts.values())
    by_reason = Counter()
    for (_, why), n in removed.items():
        by_reason[why] += n
    return DedupResult(
        run=run,
        lake=lake.root,
        documents=sum(kept.values()) + sum(removed.values()),
        kept=sum(kept.values()),
        removed={why: by_reason[why] for why in REASONS if by_reason[why]},
        by_language={lang: dict(c) for lang, c in sorted(by_language.items(), key=lambda kv: -kv[1]["in"])},
        threshold=config.threshold,
        step_stats=stats,
        skipped=skipped,
    )


def run_dedup(lake: Lake, config: DedupConfig | None = None) -> DedupResult:
    """Deduplicate the lake's clean documents into `documents/dedup`; resumable and idempotent."""
    config = config or DedupConfig()
    started = utc_now()
    run, tasks, shards = plan_run(lake, config)
    manifest_runs = _finished_runs(lake)
    if run in manifest_runs:
        return _summary(run, lake, config, skipped=True, stats=[])
    staging = lake.path(STAGING, run)
    if lake.fs.exists(staging):  # whatever a killed attempt left half-written
        lake.fs.rm(staging, recursive=True)
    config.executor.check_available()
    if shards:
        last = _dedup(lake, run, tasks, shards, config)
        if config.executor.kind == "slurm":
            raise PipelineSubmitted(f"dedup run {run}", last)
    _remove_other_runs(lake, run)
    base = lake.path(DOCUMENTS_CLEAN)
    record = RunRecord(
        run=run,
        stage=STAGE,
        parameters=config.identity() | {"tasks": tasks, "threshold": config.threshold},
        inputs=[InputRecord(path=posixpath.join(base, path), size=size, mtime_ns=0) for path, size in shards],
        started=started,
        finished=utc_now(),
        lmforge_version=lmforge_version(),
    )
    refresh_manifest(lake, DOCUMENTS_DEDUP, [record], keep_runs=False)
    refresh_manifest(lake, REJECTED)
    return _summary(run, lake, config, skipped=False, stats=_stage_stats(lake, run))


def _finished_runs(lake: Lake) -> set[str]:
    manifest = read_manifest(lake, DOCUMENTS_DEDUP)
    return {r.run for r in manifest.runs} if manifest else set()


def _dedup(lake: Lake, run: str, tasks: int, shards: list[tuple[str, int]], config: DedupConfig) -> PipelineExecutor:
    """The five stages (see the module docstring); returns the last stage's executor."""
    work = WorkFolder(lake, run)
    paths_file = posixpath.join(work.root, "inputs.txt")
    if not lake.fs.exists(paths_file):
        _write_atomic(get_datafolder(work.root), "inputs.txt", "".join(f"{path}\n" for path, _ in shards).encode())
    minhash = config.minhash_config()
    signatures = MinhashSignatures(work.signatures, minhash) if config.minhash else _Drain()
    last = _stage(
        lake,
        run,
        "signatures",
        [_reader(lake, paths_file), DuplicateKeys(work, config.exact, config.url), signatures],
        tasks,
        config,
        None,
    )
    if config.minhash:
        last = _stage(
            lake, run, "buckets", [MinhashDedupBuckets(work.signatures, work.buckets, config=minhash)], config.bands, config, last
        )
    last = _stage(lake, run, "keys", [KeyMatches(work)], 1, config, last)
    last = _stage(lake, run, "clusters", [Clusters(work, tasks)], 1, config, last)
    exclusions = {why: RejectedWriter(lake, REJECTED, run, STAGE, STEP_OF[why]) for why in REASONS}
    dedup = [_reader(lake, paths_file), ApplyDedup(work, exclusions), DocumentsWriter(lake, DOCUMENTS_DEDUP, run)]
    return _stage(lake, run, "filter", dedup, tasks, config, last)


class _Drain(PipelineStep):
    """Consumes the documents when no MinHash step follows the keys."""

    name = "drain"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for _ in data:
            pass
        return
        yield


def _stage_stats(lake: Lake, run: str) -> list[dict]:
    return [step | {"stage": stage} for stage in STAGES for step in merged_stats(stage_logging_dir(lake, run, stage))]
