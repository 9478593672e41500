"""What a validation left in the lake: `quality/<dataset>/summary.json`, the contract between the
quality gates (which write it) and the stages that must not run on data that failed them (which
read it: tokenize, train, release). The full GX validation results and Data Docs sit beside it.

A summary belongs to one version of its dataset, the runs its manifest listed when it was
validated; a dataset written since is unvalidated, whatever the old summary says.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel, Field

from pipelines.lake.contract import Lake, atomic_write_bytes, fingerprint, listed_runs
from pipelines.lake.token_layout import TOKENS, tokens_run

QUALITY = "quality"  # `quality/<dataset>/`: the dataset's latest validation
SUMMARY = "summary.json"
RESULTS = "results.parquet"  # one row per (shard, expectation): the catalog's `quality_results` view

RESULTS_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("kind", pa.string()),
        ("shard", pa.string()),
        ("expectation", pa.string()),
        ("column_name", pa.string()),  # not `column`: a reserved word in SQL
        ("success", pa.bool_()),
        ("rows", pa.int64()),
        ("unexpected", pa.int64()),
        ("examples", pa.list_(pa.string())),
        ("validated_at", pa.string()),
        ("warn_only", pa.bool_()),
    ]
)


class FailedExpectation(BaseModel):
    """One expectation that did not hold, with enough to find the rows."""

    expectation: str  # GX's type, e.g. expect_column_values_to_not_be_null
    column: str | None = None
    shard: str | None = None  # the shard's file name; None for checks across shards
    unexpected: int = 0  # rows that broke it
    examples: list[str] = Field(default_factory=list)  # a few of them (ids or values)


class QualitySummary(BaseModel):
    dataset: str
    kind: str  # the suite: documents, rejected, rephrased, instructions, preferences, tokens
    version: str  # `dataset_version` when validated
    validated_at: str
    success: bool  # every expectation held
    warn_only: bool = False  # failures were reported, not enforced
    rows: int = 0
    rows_validated: int = 0  # fewer than `rows` when a seeded sample was validated
    shards: int = 0
    expectations: int = 0  # expectations evaluated, over all shards
    failed: list[FailedExpectation] = Field(default_factory=list)

    @property
    def blocks(self) -> bool:
        """Whether stages downstream must refuse this dataset."""
        return not self.success and not self.warn_only


def dataset_version(lake: Lake, dataset: str) -> str:
    """The runs the dataset's manifest lists, as one fingerprint: changes whenever a run adds or replaces shards.
    A token dataset (`tokens/<tokenizer>/<name>`) is the one run its own manifest names."""
    if dataset.startswith(f"{TOKENS}/"):
        return tokens_run(lake, lake.path(dataset)) or ""
    return fingerprint(sorted(listed_runs(lake, dataset)))


def summary_path(lake: Lake, dataset: str) -> str:
    return lake.path(f"{QUALITY}/{dataset}/{SUMMARY}")


def write_quality_summary(lake: Lake, summary: QualitySummary) -> str:
    path = summary_path(lake, summary.dataset)
    atomic_write_bytes(lake.fs, path, summary.model_dump_json(indent=2).encode())
    return path


def read_quality_summary(lake: Lake, dataset: str) -> QualitySummary | None:
    """The dataset's latest validation, or None if it was never validated."""
    path = summary_path(lake, dataset)
    if not lake.fs.exists(path):
        return None
    with lake.fs.open(path, "rb") as f:
        return QualitySummary.model_validate_json(f.read())


def current_quality_summary(lake: Lake, dataset: str) -> QualitySummary | None:
    """The latest validation if it is of the dataset as it is now, else None."""
    summary = read_quality_summary(lake, dataset)
    return summary if summary is not None and summary.version == dataset_version(lake, dataset) else None
