"""The `release` flow: lake datasets → a Hub-ready folder (card + parquet), its card as a Prefect artifact,
then the upload unless it is a dry run. The work is `pipelines.release`.

The Hugging Face token is never a parameter here: Prefect records flow and task parameters, so the
upload task reads it from the environment or the login cache itself (`huggingface_hub.get_token`).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines.lake import Lake
from pipelines.release import BuiltRelease, UploadResult, build_release, check_datasets, check_release, upload_release


@task(name="build release", task_run_name="build {repo}", cache_policy=NO_CACHE)
def build(lake_root: str, datasets: list[str], repo: str, out: str | None, license: str) -> BuiltRelease:
    lake = Lake.at(lake_root)
    built = build_release(lake, check_datasets(lake, datasets), repo, out, license)
    rows = ", ".join(f"{c.name} {c.rows}" for c in built.configs if c.lang is None)
    get_run_logger().info(f"built {built.folder}: {len(built.configs)} configs ({rows} rows)")
    return built


@task(name="upload release", task_run_name="upload {repo}", cache_policy=NO_CACHE)
def upload(folder: str, repo: str, message: str, private: bool, revision: str | None) -> UploadResult:
    result = upload_release(folder, repo, message, private=private, revision=revision)
    tag = f", tagged {result.tag}" if result.tag else ""
    get_run_logger().info(f"uploaded {folder} to {repo}: commit {result.commit[:12]}{tag}")
    return result


@flow(name="release", log_prints=True)
def release_flow(
    datasets: list[str],
    repo: str,
    lake: str | None = None,
    out: str | None = None,
    dry_run: bool = True,
    private: bool = False,
    revision: str | None = None,
    license: str = "other",
) -> BuiltRelease:
    """Refuse what must not be released, build the folder, publish the card as an artifact, upload unless `dry_run`."""
    root = Lake.at(lake)
    check_release(root, datasets, repo, dry_run)
    built = build(root.root, datasets, repo, out, license)
    summary = ", ".join(f"{name}@{version}" for name, _, version in built.datasets)
    create_markdown_artifact(key="release-card", markdown=built.card, description=f"{repo}: {summary}")
    if not dry_run:
        built.uploaded = upload(built.folder, repo, built.commit_message(), private, revision)
    return built
