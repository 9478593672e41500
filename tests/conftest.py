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

import sys  # noqa: E402

import pytest  # noqa: E402


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
def generation_server(generation_model, tmp_path_factory):
    """One real vLLM server (the CPU build, SmolLM2-135M) for the tests that generate, started once per
    session: those tests share the `vllm` xdist group, so they run in one worker and reuse it."""
    from pipelines.synthetic.serving import ServerConfig, served

    config = ServerConfig(model=generation_model, max_model_len=2048)
    log = tmp_path_factory.mktemp("generation-server") / "server.log"
    with served(config, str(log)) as endpoint:
        endpoint.ensure_up()
        yield endpoint
