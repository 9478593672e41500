"""The `ablate` flow: tokenize what the arms need, train every (arm, seed), evaluate each on the same
held-out text, and write `reports/ablations/<name>/` (curves, the final table, how to reproduce it).

An arm that diverges is reported as diverged; the others are still compared. Every run is an ordinary
training run, so a killed ablation resumes; evaluations are kept beside the report, keyed by the
checkpoint's hashes and the held-out text, so a finished arm is not measured twice.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_table_artifact

from flows.tokens import tokenize_flow
from flows.train import train_run
from flows.validate import validate_flow
from model.ablate import AblationConfig, ArmResult, SeedResult, check_budget, command_line, final_rows, run_configs
from model.ablate_report import draw_report, headline
from model.checkpoint import RECORD, checkpoints
from model.evaluate import EvalTexts, evaluate_model, gather_texts, heldout_fraction, pick_device, pooled_bpb
from model.loading import load_model
from model.report_page import write_report
from model.tasks import token_manifest
from model.token_shards import DOCUMENTS_ALIAS
from model.tokens import TokenizeConfig
from model.train import TrainConfig, TrainingError, read_metrics, run_dir
from pipelines.lake import REPORTS, TRAIN_METRICS, Lake, atomic_write_bytes, fingerprint
from pipelines.lake.quality_record import current_quality_summary

ABLATION_REPORTS = f"{REPORTS}/ablations"


@dataclass
class AblationResult:
    out: Path
    arms: list[ArmResult]
    rows: list[dict[str, Any]]


def prepare_tokens(lake: Lake, config: AblationConfig) -> dict[str, dict[str, float]]:
    """Tokenize every dataset an arm reads (and the curves' held-out set) for its tokenizer, with the
    lake's held-out fraction (a no-op when done already); then check each arm's budget."""
    fraction = heldout_fraction(lake, DOCUMENTS_ALIAS, None)
    needed: dict[str, list[str]] = {}
    for arm in config.arms:
        names = [name for name in arm.mixture_names() if name != config.eval_data] + [config.eval_data]
        needed.setdefault(arm.tokenizer, [])
        needed[arm.tokenizer] += [n for n in names if n not in needed[arm.tokenizer]]
    for tokenizer, names in needed.items():
        tokenize_flow(TokenizeConfig(tokenizer=tokenizer, val_fraction=fraction), names, lake.root)
        made = [f"tokens/{tokenizer}/{n}" for n in names]
        unvalidated = [d for d in made if current_quality_summary(lake, d) is None]
        if unvalidated:  # the gate each arm's training asks, passed here once rather than warned about per run
            validate_flow(unvalidated, lake.root)
    return {
        arm.name: check_budget(config, arm, {n: token_manifest(lake, arm.tokenizer, n) for n in arm.mixture_names()})
        for arm in config.arms
    }


def curve(lake: Lake, run: TrainConfig) -> list[tuple[int, float]]:
    per_step = run.seq_len * run.batch_size
    return [(m["step"] * per_step, m["bpb"]) for m in read_metrics(run_dir(lake, run.run) / TRAIN_METRICS) if m["kind"] == "eval"]


def measured(lake: Lake, run: TrainConfig, texts: EvalTexts, config: AblationConfig, cache: Path) -> dict[str, Any]:
    """The run's final checkpoint on the ablation's held-out text; kept in `cache` under the checkpoint's
    hashes and the text's description, and reused while both are unchanged."""
    newest = checkpoints(run_dir(lake, run.run))[-1]
    key = fingerprint([json.loads((newest.path / RECORD).read_text()), texts.sources, config.evaluation.model_dump()])
    path = cache / f"{run.run}.json"
    cached = json.loads(path.read_text()) if path.is_file() else {}
    if cached.get("key") == key:
        return cached["report"]
    loaded = load_model(run.run, lake, pick_device(config.evaluation.device))
    report = asdict(evaluate_model(lake, loaded, texts, config.evaluation))
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(lake.fs, str(path), json.dumps({"key": key, "report": report}).encode())
    return report


def overall(scores: dict[str, dict[str, Any]]) -> float | None:
    """`ModelReport.overall` of a cached (JSON) report's part."""
    return pooled_bpb([(s["bits_per_byte"], s["bytes"]) for s in scores.values()])


@flow(name="ablate", log_prints=True)
def ablate_flow(config: AblationConfig, lake: str | None = None, command: str | None = None) -> AblationResult:
    """Train and compare the arms; the report says whether each difference exceeds the seed spread."""
    logger = get_run_logger()
    root = Lake.at(lake)
    epochs = prepare_tokens(root, config)
    texts = gather_texts(root, config.evaluation)
    out = Path(root.path(ABLATION_REPORTS, config.name))
    runs = run_configs(config)
    results = []
    for arm in config.arms:
        seeds = []
        for seed in range(config.seeds):
            run = runs[(arm.name, seed)]
            result = SeedResult(seed, run.run)
            try:
                train_run(run, root.root, force=False, restart=True)
            except TrainingError as error:
                logger.warning(f"arm {arm.name}, seed {seed} diverged: {error}")
                result.diverged = str(error)
            result.curve = curve(root, run)
            if result.diverged is None:
                report = measured(root, run, texts, config, out.parent / f".{config.name}.evaluations")
                result.heldout_bpb, result.aligned_bpb = overall(report["heldout"]), overall(report["aligned"])
                result.languages = {lang: s["bits_per_byte"] for lang, s in report["heldout"].items()}
            seeds.append(result)
        results.append(ArmResult(arm, seeds, epochs[arm.name]))
    rows = final_rows(results)
    record = {
        "config": config.model_dump(),
        "command": command or command_line(config, root.root),
        "runs": {r.run: r.model_dump() for r in runs.values()},
        "sources": texts.sources,
        "arms": [{**asdict(r), "arm": r.arm.model_dump()} for r in results],  # the arm as data, not its repr
        "table": rows,
    }
    write_report(out, record, f"Ablation {config.name}", lambda folder: draw_report(config, results, rows, record, folder))
    key = "ablation-" + re.sub(r"[^a-z0-9-]+", "-", config.name.lower())
    create_table_artifact(key=key, table=rows, description=" ".join(headline(results)))
    create_link_artifact(key=f"{key}-html", link=(out / "report.html").as_uri(), link_text="report.html")
    for line in headline(results):
        logger.info(line)
    return AblationResult(out, results, rows)
