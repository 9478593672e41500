"""Test-wide setup: offline, no analytics, one Prefect test server per session."""

from __future__ import annotations

import os

os.environ.update(
    HF_HUB_OFFLINE="1",
    DO_NOT_TRACK="1",
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    GX_ANALYTICS_ENABLED="false",
    TOKENIZERS_PARALLELISM="false",
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
)

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from contextlib import ExitStack, contextmanager  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread_per_worker():
    """Under pytest-xdist, each process trains on one thread: two processes of two threads each on two
    cores spin against each other (DESIGN §8) and the training tests take several times as long."""
    if os.environ.get("PYTEST_XDIST_WORKER") and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@pytest.fixture(autouse=True)
def loguru_to_current_stderr():
    """Start each test with a loguru sink that writes to whatever stderr is now.

    datatrove re-adds loguru's default sink bound to the `sys.stderr` of that moment (in a CLI test,
    the `CliRunner`'s stream, closed once the test ends); a later test's logs would go there.
    """
    from loguru import logger

    logger.remove()
    logger.add(lambda message: sys.stderr.write(message), level="INFO")


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect API (SQLite) for flow runs in tests.

    Prefect's console log handler binds the stderr of whoever first configures logging; set it up
    here, or the first `CliRunner` binds its own stream, closed by the time a later test logs.
    """
    from prefect.logging.configuration import setup_logging
    from prefect.testing.utilities import prefect_test_harness

    setup_logging()
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def generation_model() -> str:
    """The default generation model, converted once per machine into a cache lake (24 s the first time)."""
    from pathlib import Path

    from pipelines.lake import Lake
    from pipelines.synthetic.models import DEFAULT_MODEL, resolve_model
    from pipelines.synthetic.serving import ServerConfig, ServerError, server_python

    try:
        python = server_python(ServerConfig())
    except ServerError as e:
        pytest.fail(f"the generation server's venv is missing ({e}); `make test` installs it")
    return resolve_model(Lake.at(Path.home() / ".cache" / "lmforge" / "test-lake"), DEFAULT_MODEL, python)


@pytest.fixture(scope="session")
def generation_server(generation_model, tmp_path_factory, worker_id):
    """One real vLLM server (the CPU build, SmolLM2-135M) for every test that generates, in the whole run:
    the first xdist worker that needs it starts it, the others use it, and it stops once none does."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the folder all workers of this run share
    with shared_generation_server(shared, generation_model) as endpoint:
        yield endpoint


@contextmanager
def shared_generation_server(folder, model: str):
    """Start the server, or join the one another worker started (its URL in `vllm.json`); a count of
    users in `vllm.users` lets its owner stop it only after the last one is done."""
    import fasteners

    from pipelines.synthetic.serving import Endpoint, ServerConfig, served

    lock, info, users = fasteners.InterProcessLock(str(folder / "vllm.lock")), folder / "vllm.json", folder / "vllm.users"
    with ExitStack() as owned:
        with lock:
            owner = not info.exists()
            if owner:
                config = ServerConfig(model=model, max_model_len=2048)
                endpoint = owned.enter_context(served(config, str(folder / "vllm-server.log")))
                endpoint.ensure_up()
                info.write_text(json.dumps({"url": endpoint.url, "model": endpoint.model}))
            else:
                known = json.loads(info.read_text())
                endpoint = Endpoint(known["url"], known["model"], "vllm", source=model)
            users.write_text(str(int(users.read_text() if users.exists() else "0") + 1))
        try:
            yield endpoint
        finally:
            with lock:
                users.write_text(str(int(users.read_text()) - 1))
            while owner:  # the others may still ask it (xdist waits for them anyway); the last one out stops it
                with lock:
                    if int(users.read_text()) == 0:
                        info.unlink()
                        break
                time.sleep(1)
