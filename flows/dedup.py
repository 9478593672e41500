"""Prefect flow for dedup: `documents/clean` → `documents/dedup` (the catalog's `documents` view).

The flow only orchestrates: the work is in `pipelines.dedup.run`, and what happened is published as
artifacts (the per-language table, a markdown summary with datatrove's per-stage stats).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.progress import task_bar
from flows.summaries import dedup_language_rows, dedup_markdown
from pipelines.dedup.run import DedupConfig, DedupResult, plan_run, run_dedup, stage_tasks
from pipelines.lake import Lake


@task(name="run the datatrove dedup stages", cache_policy=NO_CACHE)
def dedup_lake(lake_root: str, config: DedupConfig) -> DedupResult:
    lake = Lake.at(lake_root)
    run, tasks, _ = plan_run(lake, config)
    stages = stage_tasks(lake, run, tasks, config)
    with task_bar("dedup", list(stages), sum(stages.values())):
        return run_dedup(lake, config)


@task(name="publish dedup report", cache_policy=NO_CACHE)
def publish(result: DedupResult) -> None:
    create_table_artifact(
        key="dedup-by-language",
        table=dedup_language_rows(result),
        description=f"documents in, kept and removed per language, dedup run {result.run}",
    )
    create_markdown_artifact(key="dedup-summary", markdown=dedup_markdown(result))


@flow(name="dedup", log_prints=True)
def dedup_flow(lake: str | None = None, config: DedupConfig | None = None) -> DedupResult:
    """Remove exact, same-URL and near duplicates from the lake's clean documents."""
    result = dedup_lake(Lake.at(lake).root, config or DedupConfig())
    publish(result)
    removed = ", ".join(f"{why}: {n}" for why, n in result.removed.items()) or "none"
    get_run_logger().info(
        f"dedup run {result.run}{' (already done)' if result.skipped else ''}: "
        f"{result.documents} in, {result.kept} kept; removed {removed}"
    )
    return result
