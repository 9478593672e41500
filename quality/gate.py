"""The gate: what stages downstream of a dataset (tokenize, train, release) ask before they read it."""

from __future__ import annotations

import logging

from pipelines.common.errors import UserError
from pipelines.lake import Lake
from pipelines.lake.quality_record import QUALITY, QualitySummary, current_quality_summary

log = logging.getLogger(__name__)
SHOWN = 3  # failing expectations a message names


class GateFailed(UserError):
    """A dataset failed its quality gate; the message names what failed, where, and a few rows."""


def docs_index(lake: Lake, dataset: str) -> str:
    return lake.path(QUALITY, dataset, "docs", "index.html")


def failure_lines(summary: QualitySummary) -> list[str]:
    """`expect_…(column) on SHARD: N rows, e.g. shard:id, …` for the first failing expectations."""
    lines = []
    for failed in summary.failed[:SHOWN]:
        column = f"({failed.column})" if failed.column else ""
        where = f" on {failed.shard}" if failed.shard else " across shards"
        count = f"{failed.unexpected} rows, " if failed.unexpected else ""
        examples = ", ".join(failed.examples) or "no row to show"
        lines.append(f"{failed.expectation}{column}{where}: {count}e.g. {examples}")
    if len(summary.failed) > SHOWN:
        lines.append(f"… and {len(summary.failed) - SHOWN} more failing expectations")
    return lines


def gate_message(lake: Lake, summary: QualitySummary) -> str:
    head = f"quality gate failed for {summary.dataset} ({len(summary.failed)} of {summary.expectations} expectations)"
    tail = f"Data Docs: {docs_index(lake, summary.dataset)}; `--warn-only` reports failures without stopping"
    return "\n".join([head, *(f"  {line}" for line in failure_lines(summary)), tail])


def require_passed(lake: Lake, dataset: str, required: bool = False) -> QualitySummary | None:
    """Stop (GateFailed) if the dataset as it is now failed its gate.

    A dataset never validated, or changed since, passes with a warning unless `required` (release
    requires a current validation; tokenize and train run on unvalidated data, as before the gates).
    """
    summary = current_quality_summary(lake, dataset)
    if summary is None:
        if required:
            raise GateFailed(f"{dataset} has no validation of its current version: run `lmforge validate {dataset}` first")
        log.warning("%s is not validated in its current version (`lmforge validate %s`)", dataset, dataset)
        return None
    if summary.blocks:
        raise GateFailed(gate_message(lake, summary))
    return summary
