"""Prefect flows for ingest: files → `documents/clean`, and the inbox flow a schedule runs.

The flows only orchestrate: tasks pass paths and small results, the work is in `pipelines.ingest.run`,
and what happened is published as artifacts (datatrove's per-step stats, a markdown summary).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.progress import task_bar
from flows.summaries import ingest_markdown, step_rows
from pipelines.ingest.inputs import InputItem, resolve_inputs
from pipelines.ingest.run import IngestConfig, IngestResult, ingest_inputs, plan_run, run_ingest, run_logging_dir
from pipelines.lake import Lake, ingested_inputs


@task(name="resolve inputs", cache_policy=NO_CACHE)
def resolve(paths: list[str]) -> list[InputItem]:
    return ingest_inputs(paths)


@task(name="run the datatrove ingest pipeline", cache_policy=NO_CACHE)
def ingest_items(items: list[InputItem], lake_root: str, config: IngestConfig) -> IngestResult:
    lake = Lake.at(lake_root)
    run, tasks, _ = plan_run(items, config)  # inputs are hashed once per process: run_ingest's plan is free
    with task_bar("ingest", [run_logging_dir(lake, run)], tasks):
        return run_ingest(items, lake, config)


@task(name="publish ingest report", cache_policy=NO_CACHE)
def publish(result: IngestResult) -> None:
    create_table_artifact(
        key="ingest-step-stats",
        table=step_rows(result.step_stats),
        description=f"datatrove per-step stats of ingest run {result.run}",
    )
    create_markdown_artifact(key="ingest-summary", markdown=ingest_markdown(result))


@flow(name="ingest", log_prints=True)
def ingest_flow(inputs: list[str], lake: str | None = None, config: IngestConfig | None = None) -> IngestResult:
    """Ingest files or folders (WARC/WET, JSONL, parquet, HF dataset folders, HTML) into the lake."""
    root = Lake.at(lake).root
    items = resolve(inputs)
    result = ingest_items(items, root, config or IngestConfig())
    publish(result)
    get_run_logger().info(
        f"run {result.run}: {result.documents} documents kept, {result.rejected} set aside, "
        f"{len(result.unusable)} unusable inputs"
    )
    return result


@flow(name="ingest-inbox", log_prints=True)
def ingest_inbox_flow(inbox: str, lake: str | None = None, config: IngestConfig | None = None) -> IngestResult | None:
    """Ingest whatever files in `inbox` no earlier run took in (the scheduled deployment)."""
    root = Lake.at(lake)
    seen = ingested_inputs(root)
    new = [i for i in resolve_inputs([inbox]) if (i.path, i.size, i.mtime_ns) not in seen]
    logger = get_run_logger()
    if not new:
        logger.info(f"inbox {inbox}: nothing new")
        return None
    logger.info(f"inbox {inbox}: {len(new)} new inputs")
    result = ingest_items(new, root.root, config or IngestConfig())
    publish(result)
    return result
