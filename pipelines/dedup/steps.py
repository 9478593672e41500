"""The datatrove steps dedup runs besides datatrove's own (see `pipelines.dedup.run` for the plan):
exact and URL keys (stage 1), their pairs (stage 3), the clusters (stage 4) and the filter (stage 5),
with the work folder they share."""

from __future__ import annotations

import heapq
import posixpath
import struct
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from datatrove.data import DocumentsPipeline
from datatrove.io import DataFolder, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.binaryio import read_tuples_from_file

from pipelines.lake import (
    Lake,
    read_shard,
)
from pipelines.lake.text_keys import normalised_text
from pipelines.lake.writers import RejectedWriter

STAGE = "dedup"
WORK = "_work/dedup"
EXACT, URL, NEAR = "exact_duplicate", "url_duplicate", "near_duplicate"
REASONS = (EXACT, URL, NEAR)
STEP_OF = {EXACT: "exact", URL: "url", NEAR: "near"}

# One sorted key record: 128-bit key, an ordering field (which member of a group is kept: the
# smallest), and the document's index in its task's reading order.
KEY_DTYPE = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("order", "<i8"), ("idx", "<u4")])
PAIR = struct.Struct("<4I")  # (kept file, kept idx, removed file, removed idx), datatrove's .dups format
CHUNK_ROWS = 1 << 16


# --- keys ----------------------------------------------------------------------------------------


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


def write_atomic(folder: DataFolder, name: str, data: bytes) -> None:
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
            write_atomic(self.work.keys, f"{kind}/{rank:05d}.keys", columns.sorted_bytes())
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"id": pa.array(ids, pa.string())}), sink, compression="zstd")
        write_atomic(self.work.keys, f"ids/{rank:05d}.parquet", sink.getvalue().to_pybytes())


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
            write_atomic(self.work.clusters, f"{file:05d}.parquet", sink.getvalue().to_pybytes())

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
