"""The `evaluate` flow: bits per byte per language for each checkpoint, its own held-out task, and
the report in `reports/eval/<name>/` with a Prefect artifact. The measuring is `model.evaluate`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.progress import stage_bar
from model.eval_report import headline, sections, summary_section
from model.evaluate import EvalConfig, EvalTexts, ModelReport, evaluate_model, gather_texts, pick_device, report_dict, report_name
from model.loading import load_model, locate
from model.report_page import markdown, write_report
from pipelines.lake import REPORTS, Lake

EVAL_REPORTS = f"{REPORTS}/eval"


@dataclass
class EvalResult:
    out: Path
    models: list[ModelReport]


@task(name="evaluate", task_run_name="evaluate {spec}", cache_policy=NO_CACHE)
def evaluate_one(spec: str, lake_root: str, texts: EvalTexts, config: EvalConfig) -> ModelReport:
    lake = Lake.at(lake_root)
    loaded = load_model(spec, lake, pick_device(config.device))
    scored = 0
    with stage_bar(f"evaluate {loaded.name}", None, "tokens") as bar:

        def progress(n: int) -> None:
            nonlocal scored
            scored += n
            bar(scored)

        report = evaluate_model(lake, loaded, texts, config, progress)
    get_run_logger().info(
        f"{report.name}: bits per byte {report.overall('aligned') or float('nan'):.3f} on aligned text, "
        f"{report.overall('heldout') or float('nan'):.3f} on held-out documents"
    )
    return report


def write_eval_report(out: Path, reports: list[ModelReport], texts: EvalTexts) -> Path:
    title = f"Evaluation: {', '.join(r.name for r in reports)}"
    return write_report(out, report_dict(reports, texts), title, lambda folder: sections(reports, texts.sources, folder))


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    checkpoints: list[str], lake: str | None = None, config: EvalConfig | None = None, name: str | None = None
) -> EvalResult:
    """Evaluate every checkpoint on the same texts; one report for all of them."""
    config = config or EvalConfig()
    root = Lake.at(lake)
    record = locate(checkpoints[0], root).record
    tokenizer = record["config"]["tokenizer"] if record else None
    texts = gather_texts(root, config, tokenizer)
    reports = [evaluate_one(spec, root.root, texts, config) for spec in checkpoints]
    out = write_eval_report(Path(root.path(EVAL_REPORTS, name or report_name([r.name for r in reports]))), reports, texts)
    title = f"Evaluation of {', '.join(r.name for r in reports)}"
    summary = markdown(title, [summary_section(reports)])
    create_markdown_artifact(key="evaluation", markdown=summary, description=" ".join(headline(reports)))
    create_link_artifact(key="evaluation-html", link=(out / "report.html").as_uri(), link_text="report.html")
    return EvalResult(out, reports)
