"""`lmforge`: the command line. Command names and `--lake` are a contract other tools rely on."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from flows.ablate_cli import ablate, print_ablation
from flows.console import LakeOption, VerboseOption, err, fail, out, print_logs, rich_table, running, settings, user_errors
from flows.env import REFERENCE_DATA, quiet_offline_defaults, reference_inputs
from flows.eval_cli import evaluate
from flows.lake_cli import lake_app
from flows.release_cli import release
from flows.server_cli import server_app
from flows.synth_cli import print_synthesis, synth_app
from flows.tokenize_cli import tokenize
from flows.tokenizer_cli import print_report, print_training, tokenizer_app
from flows.train_cli import print_sample_training, train_app
from flows.validate_cli import print_quality, validate

app = typer.Typer(
    help="lmforge: from raw web text to a clean, deduplicated, queryable lake.",
    no_args_is_help=True,
    add_completion=False,
)

ExecutorOption = Annotated[
    str, typer.Option("--executor", help="where datatrove runs the tasks: local | ray | slurm (see the README)")
]
RayAddressOption = Annotated[
    Optional[str], typer.Option("--ray-address", help="Ray cluster (host:port, ray://…, auto); default: a local one")
]
SlurmPartitionOption = Annotated[Optional[str], typer.Option("--slurm-partition", help="Slurm partition (--executor slurm)")]
ExtractorOption = Annotated[str, typer.Option("--extractor", help="HTML extraction: resiliparse (fast) | trafilatura")]
DEFAULT_SAMPLE = "data/sample/debian-docs.warc.gz"
SAMPLE_SHARDS = 4  # several WARCs, so ingest keeps both cores of a small machine busy


def shard_path(dest: Path, index: int, shards: int) -> Path:
    """`x.warc.gz` itself for one shard, else `x-0.warc.gz`, `x-1.warc.gz`, …"""
    if shards == 1:
        return dest
    stem = dest.name.removesuffix(".warc.gz")
    return dest.with_name(f"{stem}-{index}.warc.gz")


def pack_sample(folders: list[Path], dest: Path, max_pages_per_folder: int | None, shards: int = 1) -> list[Any]:
    """Pack folders of HTML into `shards` WARCs (folders dealt round-robin, so each holds many languages)."""
    from flows.progress import stage_bar
    from pipelines.ingest.sample import DEFAULT_MAX_PAGES_PER_FOLDER, SampleSourceMissing, default_sources, pack_html

    try:
        if not folders:  # the embedded default: a representative cut of Debian's documentation
            folders = default_sources()
            max_pages_per_folder = max_pages_per_folder or DEFAULT_MAX_PAGES_PER_FOLDER
        shards = max(1, min(shards, len(folders)))
        reports = []
        for i in range(shards):
            with stage_bar(f"pack HTML {i + 1}/{shards}", None, "pages") as update:
                warc = shard_path(dest, i, shards)
                reports.append(pack_html(folders[i::shards], warc, max_pages_per_folder=max_pages_per_folder, progress=update))
        return reports
    except SampleSourceMissing as e:
        fail(str(e))


@app.command()
def sample(
    folders: Annotated[Optional[list[Path]], typer.Argument(help="folders of HTML (default: Debian's documentation)")] = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="the WARC to write")] = Path(DEFAULT_SAMPLE),
    max_pages_per_folder: Annotated[Optional[int], typer.Option(help="cap per language folder")] = None,
    shards: Annotated[int, typer.Option(help="write this many WARCs (NAME-0.warc.gz, …) so ingest can use several cores")] = 1,
) -> None:
    """Pack folders of HTML pages into gzipped WARCs (the sample corpus)."""
    from flows.progress import live_progress

    with live_progress(err):
        reports = pack_sample(list(folders or []), output, max_pages_per_folder, shards)
    for report in reports:
        out.print(
            f"wrote {report.warc_path}: {report.pages} pages, {report.bytes / 1e6:.1f} MB, {report.skipped} skipped",
            highlight=False,
            soft_wrap=True,
        )


def executor_config(kind: str, ray_address: str | None, slurm_partition: str | None, verbose: bool) -> Any:
    from pydantic import ValidationError

    from flows.logs import console_level
    from pipelines.lake.executors import ExecutorConfig

    try:
        return ExecutorConfig(
            kind=kind, ray_address=ray_address, partition=slurm_partition, console_log_level=console_level(verbose)
        )
    except ValidationError:
        fail(f"unknown --executor {kind!r}: use local, ray or slurm")


def ingest_config(workers: int | None, **values: Any) -> Any:
    from pipelines.ingest.run import IngestConfig

    return settings(IngestConfig, **values, **({"workers": workers} if workers else {}))


def dedup_config(workers: int | None, **values: Any) -> Any:
    from pipelines.dedup.run import DedupConfig

    return settings(DedupConfig, **values, **({"workers": workers} if workers else {}))


def check_inputs(inputs: list[str]) -> None:
    """Wrong paths are one clear line before Prefect starts, not after."""
    from pipelines.ingest.run import ingest_inputs

    with user_errors():
        ingest_inputs(inputs)


def print_ingest(result: Any) -> None:
    out.print(
        rich_table(
            f"ingest run {result.run}: {result.documents} kept, {result.rejected} set aside",
            ["language", "documents"],
            list(result.by_language.items()),
        )
    )
    if result.by_reason:
        out.print(rich_table("set aside, by reason", ["reason", "documents"], list(result.by_reason.items())))


def report_unusable(result: Any) -> None:
    """One line per input that could not be used at all, then a non-zero exit."""
    for path, why in result.unusable:
        err.print(f"[bold red]error:[/] {path}: {why}", highlight=False, soft_wrap=True)
    if result.unusable:
        raise typer.Exit(1)


@app.command()
def ingest(
    inputs: Annotated[list[str], typer.Argument(help="WARC/WET, JSONL, parquet, HTML files or folders; HF dataset folders")],
    lake: LakeOption = None,
    workers: Annotated[Optional[int], typer.Option(help="processes (default: up to 2)")] = None,
    language_threshold: Annotated[float, typer.Option(help="minimum lid.176 score to keep a document")] = 0.65,
    extractor: ExtractorOption = "resiliparse",
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    slurm_partition: SlurmPartitionOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Extract, identify language, filter, redact PII and write documents/clean."""
    from flows.ingest import ingest_flow

    config = ingest_config(
        workers,
        language_threshold=language_threshold,
        extractor=extractor,
        executor=executor_config(executor, ray_address, slurm_partition, verbose),
    )
    check_inputs(inputs)
    with user_errors(), running(lake, "ingest", verbose) as logs:
        result = ingest_flow(inputs, lake, config)
    print_ingest(result)
    print_logs(logs)
    report_unusable(result)


def print_dedup(result: Any) -> None:
    from flows.summaries import dedup_language_rows

    rows = dedup_language_rows(result)
    done = " (already done: the lake has not changed)" if result.skipped else ""
    out.print(
        rich_table(
            f"dedup run {result.run}{done}: {result.documents} in, {result.kept} kept, {result.duplicates} duplicates removed",
            list(rows[0]) if rows else ["language"],
            [list(r.values()) for r in rows],
        )
    )


@app.command()
def dedup(
    lake: LakeOption = None,
    workers: Annotated[Optional[int], typer.Option(help="processes (default: up to 2)")] = None,
    exact: Annotated[bool, typer.Option(help="remove exact copies (normalised text)")] = True,
    url: Annotated[bool, typer.Option(help="keep one document per normalised URL, the longest")] = True,
    minhash: Annotated[bool, typer.Option(help="remove near-duplicates (MinHash LSH)")] = True,
    ngrams: Annotated[int, typer.Option(help="words per shingle")] = 5,
    bands: Annotated[int, typer.Option(help="LSH bands; threshold ≈ (1/bands)^(1/rows)")] = 14,
    rows: Annotated[int, typer.Option(help="hashes per band")] = 8,
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    slurm_partition: SlurmPartitionOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Remove exact, same-URL and near duplicates: documents/clean → documents/dedup (the `documents` view)."""
    from flows.dedup import dedup_flow

    config = dedup_config(
        workers,
        exact=exact,
        url=url,
        minhash=minhash,
        n_grams=ngrams,
        bands=bands,
        rows=rows,
        executor=executor_config(executor, ray_address, slurm_partition, verbose),
    )
    with user_errors(), running(lake, "dedup", verbose) as logs:
        result = dedup_flow(lake, config)
    print_dedup(result)
    print_logs(logs)


app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(server_app, name="server")
app.add_typer(lake_app, name="lake")
app.add_typer(synth_app, name="synth")
app.add_typer(train_app, name="train")
app.command()(tokenize)
app.command("eval")(evaluate)
app.command()(release)
app.command()(ablate)
app.command()(validate)


def render(columns: list[str], rows: list[tuple], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(columns, r)) for r in rows], default=str, ensure_ascii=False, indent=1)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="one SQL statement over documents_clean, documents, rejected, manifests")],
    lake: LakeOption = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
) -> None:
    """Ad hoc SQL over the lake (DuckDB, read-only)."""
    from pipelines.lake import Lake
    from pipelines.lake.catalog import CatalogError
    from pipelines.lake.catalog import query as run_query

    if fmt not in ("table", "csv", "json"):
        fail(f"unknown --format {fmt!r}: use table, csv or json")
    try:
        result = run_query(Lake.at(lake), sql)
    except CatalogError as e:
        fail(str(e))
    if fmt == "table":
        out.print(rich_table("", result.columns, result.rows))
    else:
        sys.stdout.write(render(result.columns, result.rows, fmt))


@app.command()
def stats(lake: LakeOption = None) -> None:
    """Documents, characters and languages in the lake, and why documents were set aside."""
    from pipelines.lake import Lake
    from pipelines.lake.catalog import stats as lake_stats

    for title, result in lake_stats(Lake.at(lake)).items():
        out.print(rich_table(title, result.columns, result.rows))


@app.command()
def run(
    lake: LakeOption = None,
    sample_path: Annotated[Path, typer.Option("--sample", help="where the sample WARCs are built")] = Path(DEFAULT_SAMPLE),
    workers: Annotated[Optional[int], typer.Option(help="processes (default: up to 2)")] = None,
    pages_per_folder: Annotated[Optional[int], typer.Option(help="sample size: pages per language folder (default 48)")] = None,
    extractor: ExtractorOption = "resiliparse",
    executor: ExecutorOption = "local",
    ray_address: RayAddressOption = None,
    reference_data: Annotated[
        Path,
        typer.Option(help="folder with tokenizers/{r50k,o200k}_base.tiktoken and flores200-dev/ to compare against, if present"),
    ] = Path(REFERENCE_DATA),
    synthetic: Annotated[bool, typer.Option(help="generate a little synthetic data with the embedded vLLM server")] = True,
    train: Annotated[
        bool,
        typer.Option(help="tokenize the lake, pretrain a tiny model, SFT it, train a reward model; the clean-vs-dedup ablation"),
    ] = True,
    verbose: VerboseOption = False,
) -> None:
    """The main job on the embedded default: build the sample corpus, ingest, deduplicate, train a tokenizer, report,
    generate synthetic data, train and export the tiny models."""
    from flows.end_to_end import end_to_end
    from flows.summaries import run_language_rows
    from pipelines.lake import Lake

    where = executor_config(executor, ray_address, None, verbose)
    config = ingest_config(workers, extractor=extractor, executor=where)
    dedup = dedup_config(workers, executor=where)
    references, parallel = reference_inputs(reference_data)
    with user_errors(), running(lake, "run", verbose) as logs:
        reports = pack_sample([], sample_path, pages_per_folder, shards=SAMPLE_SHARDS)
        sample = [r.warc_path for r in reports]
        result = end_to_end(
            sample, lake, config, dedup, references=references, parallel=parallel, synthetic=synthetic, training=train
        )
    pages, size = sum(r.pages for r in reports), sum(r.bytes for r in reports)
    names = f"{sample[0]} … {Path(sample[-1]).name}" if len(sample) > 1 else sample[0]
    summary = f"sample corpus: {pages} pages, {size / 1e6:.1f} MB in {len(sample)} WARCs ({names})"
    out.print(summary, highlight=False, soft_wrap=True)
    if not parallel:
        note = f"no aligned text at {reference_data}/flores200-dev: the report measured the lake's held-out documents"
        out.print(note, soft_wrap=True)
    ingested, deduped = result.ingest, result.dedup
    out.print(
        f"documents in: {ingested.documents + ingested.rejected} · set aside by ingest: {ingested.rejected} · "
        f"duplicates removed: {deduped.duplicates} · kept: {deduped.kept}",
        soft_wrap=True,
    )
    rows = run_language_rows(deduped)
    out.print(rich_table("by language", list(rows[0]) if rows else ["language"], [list(r.values()) for r in rows]))
    removed = [("ingest", k, v) for k, v in ingested.by_reason.items()] + [("dedup", k, v) for k, v in deduped.removed.items()]
    out.print(rich_table("removed, by reason", ["stage", "reason", "documents"], removed))
    print_training(result.tokenizer)
    print_report(result.report)
    if result.synthetic is not None:
        print_synthesis(result.synthetic)
    if result.training is not None:
        print_sample_training(result.training)
    if result.ablation is not None:
        print_ablation(result.ablation)
    print_quality(Lake.at(deduped.lake), result.quality)
    out.print(f'lake: {deduped.lake} · try: lmforge query "SELECT lang, count(*) FROM documents GROUP BY lang"', soft_wrap=True)
    print_logs(logs)
    report_unusable(ingested)


def main() -> None:
    quiet_offline_defaults()
    app()
