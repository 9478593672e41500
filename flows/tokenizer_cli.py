"""`lmforge tokenizer train|report`: the tokenizer commands, and how their results are printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from flows.console import LakeOption, VerboseOption, err, fail, out, print_logs, rich_table, running, settings, user_errors

tokenizer_app = typer.Typer(
    help="Train a BPE tokenizer on the lake; report per-language compression and cost.", no_args_is_help=True
)


def print_training(result: Any) -> None:
    from flows.tokenizer import sample_rows

    m = result.manifest
    done = " (already trained on this data: nothing to do)" if result.already_trained else ""
    rows = sample_rows(result)
    out.print(
        rich_table(
            f"tokenizer {result.name}{done}: {result.vocab_size} tokens, {m['sample']['bytes'] / 1e6:.1f} MB sampled "
            f"(alpha {m['parameters']['alpha']}), trained in {m['training_seconds']:.1f} s",
            list(rows[0]) if rows else ["language"],
            [list(r.values()) for r in rows],
        )
    )
    for lang, why in m["skipped_languages"].items():
        err.print(f"skipped {lang}: {why}", highlight=False)
    out.print(f"saved {result.path} (tokenizer.json, transformers files with a ChatML template, _manifest.json)", soft_wrap=True)


@tokenizer_app.command("train")
def tokenizer_train(
    name: Annotated[str, typer.Option("--name", help="folder under <lake>/tokenizers/")],
    vocab_size: Annotated[int, typer.Option("--vocab-size", help="tokens in all: 256 bytes + 4 specials + merges")],
    lake: LakeOption = None,
    languages: Annotated[
        Optional[list[str]], typer.Option("--languages", help="train on these languages only (repeat the option)")
    ] = None,
    alpha: Annotated[float, typer.Option(help="language sampling p ∝ n^alpha: 1 natural mix, 0 uniform")] = 0.3,
    min_frequency: Annotated[int, typer.Option(help="merge a pair only if seen this often")] = 2,
    heldout_fraction: Annotated[float, typer.Option(help="documents per language held out for the report")] = 0.05,
    max_sample_mb: Annotated[Optional[float], typer.Option(help="sample size in MB (default: all training text)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a tokenizer of this name trained on other data")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Train a byte-level BPE tokenizer by streaming the lake's documents (temperature-sampled per language)."""
    from flows.tokenizer import train_tokenizer_flow
    from tokenizer_training.train import TokenizerConfig

    config = settings(
        TokenizerConfig,
        name=name,
        vocab_size=vocab_size,
        languages=languages or None,
        alpha=alpha,
        min_frequency=min_frequency,
        heldout_fraction=heldout_fraction,
        max_sample_bytes=int(max_sample_mb * 1e6) if max_sample_mb else None,
    )
    with user_errors(), running(lake, "tokenizer-train", verbose) as logs:
        result = train_tokenizer_flow(config, lake, overwrite)
    print_training(result)
    print_logs(logs)


def print_report(result: Any) -> None:
    from tokenizer_training.summary import headline, premium_rows

    rows = premium_rows(result.report)
    if rows:
        title = "premium: tokens for the same text, relative to English"
        out.print(rich_table(title, list(rows[0]), [list(r.values()) for r in rows]))
    for line in headline(result.report):
        out.print(line, highlight=False, soft_wrap=True)
    out.print(f"report: {result.files.html} (also report.md, report.json and PNG charts in {result.files.out})", soft_wrap=True)


@tokenizer_app.command("report")
def tokenizer_report(
    tokenizers: Annotated[
        list[str],
        typer.Option(
            "--tokenizer", help="a *.tiktoken rank file, a tokenizer.json, a folder holding one, or a lake tokenizer name"
        ),
    ],
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="report folder (default: <lake>/reports/tokenizer)")] = None,
    lake: LakeOption = None,
    parallel: Annotated[
        Optional[Path], typer.Option("--parallel", help="folder of aligned <lang>.txt files (FLORES layout) for the premium")
    ] = None,
    price_per_1m_tokens: Annotated[float, typer.Option("--price-per-1m-tokens", help="USD per 1M tokens, for the cost")] = 1.0,
    heldout_mb: Annotated[float, typer.Option(help="lake held-out text per language, in MB")] = 1.0,
    verbose: VerboseOption = False,
) -> None:
    """Per-language compression (bytes/token, fertility, premium vs English) and cost: JSON, Markdown, HTML, PNG."""
    from flows.tokenizer import tokenizer_report_flow

    if price_per_1m_tokens < 0:
        fail("--price-per-1m-tokens must not be negative")
    if heldout_mb <= 0:
        fail("--heldout-mb must be positive")
    with user_errors(), running(lake, "tokenizer-report", verbose) as logs:
        result = tokenizer_report_flow(
            tokenizers,
            lake,
            str(parallel) if parallel else None,
            price_per_1m_tokens,
            str(out_dir) if out_dir else None,
            int(heldout_mb * 1e6),
        )
    print_report(result)
    print_logs(logs)
