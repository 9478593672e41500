"""The `validate` flow: each dataset's GX suite (`quality.validate`), its results and Data Docs in
`quality/<dataset>/`, and a Prefect artifact; it fails when a gate does, after validating them all."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.progress import stage_bar
from pipelines.lake import Lake, listed_shards
from pipelines.lake.quality_record import QualitySummary
from quality.config import ValidateConfig
from quality.gate import GateFailed, docs_index, failure_lines, gate_message
from quality.validate import kind_of, lake_datasets, resolve, validate


@task(name="validate", task_run_name="validate {dataset}", cache_policy=NO_CACHE)
def validate_one(lake_root: str, dataset: str, config: ValidateConfig) -> QualitySummary:
    lake = Lake.at(lake_root)
    shards = len(listed_shards(lake, dataset)) if kind_of(dataset) != "tokens" else None
    with stage_bar(f"validate {dataset}", shards, "shards") as bar:
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            bar(done)

        summary = validate(lake, dataset, config, progress)
    logger = get_run_logger()
    state = "passed" if summary.success else "failed (warning only)" if summary.warn_only else "FAILED"
    logger.info(f"{dataset}: {summary.expectations - len(summary.failed)}/{summary.expectations} expectations held: {state}")
    for line in failure_lines(summary):
        logger.warning(f"{dataset}: {line}")
    return summary


def quality_markdown(lake: Lake, summaries: list[QualitySummary]) -> str:
    lines = [
        "# Quality gates",
        "",
        "| dataset | kind | rows (validated) | shards | expectations | failed | gate | Data Docs |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for s in summaries:
        gate = "passed" if s.success else "warning" if s.warn_only else "**failed**"
        rows = f"{s.rows}" + (f" ({s.rows_validated})" if s.rows_validated != s.rows else "")
        docs = docs_index(lake, s.dataset)
        lines.append(f"| {s.dataset} | {s.kind} | {rows} | {s.shards} | {s.expectations} | {len(s.failed)} | {gate} | {docs} |")
    for s in summaries:
        if s.failed:
            lines += ["", f"## {s.dataset}", "", *(f"- {line}" for line in failure_lines(s))]
    return "\n".join(lines) + "\n"


def validation_targets(lake: Lake, datasets: list[str] | None) -> list[str]:
    """The datasets asked for (checked before any runs), or every dataset of the lake."""
    return [resolve(lake, d) for d in datasets] if datasets else lake_datasets(lake)


@flow(name="validate", log_prints=True)
def validate_flow(
    datasets: list[str] | None = None, lake: str | None = None, config: ValidateConfig | None = None, enforce: bool = True
) -> list[QualitySummary]:
    """Validate the datasets (default: all in the lake). With `enforce`, a failed gate fails the run
    (GateFailed), so the deployments triggered by its completion do not start."""
    config = config or ValidateConfig()
    root = Lake.at(lake)
    summaries = [validate_one(root.root, d, config) for d in validation_targets(root, datasets)]
    failed = [s for s in summaries if s.blocks]
    description = f"{len(summaries) - len(failed)} of {len(summaries)} datasets passed their gates"
    create_markdown_artifact(key="quality-gates", markdown=quality_markdown(root, summaries), description=description)
    if failed and enforce:
        raise GateFailed("\n".join(gate_message(root, s) for s in failed))
    return summaries
