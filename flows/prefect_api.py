"""Where a command's flow runs are recorded: a configured Prefect API, else one local server kept between commands.

Every command that runs a flow needs a Prefect API. With nothing configured, Prefect starts a
temporary server in each process and stops it at exit. Where a bare `@flow` returning 1 spends its
~10 s in a fresh process (2 cores, offline, prefect 3.9.1, quiet machine; twice that under load):

- `import prefect` 1.0-1.3 s;
- 2 s importing `prefect.server.api.server` in the command itself, for the class that starts the
  temporary server;
- 4.7 s until that server answers `/health`: a new interpreter importing the server's code (2.7 s:
  FastAPI routers, schemas, SQLAlchemy, docket), `create_app` 0.2 s, its start-up hooks 0.15 s
  (migration check, block types), uvicorn; the UI is already off in this mode. No Prefect setting
  removes the imports; a fresh database adds ~8 s of migrations, once;
- the run itself 0.05-1.0 s: the engine joins the flow's heartbeat thread, which sleeps in 1 s steps;
- ~1 s at exit, stopping the server.

A server per command can't come under 3 s; one that outlives the command can. So `running` (every
command that runs flows) enters `flow_runs_recorded`:

1. A configured Prefect API (`PREFECT_API_URL`, or a profile's) is used as it is, and the runs are
   recorded there as before. It is asked for `/health` first (5 s at most): if it does not answer,
   one line says so and the command stops, instead of a traceback or a long wait.
2. Otherwise the runs go to the local server lmforge keeps (`flows.local_server`): the first
   command that runs a flow starts it (one line on stderr says where, and how to stop it), later
   ones find it. Its runs send no heartbeats (nothing there acts on them; up to 1 s a command).
   `LMFORGE_LOCAL_SERVER=0` turns it off: Prefect's temporary server in each command, as before.

Weighed and not taken: running the flows without any orchestrator when nothing is configured (no
server at all, but the flows would run under a second set of rules, with no task runs, artifacts
or retries, kept in step with Prefect's engine by patching it), and making the temporary server
start faster (import-bound, above). Fixed cost of a command over its own work (`bench/cli_overhead.py`,
medians of 5): a bare flow 9.6 s → 2.1 s, `lmforge ingest` of one page 11.5 s → 2.4 s; the first
command of a session, which starts the server, 7.2-7.5 s.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PROBE_SECONDS = 5.0  # how long a configured API may take to answer /health
OWN_SERVER_ENV = "LMFORGE_LOCAL_SERVER"  # "0": no kept server, Prefect's temporary one in each command


@contextmanager
def flow_runs_recorded() -> Iterator[None]:
    """For the length of a command: its flow runs go to the configured API if it answers (else one line
    and exit 1), else to the kept local server, started now if need be (`flows.local_server`)."""
    from prefect.context import get_settings_context
    from prefect.settings import get_current_settings, temporary_settings

    from flows.console import err, fail
    from flows.local_server import ServerError, ensure_local_server, idle_minutes, lifetime, state_folder

    configured = get_current_settings().api.url
    if configured:
        if why := unanswered(configured, PROBE_SECONDS):
            profile = get_settings_context().profile.name
            source = "PREFECT_API_URL" if "PREFECT_API_URL" in os.environ else f"Prefect profile {profile!r}"
            fail(
                f"the Prefect API at {configured} ({source}) does not answer: {why}. Start that server, "
                f"or unset PREFECT_API_URL (`prefect config unset PREFECT_API_URL` for a profile) to use lmforge's local one"
            )
        yield
        return
    if os.environ.get(OWN_SERVER_ENV) == "0":
        yield
        return
    try:
        server, started = ensure_local_server(state_folder(), idle_minutes())
    except ServerError as e:
        fail(str(e))
    if started:
        err.print(
            f"lmforge: started a local Prefect server at {server.api_url} for this and later commands' flow runs "
            f"({lifetime(server)}; `lmforge server status|stop`)",
            highlight=False,
            soft_wrap=True,
        )
    # Heartbeats tell a server that a run is alive; nothing on the kept server acts on them, and the
    # engine joins the heartbeat thread (asleep in 1 s steps) at the end of every flow: ~1 s a command.
    # The kept server has no UI, so no "View at" links to it.
    with temporary_settings(updates={"api.url": server.api_url, "flows.heartbeat_frequency": None, "ui_url": ""}):
        yield


def unanswered(api_url: str, timeout: float, proxies: bool = True) -> str | None:
    """None if `api_url` answers `/health` within `timeout` seconds (any HTTP status will do), else why not."""
    opener = urllib.request.build_opener(*([] if proxies else [urllib.request.ProxyHandler({})]))
    try:
        with opener.open(f"{api_url.rstrip('/')}/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as e:
        return _reason(e.reason)
    except (OSError, ValueError) as e:
        return _reason(e)


def _reason(e: Any) -> str:
    if isinstance(e, TimeoutError):
        return "no answer within the time allowed"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    return str(getattr(e, "strerror", None) or e)
