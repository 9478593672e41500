"""The whole path on the embedded default, as one Prefect flow: `lmforge run`.

Today: ingest the sample corpus, then deduplicate the lake. Later stages (tokenizer, synthetic
data, training) join here.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.dedup import dedup_flow
from flows.ingest import ingest_flow
from flows.summaries import run_markdown
from pipelines.dedup import DedupConfig, DedupResult
from pipelines.ingest import IngestConfig, IngestResult


@dataclass
class EndToEndResult:
    ingest: IngestResult
    dedup: DedupResult


@flow(name="end-to-end", log_prints=True)
def end_to_end(
    sample: list[str], lake: str | None = None, config: IngestConfig | None = None, dedup: DedupConfig | None = None
) -> EndToEndResult:
    """Ingest the sample corpus (WARC paths) into the lake, then deduplicate it."""
    result = EndToEndResult(ingest_flow(sample, lake, config), dedup_flow(lake, dedup))
    create_markdown_artifact(key="end-to-end-summary", markdown=run_markdown(result.ingest, result.dedup))
    return result
