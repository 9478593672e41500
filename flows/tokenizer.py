"""Prefect flows for tokenizers: train a BPE on the lake, and report per-language compression and cost.

The flows only orchestrate: training is `tokenizer_training.train`, measuring is
`tokenizer_training.compare` and `evaluate`, rendering is `tokenizer_training.report`. What
happened is published as artifacts: the training sample per language, and the report (markdown,
the premium table, a link to the self-contained HTML).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.progress import stage_bar
from pipelines.lake import REPORTS, Lake
from tokenizer_training.compare import assemble, gather_texts, load_all, measure
from tokenizer_training.report import ReportFiles, markdown_report, write_report
from tokenizer_training.summary import headline, premium_rows
from tokenizer_training.train import TokenizerConfig, TrainResult, train_tokenizer

TOKENIZER_REPORT = f"{REPORTS}/tokenizer"


class _ProgressLog:
    """Shows the MB streamed to the trainer on the stage's bar, and logs them every 10%.

    The trainer pulls its texts (and so calls this) from a thread of its own, where Prefect's run
    context is not set: the run's logger is taken in the task, when this is made.
    """

    def __init__(self, bar: Callable[..., None]) -> None:
        self.bar = bar
        self.logger = get_run_logger()
        self.next = 0.1

    def __call__(self, done: int, total: int) -> None:
        self.bar(done / 1e6, total / 1e6)
        if total and done / total >= self.next:
            self.logger.info(f"streamed {done / 1e6:.2f} of {total / 1e6:.2f} MB to the BPE trainer")
            self.next = int(done / total * 10 + 1) / 10


@task(name="train the BPE tokenizer", cache_policy=NO_CACHE)
def train(lake_root: str, config: TokenizerConfig, overwrite: bool) -> TrainResult:
    with stage_bar(f"tokenizer {config.name}", None, "MB") as bar:
        return train_tokenizer(Lake.at(lake_root), config, overwrite, progress=_ProgressLog(bar))


def sample_rows(result: TrainResult) -> list[dict]:
    return [
        {
            "language": lang,
            "documents": s["documents"],
            "held out": s["heldout_documents"],
            "weight": round(s["weight"], 4),
            "sampled MB": round(s["sampled_bytes"] / 1e6, 3),
            "repeats": s["repeats"],
        }
        for lang, s in sorted(result.languages.items(), key=lambda kv: -kv[1]["sampled_bytes"])
    ]


@task(name="publish the training sample", cache_policy=NO_CACHE)
def publish_training(result: TrainResult) -> None:
    m = result.manifest
    create_table_artifact(
        key="tokenizer-training-sample",
        table=sample_rows(result),
        description=(
            f"tokenizer {result.name}: {result.vocab_size} tokens, alpha {m['parameters']['alpha']}, "
            f"{m['sample']['bytes'] / 1e6:.1f} MB in {m['training_seconds']:.1f} s"
        ),
    )


@flow(name="tokenizer-train", log_prints=True)
def train_tokenizer_flow(config: TokenizerConfig, lake: str | None = None, overwrite: bool = False) -> TrainResult:
    """Train a byte-level BPE on the lake's documents into `tokenizers/<name>/`."""
    result = train(Lake.at(lake).root, config, overwrite)
    publish_training(result)
    m = result.manifest
    get_run_logger().info(
        f"tokenizer {result.name} at {result.path}"
        + (" (already trained on this data)" if result.already_trained else "")
        + f": {result.vocab_size} tokens from {m['sample']['bytes'] / 1e6:.1f} MB in {len(result.languages)} languages"
    )
    return result


@dataclass
class ReportResult:
    files: ReportFiles
    report: dict


@task(name="measure tokenizers", cache_policy=NO_CACHE)
def build_report(tokenizers: list[str], lake_root: str, parallel: str | None, price: float, heldout_bytes: int) -> dict:
    lake = Lake.at(lake_root)
    loaded = load_all(tokenizers, lake)
    texts = gather_texts(loaded, lake, parallel, heldout_bytes)
    logger = get_run_logger()
    entries = {}
    with stage_bar("tokenizer report", len(loaded), "tokenizers") as bar:
        for tok in loaded:
            entries[tok.name] = measure(tok, texts, price)
            logger.info(f"{tok.name}: measured in {entries[tok.name]['encode_seconds']:.2f} s")
            bar(len(entries))
    return assemble(entries, texts, price)


@task(name="write the report", cache_policy=NO_CACHE)
def write(report: dict, out: str) -> ReportFiles:
    return write_report(report, out)


@task(name="publish the report", cache_policy=NO_CACHE)
def publish_report(files: ReportFiles, report: dict) -> None:
    create_markdown_artifact(key="tokenizer-report", markdown=markdown_report(report), description=" ".join(headline(report)))
    rows = premium_rows(report)
    if rows:
        create_table_artifact(key="tokenizer-premium", table=rows, description="tokens for the same text, relative to English")
    create_link_artifact(key="tokenizer-report-html", link=Path(files.html).resolve().as_uri(), link_text="report.html")


@flow(name="tokenizer-report", log_prints=True)
def tokenizer_report_flow(
    tokenizers: list[str],
    lake: str | None = None,
    parallel: str | None = None,
    price_per_1m_tokens: float = 1.0,
    out: str | None = None,
    heldout_bytes: int = 1_000_000,
) -> ReportResult:
    """Per-language compression and cost of each tokenizer: report.json, .md, .html and PNG charts."""
    root = Lake.at(lake)
    report = build_report(tokenizers, root.root, parallel, price_per_1m_tokens, heldout_bytes)
    files = write(report, out or (root.path(TOKENIZER_REPORT) if root.is_local else TOKENIZER_REPORT))
    publish_report(files, report)
    for line in headline(report):
        get_run_logger().info(line)
    return ReportResult(files, report)
