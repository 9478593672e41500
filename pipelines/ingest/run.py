"""Ingest: raw web text → `documents/clean` (partitioned by language) and `documents/rejected`.

A datatrove pipeline, FineWeb's recipe with multilingual settings:

    InputReader (WARC/WET, JSONL, parquet, HF folder, HTML files; bad records flagged)
    → SetAside (reader's flagged records → rejected)
    → SandboxedExtraction (resiliparse by default, or trafilatura; per-document timeout)
    → LanguageID (lid.176 offline, FLORES codes)
    → Gopher repetition → Gopher quality → C4 quality → FineWeb quality (per language)
    → PII (e-mails, public IPs)
    → DocumentsWriter (atomic shards)

Every step that drops a document writes it with its reason to `documents/rejected/ingest/<step>/`.
A run is named by the fingerprint of its inputs (content hashes) and parameters: rerunning the same
run skips the tasks datatrove marked complete and redoes the rest, rewriting the same shard names,
so a killed run resumed equals an uninterrupted one, and ingesting the same input twice is a no-op.
The run's shards become part of `documents/clean` and `documents/rejected` when it is recorded in
their manifests, once every task finished; while it executes it holds its run lock (`locks`).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.extractors.base import BaseExtractor
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.formatters import PIIFormatter
from pydantic import BaseModel, Field

from pipelines.ingest.extract import SandboxedExtraction
from pipelines.ingest.inputs import InputError, InputItem, resolve_inputs
from pipelines.ingest.language import LanguageID, lid_model_path
from pipelines.ingest.quality_filters import fineweb_filters
from pipelines.ingest.readers import InputReader
from pipelines.lake import (
    DOCUMENTS_CLEAN,
    REJECTED,
    RUN_LOGS,
    STAGING,
    InputRecord,
    Lake,
    RunRecord,
    fingerprint,
    lmforge_version,
    read_shard,
    refresh_manifest,
    run_shards,
    shard_rows,
    utc_now,
)
from pipelines.lake.executors import ExecutorConfig, PipelineSubmitted, merged_stats, run_pipeline
from pipelines.lake.locks import run_lock
from pipelines.lake.writers import DocumentsWriter, RejectedWriter

STAGE = "ingest"
NO_INPUTS = "no WARC/WET, JSONL, parquet, HTML files or HF dataset folders found"


class IngestConfig(BaseModel):
    """Parameters of an ingest run (all but `workers` and `executor` are part of the run's fingerprint)."""

    workers: int = Field(default_factory=lambda: max(1, min(2, os.cpu_count() or 1)), ge=1)
    max_tasks: int = Field(default=16, ge=1, description="inputs are split into at most this many tasks")
    extractor: Literal["resiliparse", "trafilatura"] = Field(
        default="resiliparse", description="resiliparse: 12.6x faster, similar text (bench/extract.py); trafilatura: FineWeb's"
    )
    extraction_timeout: float = Field(default=1.0, gt=0, description="seconds per document (datatrove's default)")
    language_threshold: float = Field(default=0.65, ge=0, le=1)
    languages: list[str] | None = Field(default=None, description="lid.176 labels to keep (e.g. en, fr); None = all")
    redact_pii: bool = True
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig, description="local, Ray or Slurm; not the run's identity")

    def identity(self) -> dict:
        """The parameters that name a run: how and where it executes (workers, executor) is not one of them."""
        return self.model_dump(exclude={"workers", "executor"})


@dataclass
class IngestResult:
    run: str
    lake: str
    inputs: int
    documents: int
    rejected: int
    by_language: dict[str, int]
    by_reason: dict[str, int]
    unusable: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    step_stats: list[dict] = field(default_factory=list)
    logging_dir: str = ""


class SetAside(BaseFilter):
    """Sends the records the reader flagged as unusable (`reject_reason`) to the exclusion dataset."""

    name = "🗃 Set aside unreadable records"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = doc.metadata.get("reject_reason")
        return (False, reason) if reason else True


def ingest_inputs(paths: list[str]) -> list[InputItem]:
    """Resolve user paths; an empty result is the user's error, said in one line."""
    items = resolve_inputs(paths)
    if not items:
        raise InputError(f"nothing to ingest in {' '.join(paths)}: {NO_INPUTS}")
    return items


@lru_cache(maxsize=65536)
def content_hash(item: InputItem) -> str:
    """sha256 of an input's bytes (a folder: of its files in order), so a rebuilt identical file is the same input.

    Cached per item (path, size and mtime are part of it): the CLI plans the run for its progress bar
    and the flow plans it again in the same process; inputs are read once, not twice.
    """
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(item.path)
    files = sorted(fs.find(root)) if fs.isdir(root) else [root]
    digest = hashlib.sha256()
    for name in files:
        digest.update(os.path.relpath(name, root).encode() if name != root else b"")
        with fs.open(name, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def plan_run(items: list[InputItem], config: IngestConfig) -> tuple[str, int, list[str]]:
    """(run fingerprint, number of tasks, input content hashes) for these inputs and parameters."""
    hashes = [content_hash(i) for i in items]
    tasks = max(1, min(len(items), config.max_tasks))
    params = config.identity()
    run = fingerprint({"inputs": [(i.path, h) for i, h in zip(items, hashes)], "params": params, "tasks": tasks})
    return run, tasks, hashes


def run_logging_dir(lake: Lake, run: str) -> str:
    """datatrove's completions/, stats/ and logs/ of one run (one marker file per finished task)."""
    return lake.path(DOCUMENTS_CLEAN, RUN_LOGS, run)


def extractor(config: IngestConfig) -> BaseExtractor:
    """The configured extractor; trafilatura gets FineWeb's settings, except `deduplicate`.

    trafilatura's deduplication drops text segments it has seen in *earlier documents of the same
    process* (an LRU cache), so a page's text would depend on which task read it, in what order,
    and whether a timeout restarted the sandbox: 263 vs 112 empty extractions on the sample for 1
    vs 4 tasks. We keep each document's text a function of the document; dedup is its own stage.
    """
    if config.extractor == "resiliparse":
        from pipelines.ingest.resiliparse_extract import Resiliparse

        return Resiliparse(timeout=config.extraction_timeout)
    return Trafilatura(favour_precision=True, timeout=config.extraction_timeout, deduplicate=False)


def build_pipeline(items: list[InputItem], lake: Lake, run: str, config: IngestConfig) -> list[PipelineStep]:
    def excluded(step: str) -> RejectedWriter:
        return RejectedWriter(lake, REJECTED, run, STAGE, step)

    steps: list[PipelineStep] = [
        InputReader(items),
        SetAside(exclusion_writer=excluded("read")),
        SandboxedExtraction(extractor(config), excluded("extract")),
        LanguageID(lid_model_path(), config.language_threshold, config.languages, excluded("language")),
        *fineweb_filters(excluded),
    ]
    if config.redact_pii:
        steps.append(PIIFormatter())
    steps.append(DocumentsWriter(lake, DOCUMENTS_CLEAN, run))
    return steps


def _run_outputs(lake: Lake, run: str) -> tuple[Counter, Counter, list[tuple[str, str]]]:
    """Kept documents per language, rejections per reason and unusable files, read back from the lake."""
    by_lang: Counter = Counter()
    for shard in run_shards(lake, DOCUMENTS_CLEAN, run):
        lang = shard.rsplit("lang=", 1)[-1].split("/", 1)[0]
        by_lang[lang] += shard_rows(lake.fs, shard)
    by_reason: Counter = Counter()
    unusable: list[tuple[str, str]] = []
    for shard in run_shards(lake, REJECTED, run):
        table = read_shard(lake.fs, shard, ["reason", "source", "detail", "unusable_file"])
        for row in table.to_pylist():
            by_reason[row["reason"]] += 1
            if row["unusable_file"]:
                unusable.append((row["source"], row["detail"] or row["reason"]))
    return by_lang, by_reason, sorted(unusable)


def run_ingest(items: list[InputItem], lake: Lake, config: IngestConfig | None = None) -> IngestResult:
    """Ingest `items` into the lake; resumable and idempotent (see module docstring)."""
    config = config or IngestConfig()
    if not items:
        raise InputError(f"nothing to ingest: {NO_INPUTS}")
    config.executor.check_available()  # before hashing the inputs
    started = utc_now()
    run, tasks, hashes = plan_run(items, config)
    with run_lock(lake, run):  # `lmforge lake gc` leaves a run alone while it holds its lock
        staging = lake.path(STAGING, run)
        if lake.fs.exists(staging):  # whatever a killed attempt left half-written
            lake.fs.rm(staging, recursive=True)
        executor = run_pipeline(
            build_pipeline(items, lake, run, config),
            tasks=tasks,
            workers=config.workers,
            logging_dir=run_logging_dir(lake, run),
            config=config.executor,
            name=f"{STAGE}-{run}",
        )
        if executor.get_incomplete_ranks():  # only a Slurm run returns before its tasks finished
            raise PipelineSubmitted(f"{STAGE} run {run}", executor)
        record = RunRecord(
            run=run,
            stage=STAGE,
            parameters=config.identity() | {"tasks": tasks},
            inputs=[InputRecord(path=i.path, size=i.size, mtime_ns=i.mtime_ns, sha256=h) for i, h in zip(items, hashes)],
            started=started,
            finished=utc_now(),
            lmforge_version=lmforge_version(),
        )
        # Listing the run is what makes its shards part of the datasets (both, for its rejections).
        refresh_manifest(lake, DOCUMENTS_CLEAN, [record])
        refresh_manifest(lake, REJECTED, [record])
    by_lang, by_reason, unusable = _run_outputs(lake, run)
    return IngestResult(
        run=run,
        lake=lake.root,
        inputs=len(items),
        documents=sum(by_lang.values()),
        rejected=sum(by_reason.values()),
        by_language=dict(by_lang.most_common()),
        by_reason=dict(by_reason.most_common()),
        unusable=unusable,
        step_stats=merged_stats(run_logging_dir(lake, run)),
        logging_dir=run_logging_dir(lake, run),
    )
