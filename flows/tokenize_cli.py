"""`lmforge tokenize`: a lake dataset's text into token shards for training, and how the result is printed."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from flows.console import LakeOption, VerboseOption, err, out, print_logs, rich_table, running, settings, user_errors


def print_tokens(results: list[Any]) -> None:
    from flows.tokens import summary_rows

    first = results[0].manifest
    rows = [{k: v for k, v in row.items() if k != "run"} for row in summary_rows(results)]  # 80 columns
    title = (
        f"tokens/{first.tokenizer}: {first.vocab_size} ids ({first.dtype}), <|endoftext|> = {first.eot_id}, "
        f"val {first.parameters['val_fraction']:.2%} by id hash"
    )
    out.print(rich_table(title, list(rows[0]), [list(r.values()) for r in rows]))
    for r in results:
        m = r.manifest
        if r.up_to_date:
            note = "up to date: nothing to do"
        else:
            note = f"tokenized {m.bytes / 1e6:.1f} MB in {m.seconds:.1f} s"
            note += f", {r.resumed_shards} shards kept from a killed run" if r.resumed_shards else ""
            note += f", replaced run {r.replaced_run}" if r.replaced_run else ""
        out.print(f"{r.dataset}: run {m.run} in {r.path} ({note})", highlight=False, soft_wrap=True)
        for reason, n in m.skipped.items():
            err.print(f"{r.dataset}: skipped {n} rows: {reason}", highlight=False, soft_wrap=True)
        if not m.splits["val"].documents and m.parameters["val_fraction"] > 0:
            err.print(f"{r.dataset}: no document fell in the validation split; raise --val-fraction", highlight=False)


def tokenize(
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="a tokenizer in <lake>/tokenizers/ (e.g. sample-8k)")],
    datasets: Annotated[
        Optional[list[str]],
        typer.Option("--dataset", help="documents (= documents/dedup) or a lake dataset such as synthetic/wrap; repeat"),
    ] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="documents held out for validation, by id hash")] = 0.01,
    dtype: Annotated[str, typer.Option("--dtype", help="token id type: auto (uint16 when it fits) | uint16 | uint32")] = "auto",
    lake: LakeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Tokenize lake datasets for training: packed token ids + document offsets in tokens/<tokenizer>/<dataset>/."""
    from model.tokens import TokenizeConfig, check_datasets, dataset_names
    from pipelines.lake import Lake

    config = settings(TokenizeConfig, tokenizer=tokenizer, val_fraction=val_fraction, dtype=dtype)
    names = dataset_names(datasets)
    with user_errors():  # bad input is one line before Prefect starts (or is even imported), not after
        check_datasets(Lake.at(lake), config, names)
    from flows.tokens import tokenize_flow

    with user_errors(), running(lake, "tokenize", verbose) as logs:
        results = tokenize_flow(config, names, lake)
    print_tokens(results)
    print_logs(logs)
