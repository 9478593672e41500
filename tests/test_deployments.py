"""Scheduled mode: prefect.yaml deploys on a real local Prefect server; the inbox flow takes only new files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from builders import page, response, write_warc

from pipelines.lake import DOCUMENTS_CLEAN, Lake, read_manifest

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(os.sys.executable).with_name("prefect"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    port = free_port()
    env = os.environ | {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
    }
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("prefect server did not become healthy in 90 s")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def prefect(env: dict, *args: str) -> str:
    done = subprocess.run([PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_prefect_yaml_deploys_the_scheduled_inbox_ingest_synthesis_and_training(prefect_server, tmp_path):
    env = prefect_server | {"LMFORGE_HOME": str(ROOT), "INBOX": str(tmp_path / "inbox"), "LMFORGE_LAKE": str(tmp_path / "lake")}
    prefect(env, "work-pool", "create", "process", "--type", "process", "--overwrite")
    prefect(env, "--no-prompt", "deploy", "--all")
    url = env["PREFECT_API_URL"] + "/deployments/name/ingest-inbox/ingest-inbox"
    deployment = json.load(urllib.request.urlopen(url, timeout=10))
    assert deployment["work_pool_name"] == "process"
    assert deployment["entrypoint"] == "flows/ingest.py:ingest_inbox_flow"
    assert deployment["parameters"] == {"inbox": str(tmp_path / "inbox"), "lake": str(tmp_path / "lake")}
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["*/15 * * * *"]
    synthesize = json.load(urllib.request.urlopen(env["PREFECT_API_URL"] + "/deployments/name/synthesize/synthesize", timeout=10))
    assert synthesize["entrypoint"] == "flows/synthetic.py:synthesize_flow"
    parameters = synthesize["parameters"]
    assert parameters["lake"] == str(tmp_path / "lake") and parameters["wrap"] == {"max_documents": 200}
    assert [s["schedule"]["cron"] for s in synthesize["schedules"]] == ["0 3 * * *"]
    url = env["PREFECT_API_URL"] + "/deployments/name/sample-training/train-sample"
    training = json.load(urllib.request.urlopen(url, timeout=10))
    assert training["entrypoint"] == "flows/sample_training.py:sample_training_flow"
    assert training["parameters"] == {"lake": str(tmp_path / "lake"), "tokenizer": "sample-8k", "synthetic": True}
    assert [s["schedule"]["cron"] for s in training["schedules"]] == ["0 5 * * 0"]
    evaluation = json.load(urllib.request.urlopen(env["PREFECT_API_URL"] + "/deployments/name/evaluate/eval-sample", timeout=10))
    assert evaluation["entrypoint"] == "flows/evaluate.py:evaluate_flow"
    assert evaluation["parameters"]["checkpoints"] == ["sample-pretrain", "sample-sft", "sample-reward"]
    ablation = json.load(urllib.request.urlopen(env["PREFECT_API_URL"] + "/deployments/name/ablate/ablate-sample", timeout=10))
    assert ablation["entrypoint"] == "flows/ablate.py:ablate_flow"
    from model.ablate import AblationConfig

    config = AblationConfig(**ablation["parameters"]["config"])  # what the worker will validate the parameters into
    assert [arm.name for arm in config.arms] == ["clean", "dedup"] and config.seeds == 2


def test_inbox_flow_ingests_only_files_it_has_not_seen(tmp_path, prefect_harness):
    from flows.ingest import ingest_inbox_flow
    from pipelines.ingest.run import IngestConfig

    inbox, lake = tmp_path / "inbox", Lake.at(tmp_path / "lake")
    inbox.mkdir()
    config = IngestConfig(workers=1)
    assert ingest_inbox_flow(str(inbox), lake.root, config) is None

    write_warc(inbox / "a.warc.gz", [response("https://example.org/a", page("en").encode())])
    first = ingest_inbox_flow(str(inbox), lake.root, config)
    assert (first.inputs, first.documents) == (1, 1)
    assert ingest_inbox_flow(str(inbox), lake.root, config) is None

    write_warc(inbox / "b.warc.gz", [response("https://example.org/b", page("fr").encode())])
    second = ingest_inbox_flow(str(inbox), lake.root, config)
    assert (second.inputs, second.documents, second.by_language) == (1, 1, {"fra_Latn": 1})
    assert read_manifest(lake, DOCUMENTS_CLEAN).rows == 2
