"""Scheduled mode: prefect.yaml deploys every flow on a real local Prefect server, each with its schedule
or the trigger that makes it follow the stage before it; a deployment runs through a real `process`
worker and its completion triggers the next one; the inbox flow takes only new files."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from builders import page, response, write_warc

from pipelines.lake import DOCUMENTS_CLEAN, DOCUMENTS_DEDUP, Lake, read_manifest

ROOT = Path(__file__).resolve().parents[1]


def deployments() -> list[dict]:
    """The `deployments:` of prefect.yaml, anchors and merges resolved."""
    import yaml

    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]

PREFECT = str(Path(sys.executable).with_name("prefect"))
LAKE, INBOX = "<lake>", "<inbox>"  # stand for the folders the fixture deploys with
COMPLETED = "prefect.flow-run.Completed"


@dataclass
class Expected:
    flow: str  # the flow's name, as the API knows it
    entrypoint: str
    parameters: dict
    cron: str | None = None  # periodic: its schedule (UTC)
    after: str | None = None  # follows: the deployment whose completed runs trigger this one
    gate: list[str] = field(default_factory=list)  # trigger: events that must come first (its `after`)


# What each deployment must be: the spec this file holds prefect.yaml to.
EXPECTED = {
    "ingest-inbox": Expected(
        "ingest-inbox", "flows/ingest.py:ingest_inbox_flow", {"inbox": INBOX, "lake": LAKE}, cron="*/15 * * * *"
    ),
    # Only an ingest-inbox run that ran a task (it does so only for new files) opens the trigger's window.
    "dedup": Expected(
        "dedup", "flows/dedup.py:dedup_flow", {"lake": LAKE}, after="ingest-inbox", gate=["prefect.task-run.Completed"]
    ),
    "validate": Expected("validate", "flows/validate.py:validate_flow", {"datasets": ["documents"], "lake": LAKE}, after="dedup"),
    "release": Expected(
        "release",
        "flows/release.py:release_flow",
        {"datasets": ["documents"], "repo": "lmforge/documents", "dry_run": True, "lake": LAKE},
        after="validate",
    ),
    "tokenizer-train": Expected(
        "tokenizer-train",
        "flows/tokenizer.py:train_tokenizer_flow",
        {"config": {"name": "sample-8k", "vocab_size": 8192}, "lake": LAKE, "overwrite": True},
        after="validate",
    ),
    "tokenizer-report": Expected(
        "tokenizer-report",
        "flows/tokenizer.py:tokenizer_report_flow",
        {"tokenizers": ["sample-8k"], "lake": LAKE},
        after="tokenizer-train",
    ),
    "tokenize": Expected(
        "tokenize",
        "flows/tokens.py:tokenize_flow",
        {"config": {"tokenizer": "sample-8k", "val_fraction": 0.05}, "datasets": ["documents"], "lake": LAKE},
        after="tokenizer-train",
    ),
    "train": Expected(
        "train",
        "flows/train.py:train_flow",
        {
            "configs": [
                {
                    "objective": "pretrain",
                    "run": "lake-pretrain",
                    "tokenizer": "sample-8k",
                    "data": "documents:1",
                    "steps": 300,
                    "eval_every": 50,
                    "checkpoint_every": 100,
                }
            ],
            "lake": LAKE,
            "restart": True,
        },
        after="tokenize",
    ),
    "synthesize": Expected(
        "synthesize",
        "flows/synthetic.py:synthesize_flow",
        {"lake": LAKE, "wrap": {"max_documents": 200}, "self_instruct": {"target": 200}, "preferences": {}, "mix": {}},
        cron="0 3 * * *",
    ),
    "train-sample": Expected(
        "sample-training",
        "flows/sample_training.py:sample_training_flow",
        {"lake": LAKE, "tokenizer": "sample-8k", "synthetic": True},
        cron="0 5 * * 0",
    ),
    "eval-sample": Expected(
        "evaluate",
        "flows/evaluate.py:evaluate_flow",
        {"checkpoints": ["sample-pretrain", "sample-sft", "sample-reward"], "lake": LAKE, "name": "sample"},
        after="train-sample",
    ),
    "ablate-sample": Expected(
        "ablate",
        "flows/ablate.py:ablate_flow",
        {
            "lake": LAKE,
            "config": {
                "name": "sample-clean-vs-dedup",
                "arms": [
                    {"name": "clean", "mixture": "documents/clean", "tokenizer": "sample-8k"},
                    {"name": "dedup", "mixture": "documents", "tokenizer": "sample-8k"},
                ],
                "tokens": 245760,
                "seeds": 2,
                "evaluation": {"max_lines": 20, "heldout_bytes": 50000},
            },
        },
        cron="0 8 * * 0",
    ),
}

# Flows with no deployment, on purpose; each says why.
NOT_SCHEDULED = {
    # The whole path in one run on the embedded sample, on demand (`lmforge run`, `make run`); scheduled
    # mode runs its stages as the separate deployments above instead.
    "flows/end_to_end.py:end_to_end",
    # Ingests the paths given on the command line (`lmforge ingest PATHS`); its scheduled form is
    # ingest-inbox, which takes whatever is new in one folder.
    "flows/ingest.py:ingest_flow",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(env: dict, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        env["PREFECT_API_URL"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read()
    return json.loads(text) if text else None


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real Prefect server (SQLite) for this module's tests. Its scheduler is off: schedules are
    registered and read back, but no scheduled run (synthesize at 03:00…) reaches the worker test."""
    port = free_port()
    home = tmp_path_factory.mktemp("prefect-home")
    env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    with open(home / "server.log", "wb") as log:
        server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-scheduler", "--no-ui"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except OSError:
                assert server.poll() is None, (home / "server.log").read_text()
                time.sleep(0.5)
        else:
            pytest.fail("prefect server did not become healthy in 90 s")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def prefect(env: dict, *args: str) -> str:
    done = subprocess.run([PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def deployed(prefect_server, tmp_path_factory):
    """prefect.yaml deployed as `make serve` does it."""
    where = tmp_path_factory.mktemp("scheduled")
    inbox, lake = where / "inbox", where / "lake"
    inbox.mkdir()
    env = prefect_server | {"LMFORGE_HOME": str(ROOT), "INBOX": str(inbox), "LMFORGE_LAKE": str(lake)}
    prefect(env, "work-pool", "create", "process", "--type", "process", "--overwrite")
    prefect(env, "--no-prompt", "deploy", "--all")
    return env, inbox, lake


def placed(value, places: dict):
    """`value` with the stand-ins of EXPECTED replaced by the folders deployed with."""
    if isinstance(value, dict):
        return {k: placed(v, places) for k, v in value.items()}
    if isinstance(value, list):
        return [placed(v, places) for v in value]
    return places.get(value, value) if isinstance(value, str) else value


def registered(env: dict, name: str) -> dict:
    return api(env, "GET", f"/deployments/name/{EXPECTED[name].flow}/{name}")


def automations_of(env: dict, deployment_id: str) -> list[dict]:
    return [
        a
        for a in api(env, "POST", "/automations/filter", {})
        if any(action.get("deployment_id") == deployment_id for action in a["actions"])
    ]


def test_prefect_yaml_holds_exactly_the_expected_deployments():
    assert sorted(d["name"] for d in deployments()) == sorted(EXPECTED)
    for d in deployments():
        assert d["entrypoint"] == EXPECTED[d["name"]].entrypoint
        assert d["work_pool"] == {"name": "process", "work_queue_name": "default"} and d["concurrency_limit"] == 1
        assert d.get("description"), f"{d['name']}: say what runs when and why"
        assert bool(d.get("schedules")) != bool(d.get("triggers")), f"{d['name']}: a schedule or a trigger, one of them"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_deployment_is_registered_with_its_parameters_and_schedule_or_trigger(deployed, name):
    env, inbox, lake = deployed
    expected = EXPECTED[name]
    deployment = registered(env, name)
    assert deployment["entrypoint"] == expected.entrypoint
    assert deployment["work_pool_name"] == "process" and deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["parameters"] == placed(expected.parameters, {LAKE: str(lake), INBOX: str(inbox)})

    # What the worker's engine will do with them: validate them into the flow's signature (pydantic configs too).
    from prefect.flows import load_flow_from_entrypoint

    load_flow_from_entrypoint(str(ROOT / expected.entrypoint)).validate_parameters(deployment["parameters"])

    automations = automations_of(env, deployment["id"])
    if expected.cron:
        assert [(s["schedule"]["cron"], s["schedule"]["timezone"], s["active"]) for s in deployment["schedules"]] == [
            (expected.cron, "UTC", True)
        ]
        assert automations == []
    else:
        assert deployment["schedules"] == []
        [automation] = automations
        assert automation["enabled"], automation
        related = api(env, "GET", f"/automations/related-to/prefect.deployment.{deployment['id']}")
        assert automation["id"] in [a["id"] for a in related]
        assert [a["type"] for a in automation["actions"]] == ["run-deployment"]
        assert automation["actions"][0]["parameters"] is None  # the deployment's own parameters
        trigger = automation["trigger"]
        assert (trigger["type"], trigger["posture"], trigger["threshold"]) == ("event", "Reactive", 1)
        assert trigger["expect"] == [COMPLETED] and trigger["after"] == expected.gate
        if expected.gate:  # the window a gate event opens: 0 s would never see the completion that follows it
            assert trigger["within"] >= 600
        assert trigger["match_related"] == {"prefect.resource.role": "deployment", "prefect.resource.name": expected.after}
        assert expected.after in EXPECTED


def flows_defined() -> set[str]:
    """`path:function` of every function decorated with `@flow` or `@flow(...)` in flows/*.py."""
    found = set()
    for path in sorted((ROOT / "flows").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    if (isinstance(target, ast.Name) and target.id == "flow") or (
                        isinstance(target, ast.Attribute) and target.attr == "flow"
                    ):
                        found.add(f"{path.relative_to(ROOT)}:{node.name}")
    return found


def test_every_flow_has_a_deployment_or_a_reason_not_to():
    defined = flows_defined()
    assert "flows/dedup.py:dedup_flow" in defined and "flows/end_to_end.py:end_to_end" in defined  # the finder works
    entrypoints = {d["entrypoint"] for d in deployments()}
    assert sorted(defined - entrypoints - NOT_SCHEDULED) == [], "flows with neither a deployment nor a reason in NOT_SCHEDULED"
    assert sorted(NOT_SCHEDULED & entrypoints) == [] and NOT_SCHEDULED <= defined
    assert sorted(entrypoints - defined) == []  # each entrypoint names a flow of its file


def wait_for_state(env: dict, flow_run_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api(env, "GET", f"/flow_runs/{flow_run_id}")
        if run["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return run
        time.sleep(1)
    pytest.fail(f"flow run {flow_run_id} still {run['state_type']} after {timeout} s")


def runs_of(env: dict, deployment_id: str) -> list[dict]:
    return api(env, "POST", "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}})


@pytest.mark.slow
def test_a_process_worker_runs_ingest_inbox_and_its_completion_triggers_dedup(deployed, tmp_path):
    """ingest-inbox through a real worker: an empty inbox completes and triggers nothing; a new WARC is
    ingested and that run's completion makes the automation start dedup, which the worker runs too."""
    env, inbox, lake_root = deployed
    ingest, dedup = registered(env, "ingest-inbox"), registered(env, "dedup")
    # Only dedup's trigger stays on: the worker must not go on to validate, the tokenizer…
    [keep] = automations_of(env, dedup["id"])
    for automation in api(env, "POST", "/automations/filter", {}):
        if automation["id"] != keep["id"]:
            api(env, "PATCH", f"/automations/{automation['id']}", {"enabled": False})

    worker_env = env | {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "process"], env=worker_env, cwd=ROOT, stdout=log, stderr=log
        )
    try:
        nothing_new = api(env, "POST", f"/deployments/{ingest['id']}/create_flow_run", {})
        assert wait_for_state(env, nothing_new["id"])["state_type"] == "COMPLETED", (tmp_path / "worker.log").read_text()

        write_warc(inbox / "a.warc.gz", [response("https://example.org/a", page("en").encode())])
        new_file = api(env, "POST", f"/deployments/{ingest['id']}/create_flow_run", {})
        assert wait_for_state(env, new_file["id"])["state_type"] == "COMPLETED", (tmp_path / "worker.log").read_text()
        lake = Lake.at(str(lake_root))
        assert read_manifest(lake, DOCUMENTS_CLEAN).rows == 1

        deadline = time.monotonic() + 60
        while not (triggered := runs_of(env, dedup["id"])) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(triggered) == 1, "one dedup run: the new file's ingest triggered it, the empty inbox's did not"
        assert triggered[0]["created_by"]["type"] == "AUTOMATION"
        assert wait_for_state(env, triggered[0]["id"])["state_type"] == "COMPLETED", (tmp_path / "worker.log").read_text()
        assert read_manifest(lake, DOCUMENTS_DEDUP).rows == 1
        assert len(runs_of(env, dedup["id"])) == 1
    finally:
        worker.terminate()
        worker.wait(timeout=30)


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
