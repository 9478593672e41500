"""Prefect flow for tokenizing lake datasets for training: text → `tokens/<tokenizer>/<dataset>/`.

The flow only orchestrates: the work is `model.tokens.tokenize_dataset`, one task per dataset after one
check of every input, its name and its quality gate (so a misspelt second dataset stops the run before the
first is tokenized). What happened is published as artifacts: a table per dataset and split, and a markdown summary.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.gates import check_gates, tokenize_inputs
from flows.progress import stage_bar
from model.tokens import TokenizeConfig, TokenizeResult, check_datasets, dataset_names, tokenize_dataset
from pipelines.lake import Lake


@task(name="check the tokenizer and datasets", cache_policy=NO_CACHE)
def check(lake_root: str, config: TokenizeConfig, datasets: list[str]) -> None:
    lake = Lake.at(lake_root)
    check_datasets(lake, config, datasets)
    check_gates(lake, tokenize_inputs(datasets))  # a dataset that failed its quality gate is not tokenized


@task(name="tokenize a dataset", task_run_name="tokenize {name}", cache_policy=NO_CACHE)
def tokenize_one(lake_root: str, config: TokenizeConfig, name: str) -> TokenizeResult:
    with stage_bar(f"tokenize {name}", None, "docs") as bar:
        result = tokenize_dataset(Lake.at(lake_root), config, name, progress=bar)
    m = result.manifest
    how = "up to date" if result.up_to_date else f"{m.seconds:.1f} s, {m.bytes / 1e6 / max(m.seconds, 1e-9):.2f} MB/s"
    get_run_logger().info(f"{name}: {m.documents} documents, {m.tokens} tokens ({m.dtype}) in {result.path} ({how})")
    return result


def summary_rows(results: list[TokenizeResult]) -> list[dict]:
    """One row per dataset and split: what the trainer will read."""
    rows = []
    for r in results:
        m = r.manifest
        for split, s in m.splits.items():
            rows.append(
                {
                    "dataset": r.dataset,
                    "split": split,
                    "documents": s.documents,
                    "tokens": s.tokens,
                    "text MB": round(s.bytes / 1e6, 3),
                    "bytes/token": round(s.bytes / s.tokens, 2) if s.tokens else None,
                    "shards": len(s.shards),
                    "run": m.run + (" (up to date)" if r.up_to_date else ""),
                }
            )
    return rows


def summary_markdown(results: list[TokenizeResult]) -> str:
    first = results[0].manifest
    lines = [
        f"# Tokens for training: `{first.tokenizer}`",
        "",
        f"vocabulary {first.vocab_size} ({first.dtype}), `<|endoftext|>` = {first.eot_id} after every document, "
        f"validation: {first.parameters['val_fraction']:.2%} of documents by id hash",
        "",
        "| dataset | source | split | documents | tokens | text MB | run |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        m = r.manifest
        for split, s in m.splits.items():
            state = "up to date" if r.up_to_date else f"resumed {r.resumed_shards} shards" if r.resumed_shards else "new"
            cells = [r.dataset, m.source_dataset, split, s.documents, s.tokens, f"{s.bytes / 1e6:.3f}", f"{m.run} ({state})"]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    skipped = [f"- {r.dataset}: {reason}: {n} rows" for r in results for reason, n in r.manifest.skipped.items()]
    if skipped:
        lines += ["", "Rows not tokenized:", *skipped]
    return "\n".join(lines) + "\n"


@task(name="publish the token summary", cache_policy=NO_CACHE)
def publish(results: list[TokenizeResult]) -> None:
    create_table_artifact(
        key="tokens-by-split",
        table=summary_rows(results),
        description=f"tokens/{results[0].manifest.tokenizer}: documents and tokens per dataset and split",
    )
    create_markdown_artifact(key="tokens-summary", markdown=summary_markdown(results))


@flow(name="tokenize", log_prints=True)
def tokenize_flow(config: TokenizeConfig, datasets: list[str] | None = None, lake: str | None = None) -> list[TokenizeResult]:
    """Tokenize lake datasets (default: `documents`) for training into `tokens/<tokenizer>/<dataset>/`."""
    root = Lake.at(lake).root
    names = dataset_names(datasets)
    check(root, config, names)
    results = [tokenize_one(root, config, name) for name in names]
    publish(results)
    return results
