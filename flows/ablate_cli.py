"""`lmforge ablate --mix NAME=SPEC …`: the same model on each data mix, compared on the same held-out text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from flows.console import LakeOption, VerboseOption, out, print_logs, rich_table, running, settings, user_errors
from flows.env import REFERENCE_DATA, aligned_text


def print_ablation(result: Any) -> None:
    from model.ablate_report import headline
    from model.report_page import cell

    # The terminal gets the numbers; the specs and the rest are in the report.
    baseline = result.rows[0]["arm"]
    columns = ["arm", "held-out bits/byte", "seed range", f"Δ vs {baseline}", "beyond seed spread", "diverged"]
    rows = [[cell(row[c]) for c in columns] for row in result.rows]
    out.print(rich_table("ablation", ["arm", "bits/byte", "seeds", "Δ", "beyond spread", "diverged"], rows))
    for line in headline(result.arms):
        out.print(line, highlight=False, soft_wrap=True)
    out.print(f"report: {result.out}/report.html", highlight=False, soft_wrap=True)


def default_tokenizer(lake: Any) -> str:
    from model.data import DataError
    from model.tokens import lake_tokenizers

    found = lake_tokenizers(lake)
    if len(found) != 1:
        raise DataError(f"give --tokenizer (the lake has {', '.join(found) or 'no tokenizer'})")
    return found[0]


def ablate(
    mixes: Annotated[
        list[str],
        typer.Option(
            "--mix", help="NAME=DATASET[:WEIGHT],…[@TOKENIZER][;lr=X], e.g. dedup=documents; repeat (the first is the baseline)"
        ),
    ],
    tokens: Annotated[int, typer.Option("--tokens", help="training tokens per run")] = 500_000,
    seeds: Annotated[int, typer.Option("--seeds", help="runs per arm, seeds 0…N-1")] = 2,
    preset: Annotated[str, typer.Option("--preset", help="model size: tiny | small | medium")] = "tiny",
    tokenizer: Annotated[
        Optional[str], typer.Option("--tokenizer", help="arms without @TOKENIZER (default: the lake's only one)")
    ] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="report folder: lake/reports/ablations/NAME")] = None,
    seq_len: Annotated[int, typer.Option("--seq-len")] = 256,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    lr: Annotated[float, typer.Option("--lr")] = 3e-3,
    allow_repeat: Annotated[bool, typer.Option("--allow-repeat", help="let the budget read a dataset more than once")] = False,
    parallel: Annotated[
        Optional[Path], typer.Option("--parallel", help=f"aligned text (default: {REFERENCE_DATA}/flores200-dev if there)")
    ] = None,
    max_lines: Annotated[int, typer.Option("--max-lines", help="aligned lines per language evaluated")] = 50,
    heldout_bytes: Annotated[int, typer.Option("--heldout-bytes", help="held-out text per language at most")] = 200_000,
    lake: LakeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Train the same model from the same seeds on each data mix for the same token budget; compare them in bits per
    byte on the same held-out text, with the seed spread."""
    from model.ablate import AblationConfig, parse_arm
    from model.evaluate import EvalConfig
    from pipelines.lake import Lake

    with user_errors():
        every_arm_names_one = all("@" in m.split(";")[0] for m in mixes)
        default = tokenizer or ("" if every_arm_names_one else default_tokenizer(Lake.at(lake)))
        arms = [parse_arm(m, default) for m in mixes]
    folder = aligned_text(parallel)
    evaluation = settings(EvalConfig, parallel=folder, max_lines=max_lines, heldout_bytes=heldout_bytes)
    config = settings(
        AblationConfig,
        name=name or "-vs-".join(a.name for a in arms),
        arms=arms,
        tokens=tokens,
        seeds=seeds,
        preset=preset,
        seq_len=seq_len,
        batch_size=batch_size,
        lr=lr,
        allow_repeat=allow_repeat,
        evaluation=evaluation,
    )
    from flows.ablate import ablate_flow

    with user_errors(), running(lake, "ablate", verbose) as logs:
        result = ablate_flow(config, lake)
    print_ablation(result)
    print_logs(logs)
