"""The whole path on the embedded default, as one Prefect flow: `lmforge run`.

Today: ingest the sample corpus, deduplicate the lake, train a small BPE tokenizer on it and
report its per-language compression beside the reference tokenizers given. Later stages
(synthetic data, training) join here.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.dedup import dedup_flow
from flows.ingest import ingest_flow
from flows.summaries import run_markdown
from flows.tokenizer import ReportResult, tokenizer_report_flow, train_tokenizer_flow
from pipelines.dedup.run import DedupConfig, DedupResult
from pipelines.ingest.run import IngestConfig, IngestResult
from tokenizer_training.train import TokenizerConfig, TrainResult

SAMPLE_TOKENIZER = TokenizerConfig(name="sample-8k", vocab_size=8192)


@dataclass
class EndToEndResult:
    ingest: IngestResult
    dedup: DedupResult
    tokenizer: TrainResult
    report: ReportResult


@flow(name="end-to-end", log_prints=True)
def end_to_end(
    sample: list[str],
    lake: str | None = None,
    config: IngestConfig | None = None,
    dedup: DedupConfig | None = None,
    tokenizer: TokenizerConfig = SAMPLE_TOKENIZER,
    references: list[str] | None = None,
    parallel: str | None = None,
) -> EndToEndResult:
    """Ingest the sample corpus (WARC paths), deduplicate it, train a tokenizer on it and report on it.

    The tokenizer is the run's own: retrained (replaced) when the lake changed. `references`
    (tokenizer files) are measured beside it; `parallel` (aligned <lang>.txt files) gives the
    premium against English, else the lake's held-out documents are the text measured.
    """
    ingested = ingest_flow(sample, lake, config)
    deduped = dedup_flow(lake, dedup)
    trained = train_tokenizer_flow(tokenizer, lake, overwrite=True)
    report = tokenizer_report_flow([trained.path, *(references or [])], lake, parallel)
    create_markdown_artifact(key="end-to-end-summary", markdown=run_markdown(ingested, deduped))
    return EndToEndResult(ingested, deduped, trained, report)
