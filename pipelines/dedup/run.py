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
an unchanged lake does nothing. When a run finishes it takes the place of earlier dedup runs in the
manifests of `documents/dedup` and `documents/rejected` (ingest's runs stay listed there), then their
outputs are removed: dedup is global, so `documents/dedup` holds exactly one run.
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter
from dataclasses import dataclass, field

from datatrove.data import DocumentsPipeline
from datatrove.executor.base import PipelineExecutor
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
from datatrove.pipeline.readers import ParquetReader
from pydantic import BaseModel, Field

from pipelines.dedup.minhash_signature import MinhashSignatures
from pipelines.dedup.steps import (
    REASONS,
    STAGE,
    STEP_OF,
    WORK,
    ApplyDedup,
    Clusters,
    DuplicateKeys,
    KeyMatches,
    WorkFolder,
    write_atomic,
)
from pipelines.lake import (
    DOCUMENTS_CLEAN,
    DOCUMENTS_DEDUP,
    REJECTED,
    RUN_LOGS,
    STAGING,
    InputRecord,
    Lake,
    RunRecord,
    fingerprint,
    listed_runs,
    listed_shards,
    lmforge_version,
    read_manifest,
    read_shard,
    refresh_manifest,
    run_shards,
    shard_batches,
    shard_rows,
    shard_run,
    utc_now,
)
from pipelines.lake.executors import ExecutorConfig, PipelineSubmitted, merged_stats, run_pipeline
from pipelines.lake.locks import run_lock
from pipelines.lake.writers import DocumentsWriter, RejectedWriter

STAGES = ("signatures", "buckets", "keys", "clusters", "filter")

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


# --- the run -------------------------------------------------------------------------------------


def input_shards(lake: Lake) -> list[tuple[str, int]]:
    """(path relative to documents/clean, size) of every clean shard: the run's input, in reading order.

    The shards of the ingest runs the clean manifest lists, nothing a killed run left there. They go
    in the order their runs finished, then by name, so the copy a cluster keeps (its earliest) is the
    one ingested first and stays kept when new data comes.
    """
    manifest = read_manifest(lake, DOCUMENTS_CLEAN)
    finished = {r.run: i for i, r in enumerate(sorted(manifest.runs, key=lambda r: r.finished))} if manifest else {}
    base = lake.path(DOCUMENTS_CLEAN)
    shards = [(posixpath.relpath(s, base), lake.fs.size(s)) for s in listed_shards(lake, DOCUMENTS_CLEAN)]
    return sorted(shards, key=lambda shard: (finished[shard_run(shard[0])], shard[0]))


def plan_run(lake: Lake, config: DedupConfig) -> tuple[str, int, list[tuple[str, int]]]:
    """(run fingerprint, tasks, input shards) for the lake as it is now."""
    shards = input_shards(lake)
    tasks = max(1, min(len(shards), config.max_tasks))
    run = fingerprint({"inputs": shards, "params": config.identity(), "tasks": tasks})
    return run, tasks, shards


class _SynchronousParquetReader(ParquetReader):
    """datatrove's ParquetReader, reading each shard with `shard_batches`, on the calling thread.

    datatrove's own opens `pq.ParquetFile` with pre-buffering on, so pyarrow's IO threads call the
    Python file object, and one still doing so at interpreter exit aborts the process after all its
    work is done (`read_shard` says how).
    """

    def read_file(self, filepath: str) -> DocumentsPipeline:
        line = 0  # datatrove's numbering: documents kept so far in this file
        columns = [self.text_key, self.id_key] if not self.read_metadata else None
        for batch in shard_batches(self.data_folder, filepath, columns, self.batch_size):
            documents = []
            with self.track_time("batch"):
                for row in batch.to_pylist():
                    document = self.get_document_from_dict(row, filepath, line)
                    if document:
                        documents.append(document)
                        line += 1
            yield from documents


def _reader(lake: Lake, paths_file: str) -> ParquetReader:
    return _SynchronousParquetReader(lake.path(DOCUMENTS_CLEAN), paths_file=paths_file, batch_size=1000)


def stage_logging_dir(lake: Lake, run: str, stage: str) -> str:
    return lake.path(DOCUMENTS_DEDUP, RUN_LOGS, run, stage)


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


def _remove_other_runs(lake: Lake, run: str) -> None:
    """Earlier dedup runs' shards, rejections and work files: dedup is global, one run stands.

    Called once this run replaced them in the manifests, so no reader is reading them any more.
    """
    fs = lake.fs
    doomed = [s for s in lake.shards(DOCUMENTS_DEDUP) if shard_run(s) != run]
    rejected = lake.path(REJECTED, STAGE)
    doomed += [s for s in lake.shards(REJECTED) if s.startswith(rejected + "/") and shard_run(s) != run]
    for base in (lake.path(WORK), lake.path(DOCUMENTS_DEDUP, RUN_LOGS)):
        if fs.exists(base):
            doomed += [p for p in fs.ls(base, detail=False) if posixpath.basename(p) != run]
    for path in doomed:
        fs.rm(path, recursive=True)


def _outputs(lake: Lake, run: str) -> tuple[Counter, Counter]:
    """Kept documents per language and removed ones per (language, reason) of this run, from shard footers."""
    kept: Counter = Counter()
    for shard in run_shards(lake, DOCUMENTS_DEDUP, run):
        lang = shard.rsplit("lang=", 1)[-1].split("/", 1)[0]
        kept[lang] += shard_rows(lake.fs, shard)
    removed: Counter = Counter()
    for shard in run_shards(lake, REJECTED, run):
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
    if finished := _finished_record(lake, run):
        _list_rejections(lake, finished)
        return _summary(run, lake, config, skipped=True, stats=[])
    with run_lock(lake, run):  # `lmforge lake gc` leaves a run alone while it holds its lock
        staging = lake.path(STAGING, run)
        if lake.fs.exists(staging):  # whatever a killed attempt left half-written
            lake.fs.rm(staging, recursive=True)
        config.executor.check_available()
        if shards:
            last = _dedup(lake, run, tasks, shards, config)
            if config.executor.kind == "slurm":
                raise PipelineSubmitted(f"dedup run {run}", last)
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
        # Listed first, removed after: readers switch from the old run to this one at once, and a
        # kill in between leaves the old files unlisted, for the next run or `lmforge lake gc`.
        refresh_manifest(lake, DOCUMENTS_DEDUP, [record], replace_stage=True)
        _list_rejections(lake, record)
        _remove_other_runs(lake, run)
    return _summary(run, lake, config, skipped=False, stats=_stage_stats(lake, run))


def _finished_record(lake: Lake, run: str) -> RunRecord | None:
    manifest = read_manifest(lake, DOCUMENTS_DEDUP)
    return next((r for r in manifest.runs if r.run == run), None) if manifest else None


def _list_rejections(lake: Lake, record: RunRecord) -> None:
    """List the run in `documents/rejected` in place of earlier dedup runs (ingest runs stay listed).

    Also for a run that finished before dedup listed its rejections there (older lakes), which
    would otherwise stay out of the `rejected` view until the next dedup run.
    """
    if record.run not in listed_runs(lake, REJECTED):
        refresh_manifest(lake, REJECTED, [record], replace_stage=True)


def _dedup(lake: Lake, run: str, tasks: int, shards: list[tuple[str, int]], config: DedupConfig) -> PipelineExecutor:
    """The five stages (see the module docstring); returns the last stage's executor."""
    work = WorkFolder(lake, run)
    paths_file = posixpath.join(work.root, "inputs.txt")
    if not lake.fs.exists(paths_file):
        write_atomic(get_datafolder(work.root), "inputs.txt", "".join(f"{path}\n" for path, _ in shards).encode())
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
