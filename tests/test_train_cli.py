"""`lmforge train …` as a user runs it (a real Prefect flow, its progress bar and summary), its
one-line errors, and the default job's training stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import tokenized_lake
from test_console import lmforge

from flows.sample_training import sample_training_flow
from pipelines.lake import Lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    return tokenized_lake(tmp_path_factory.mktemp("train-cli") / "lake")


def test_train_pretrain_shows_progress_a_summary_and_writes_an_hf_export(lake, prefect_harness):
    options = ["--tokenizer", "tok", "--lake", lake.root, "--seq-len", "32", "--batch-size", "4", "--steps", "12"]
    result = lmforge("train", "pretrain", "cli", *options, "--eval-every", "6", "--checkpoint-every", "6")
    assert result.returncode == 0, result.stdout
    assert "pretrain cli: 12 steps" in result.stdout and "held-out bpb" in result.stdout and "MFU" in result.stdout
    assert "━" in result.stdout and "Traceback" not in result.stdout
    export = Path(lake.path("checkpoints", "cli", "hf"))
    assert json.loads((export / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert f"Hugging Face export: {export}" in " ".join(result.stdout.split())
    stats = lmforge("stats", "--lake", lake.root)
    assert "training runs" in stats.stdout and "cli" in stats.stdout, stats.stdout
    sql = "SELECT kind, count(*) AS n FROM train_metrics WHERE run = 'cli' GROUP BY kind ORDER BY kind"
    rows = json.loads(lmforge("query", sql, "--lake", lake.root, "--format", "json").stdout)
    assert rows == [{"kind": "eval", "n": 2}, {"kind": "train", "n": 12}]

    changed = lmforge("train", "pretrain", "cli", *options[:-1], "24", "--eval-every", "6")
    assert changed.returncode == 1 and "Traceback" not in changed.stdout
    assert "steps changed" in changed.stdout and "--force" in changed.stdout


def test_train_errors_are_one_line(lake, prefect_harness):
    missing = lmforge("train", "sft", "x", "--tokenizer", "nope", "--lake", lake.root)
    assert missing.returncode == 1 and "no tokenizer 'nope'" in missing.stdout and "tok" in missing.stdout
    untokenized = lmforge("train", "pretrain", "y", "--tokenizer", "tok", "--data", "synthetic/wrap", "--lake", lake.root)
    assert untokenized.returncode == 1 and "lmforge tokenize --tokenizer tok --dataset synthetic/wrap" in untokenized.stdout
    assert "Traceback" not in missing.stdout + untokenized.stdout


def test_the_default_jobs_training_stage_trains_three_models_from_the_lake(lake, prefect_harness):
    """Without synthetic data: documents alone, the seed tasks for SFT, mismatched answers for the reward model."""
    result = sample_training_flow(lake.root, "tok", synthetic=False, pretrain_steps=8, tune_steps=4)
    assert result.mixture == "documents:1"
    assert [r.objective for r in result.runs] == ["pretrain", "sft", "reward"]
    assert all(Path(r.export, "model.safetensors").is_file() for r in result.runs)
    assert json.loads(Path(result.runs[2].export, "config.json").read_text())["architectures"] == [
        "LlamaForSequenceClassification"
    ]
    assert result.pairs.endswith("sample-mismatched-pairs.jsonl")
    again = sample_training_flow(lake.root, "tok", synthetic=False, pretrain_steps=8, tune_steps=4)
    assert [r.seconds for r in again.runs] == [r.seconds for r in result.runs]  # finished: the stored results, nothing retrained


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_and_logs_the_uninterrupted_curve(lake, prefect_harness):
    import os
    import signal
    import subprocess
    import sys
    import time

    from prefect.settings import PREFECT_API_URL

    from model.train import read_metrics

    options = ["--tokenizer", "tok", "--lake", lake.root, "--seq-len", "64", "--batch-size", "16", "--steps", "60"]
    options += ["--checkpoint-every", "10", "--eval-every", "30", "--no-export"]
    env = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    command = [sys.executable, "-c", "from flows.cli import main; main()", "train", "pretrain"]
    victim = subprocess.Popen([*command, "killed", *options], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = Path(lake.path("checkpoints", "killed"))
    deadline = time.monotonic() + 300
    while not (run / "step_000020").exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (run / "step_000060").exists() and not (run / "result.json").exists()

    resumed = lmforge("train", "pretrain", "killed", *options)
    assert resumed.returncode == 0, resumed.stdout
    whole = lmforge("train", "pretrain", "whole", *options)
    assert whole.returncode == 0, whole.stdout
    result = json.loads((run / "result.json").read_text())
    assert result["resumed_from"] >= 20
    curve = {
        name: [(m["step"], m["loss"]) for m in read_metrics(Path(lake.path("checkpoints", name, "metrics.jsonl")))]
        for name in ("killed", "whole")
    }
    assert curve["killed"] == curve["whole"] and len(curve["whole"]) == 62  # 60 steps + 2 evaluations, none twice
