"""The whole path on the embedded default, as one Prefect flow: `lmforge run`.

Today: ingest the sample corpus. Later stages (dedup, tokenizer, synthetic data, training) join here.
"""

from __future__ import annotations

from prefect import flow

from flows.ingest import ingest_flow
from pipelines.ingest import IngestConfig, IngestResult


@flow(name="end-to-end", log_prints=True)
def end_to_end(sample: list[str], lake: str | None = None, config: IngestConfig | None = None) -> IngestResult:
    """Ingest the sample corpus (WARC paths) into the lake."""
    return ingest_flow(sample, lake, config)
