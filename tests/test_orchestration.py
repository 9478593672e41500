"""Where a command's flow runs go (`flows.prefect_api`): a configured Prefect API records them; with none
configured, one local server kept between commands does, until it is stopped or idle; an API that does not
answer is one line. Real commands in fresh processes, real servers; no server outlives a test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from builders import page

LMFORGE = str(Path(sys.executable).with_name("lmforge"))


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    """One Prefect database for the local servers of this module (its migrations cost seconds, once)."""
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture
def unconfigured(tmp_path, prefect_home):
    """The environment of a user who configured no Prefect API; stops any local server it started."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    env |= {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PREFECT_HOME": str(prefect_home)}
    yield env
    for state in (tmp_path / "cache").glob("lmforge/prefect-server/*/server.json"):
        pid = json.loads(state.read_text())["pid"]
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_for_exit(pid, 30) or os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_exit(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not alive(pid)


def lmforge(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LMFORGE, *args], env=env, capture_output=True, text=True, timeout=300)


def local_server(env: dict) -> tuple[dict, Path]:
    """What the running local server wrote about itself, and its folder."""
    (state,) = Path(env["XDG_CACHE_HOME"]).glob("lmforge/prefect-server/*/server.json")
    return json.loads(state.read_text()), state.parent


def flow_runs(api_url: str, flow: str) -> list[dict]:
    body = json.dumps({"flows": {"name": {"any_": [flow]}}}).encode()
    request = urllib.request.Request(f"{api_url}/flow_runs/filter", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def one_page(tmp_path: Path) -> str:
    html = tmp_path / "page.html"
    html.write_text(page("en"))
    return str(html)


def test_with_a_configured_server_the_flow_runs_are_recorded_there(prefect_harness, unconfigured, tmp_path):
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    lake = str(tmp_path / "lake")
    done = lmforge(unconfigured | {"PREFECT_API_URL": api_url}, "ingest", one_page(tmp_path), "--lake", lake)
    assert done.returncode == 0, done.stderr
    (run,) = [r for r in flow_runs(api_url, "ingest") if r["parameters"]["lake"] == lake]
    assert run["state_type"] == "COMPLETED"
    assert not (tmp_path / "cache" / "lmforge" / "prefect-server").exists(), "no local server when one is configured"


def test_without_configuration_commands_started_together_share_one_local_server_until_stopped(unconfigured, tmp_path):
    html, lakes = one_page(tmp_path), [str(tmp_path / "lake-a"), str(tmp_path / "lake-b")]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    commands = [subprocess.Popen([LMFORGE, "ingest", html, "--lake", lake], env=unconfigured, **pipes) for lake in lakes]
    outputs = [c.communicate(timeout=300) for c in commands]
    assert [c.returncode for c in commands] == [0, 0], outputs
    assert sum("started a local Prefect server" in err for _, err in outputs) == 1

    server, _ = local_server(unconfigured)
    assert server["url"].startswith("http://127.0.0.1:")
    assert alive(server["pid"])
    runs = flow_runs(server["url"] + "/api", "ingest")
    assert sorted(r["parameters"]["lake"] for r in runs) == lakes
    assert {r["state_type"] for r in runs} == {"COMPLETED"}
    status = lmforge(unconfigured, "server", "status")
    assert f"{server['url']}/api (pid {server['pid']}" in status.stdout

    assert f"pid {server['pid']}" in lmforge(unconfigured, "server", "stop").stdout
    assert not alive(server["pid"])


def test_the_local_server_stops_itself_once_no_command_has_used_it_for_its_idle_time(unconfigured):
    started = lmforge(unconfigured, "server", "start", "--idle-minutes", "0.02")  # 1.2 s
    assert started.returncode == 0, started.stderr
    server, folder = local_server(unconfigured)
    # a command in the middle of long stage work: it holds its lease, and sends no request
    lease = f"import pathlib, time, flows.local_server as s; s.hold_lease(pathlib.Path({str(folder)!r})); time.sleep(4)"
    command = subprocess.Popen([sys.executable, "-c", lease])
    assert not wait_for_exit(server["pid"], 3), "idle while a command holds its lease"
    assert command.wait(timeout=30) == 0
    assert wait_for_exit(server["pid"], 60)
    assert "no local Prefect server running" in lmforge(unconfigured, "server", "status").stdout


def test_a_configured_api_that_does_not_answer_is_one_line(unconfigured, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api_url = f"http://127.0.0.1:{port}/api"
    done = lmforge(unconfigured | {"PREFECT_API_URL": api_url}, "ingest", one_page(tmp_path), "--lake", str(tmp_path / "lake"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "does not answer" in line]
    assert line.startswith(f"error: the Prefect API at {api_url} (PREFECT_API_URL) does not answer: connection refused")
    assert not (tmp_path / "cache" / "lmforge" / "prefect-server").exists()


def test_without_the_local_server_each_command_uses_a_temporary_one_and_leaves_nothing_running(unconfigured, tmp_path):
    done = lmforge(unconfigured | {"LMFORGE_LOCAL_SERVER": "0"}, "ingest", one_page(tmp_path), "--lake", str(tmp_path / "lake"))
    assert done.returncode == 0, done.stderr
    assert "started a local Prefect server" not in done.stderr and "ingest run" in done.stdout
    assert not (tmp_path / "cache" / "lmforge" / "prefect-server").exists()
