"""Prefect flows for the trainer: tokenized datasets in, checkpoints and Hugging Face exports out.

The flow only orchestrates: the loop is `model.train`. Each run is a task with the CLI's progress
bar (loss, tokens/s and MFU beside it) and a log line every tenth of the run; what it produced is
published as artifacts: the loss curve (PNG, linked) and a table of the final metrics.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.gates import check_gates, train_inputs
from flows.progress import stage_bar
from model.train import TrainConfig, TrainResult, train
from pipelines.lake import Lake


def progress_note(entry: dict[str, Any]) -> str:
    mfu = f" · MFU {entry['mfu']:.1%}" if entry.get("mfu") is not None else ""
    return f"loss {entry['loss']:.3f} · {entry['tokens_per_s'] / 1e3:.1f}k tok/s{mfu}"


def log_line(entry: dict[str, Any]) -> str:
    if entry["kind"] == "eval":
        return f"step {entry['step']} held out: " + ", ".join(
            f"{k} {v:.4f}" for k, v in entry.items() if k not in {"step", "kind"}
        )
    return f"step {entry['step']}: {progress_note(entry)}, lr {entry['lr']:.2e}, grad norm {entry['grad_norm']:.3f}"


@task(name="train", task_run_name="{config.objective} {config.run}", cache_policy=NO_CACHE)
def train_run(config: TrainConfig, lake_root: str, force: bool, restart: bool = False) -> TrainResult:
    logger = get_run_logger()
    check_gates(Lake.at(lake_root), train_inputs(Lake.at(lake_root), config))  # no training on data that failed its gate
    every = max(config.steps // 10, 1)
    with stage_bar(f"{config.objective} {config.run}", config.steps, "steps") as bar:

        def on_log(entry: dict[str, Any]) -> None:
            if entry["kind"] == "train":
                bar(entry["step"], note=progress_note(entry))
            if entry["kind"] == "eval" or entry["step"] % every == 0:
                logger.info(log_line(entry))

        return train(config, Lake.at(lake_root), force=force, on_log=on_log, restart=restart)


def metric_rows(result: TrainResult) -> list[dict[str, Any]]:
    rows = [{"metric": f"train {k}", "value": round(v, 4)} for k, v in result.final.items()]
    rows += [{"metric": f"held-out {k}", "value": round(v, 4)} for k, v in result.evaluation.items()]
    rows.append({"metric": "tokens/s", "value": round(result.tokens_per_second)})
    if result.mfu is not None:
        rows.append({"metric": f"MFU ({result.device})", "value": f"{result.mfu:.2%}"})
    return rows


@flow(name="train", log_prints=True)
def train_flow(
    configs: list[TrainConfig], lake: str | None = None, force: bool = False, restart: bool = False
) -> list[TrainResult]:
    """Train the runs in order (an SFT run may start from the pretraining run before it); `restart`
    starts a run over when its data or settings changed (see `model.train.train`)."""
    root = Lake.at(lake).root
    results = []
    for config in configs:
        result = train_run(config, root, force, restart)
        key = config.run.lower().replace("_", "-").replace(".", "-")
        create_link_artifact(
            key=f"{key}-loss-curve", link=f"file://{result.path}/loss.png", description=f"{config.run}: loss curve"
        )
        create_table_artifact(key=f"{key}-metrics", table=metric_rows(result), description=f"{config.objective} {config.run}")
        results.append(result)
    return results
