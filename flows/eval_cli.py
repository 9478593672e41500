"""`lmforge eval CHECKPOINT…`: bits per byte per language for runs of ours or Hugging Face Llama folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from flows.console import LakeOption, VerboseOption, out, print_logs, rich_table, running, settings, user_errors
from flows.env import REFERENCE_DATA, aligned_text


def print_evaluation(result: Any) -> None:
    from model.eval_report import headline, language_table, summary_table
    from model.report_page import cell

    tables = [("evaluation", summary_table(result.models)), ("aligned text", language_table(result.models, "aligned"))]
    for title, table in tables:
        if table is not None:
            out.print(rich_table(title, table.columns, [[cell(v) for v in row] for row in table.rows]))
    for line in headline(result.models):
        out.print(line, highlight=False, soft_wrap=True)
    out.print(f"report: {result.out}/report.html", highlight=False, soft_wrap=True)


def evaluate(
    checkpoints: Annotated[
        list[str], typer.Argument(help="runs in lake/checkpoints (newest step), step_N folders, or Hugging Face Llama folders")
    ],
    parallel: Annotated[
        Optional[Path],
        typer.Option("--parallel", help=f"aligned <lang>.txt files (default: {REFERENCE_DATA}/flores200-dev if there)"),
    ] = None,
    languages: Annotated[
        Optional[list[str]], typer.Option("--language", help="only this language of the aligned text; repeat")
    ] = None,
    max_lines: Annotated[Optional[int], typer.Option("--max-lines", help="the first N lines of each aligned file")] = None,
    heldout: Annotated[
        str, typer.Option("--heldout", help="lake dataset whose held-out documents are measured ('' for none)")
    ] = "documents",
    val_fraction: Annotated[
        Optional[float], typer.Option("--val-fraction", help="default: the one its token shards used")
    ] = None,
    heldout_bytes: Annotated[int, typer.Option("--heldout-bytes", help="held-out text per language at most")] = 200_000,
    window: Annotated[Optional[int], typer.Option("--window", help="context tokens at most (default: the model's)")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="report folder: lake/reports/eval/NAME")] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")] = "auto",
    lake: LakeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Evaluate checkpoints: bits per byte per language on aligned text and held-out documents, SFT chat loss,
    reward-model pair accuracy; a report with the tokenizer premium beside each language's bits per byte."""
    from model.evaluate import EvalConfig

    folder = aligned_text(parallel)
    config = settings(
        EvalConfig,
        parallel=folder,
        languages=languages or None,
        max_lines=max_lines,
        heldout=heldout or None,
        val_fraction=val_fraction,
        heldout_bytes=heldout_bytes,
        window=window,
        device=device,
    )
    from flows.evaluate import evaluate_flow

    with user_errors(), running(lake, "eval", verbose) as logs:
        result = evaluate_flow(checkpoints, lake, config, name)
    print_evaluation(result)
    print_logs(logs)
