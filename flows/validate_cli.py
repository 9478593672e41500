"""`lmforge validate [DATASET…]`: the quality gates, on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from flows.console import LakeOption, VerboseOption, fail, out, print_logs, rich_table, running, settings, user_errors


def print_quality(lake: Any, summaries: list[Any]) -> None:
    from quality.gate import docs_index, failure_lines

    rows = []
    for s in summaries:
        gate = "passed" if s.success else "warning" if s.warn_only else "FAILED"
        validated = f"{s.rows}" + (f" ({s.rows_validated} sampled)" if s.rows_validated != s.rows else "")
        rows.append([s.dataset, s.kind, validated, s.shards, s.expectations, len(s.failed), gate])
    out.print(rich_table("quality gates", ["dataset", "kind", "rows", "shards", "expectations", "failed", "gate"], rows))
    for s in summaries:
        for line in failure_lines(s):
            out.print(f"{s.dataset}: {line}", highlight=False, soft_wrap=True)
    if summaries:
        out.print(f"Data Docs: {docs_index(lake, summaries[0].dataset)} (a site per dataset)", highlight=False, soft_wrap=True)


def read_expectations(path: Path) -> list:
    try:
        specs = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        fail(f"cannot read expectations from {path}: {e}")
    if not isinstance(specs, list):
        fail(f"{path}: expected a JSON list of expectations")
    return specs


def validate(
    datasets: Annotated[
        Optional[list[str]],
        typer.Argument(help="catalog names (documents, wrap, …), dataset folders or tokens/<tokenizer>/<dataset>; default: all"),
    ] = None,
    warn_only: Annotated[bool, typer.Option("--warn-only", help="report failures without failing the gate")] = False,
    sample_rows: Annotated[
        int, typer.Option("--sample-rows", help="validate a seeded sample of this many rows of a bigger shard")
    ] = 100_000,
    languages: Annotated[
        Optional[list[str]], typer.Option("--language", help="a FLORES code the lake may hold (repeat); default: any")
    ] = None,
    expectations: Annotated[
        Optional[Path],
        typer.Option("--expectations", help='a JSON list of more: [{"kind": "documents", "type": "expect_…", "kwargs": {…}}]'),
    ] = None,
    lake: LakeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run each dataset's Great Expectations suite; results and Data Docs go to lake/quality/<dataset>/.
    Exits 1 when a gate fails: tokenize, train and release refuse that dataset until it passes."""
    from quality.config import ValidateConfig

    extra = read_expectations(expectations) if expectations else []
    languages = languages or None
    config = settings(ValidateConfig, sample_rows=sample_rows, languages=languages, expectations=extra, warn_only=warn_only)
    from flows.validate import validate_flow
    from pipelines.lake import Lake

    with user_errors(), running(lake, "validate", verbose) as logs:
        summaries = validate_flow(datasets, lake, config, enforce=False)
    print_quality(Lake.at(lake), summaries)
    print_logs(logs)
    if any(s.blocks for s in summaries):
        raise typer.Exit(1)
