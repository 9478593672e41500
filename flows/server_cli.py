"""`lmforge server status|start|stop`: the local Prefect server lmforge keeps for its flow runs (`flows.local_server`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.local_server import (
    LocalServer,
    ServerError,
    ensure_local_server,
    idle_minutes,
    lifetime,
    running_server,
    state_folder,
    stop_local_server,
)

server_app = typer.Typer(
    help="The local Prefect server lmforge keeps for its flow runs when no PREFECT_API_URL is configured.",
    no_args_is_help=True,
)


def _configured_note() -> None:
    from prefect.settings import get_current_settings

    from flows.console import out

    if url := get_current_settings().api.url:
        out.print(
            f"note: a Prefect API is configured ({url}): flow runs go there, not to a local server",
            highlight=False,
            soft_wrap=True,
        )


def _describe(server: LocalServer, folder: Path) -> str:
    since = f"pid {server.pid}, since {server.started}"
    return f"local Prefect server at {server.api_url} ({since}, {lifetime(server)}); state and log: {folder}"


@server_app.command("status")
def server_status() -> None:
    """Where flow runs go, and the local server if one is running."""
    from flows.console import out

    _configured_note()
    folder = state_folder()
    server = running_server(folder)
    message = _describe(server, folder) if server else f"no local Prefect server running ({folder})"
    out.print(message, highlight=False, soft_wrap=True)


@server_app.command("start")
def server_start(
    idle: Annotated[
        Optional[float],
        typer.Option(
            "--idle-minutes", help="stop after this long unused (default: $LMFORGE_SERVER_IDLE_MINUTES or 30; 0: never)"
        ),
    ] = None,
) -> None:
    """Start the local server now (the first command that runs a flow would), so that no command waits for it."""
    from flows.console import fail, out

    _configured_note()
    folder = state_folder()
    try:
        server, started = ensure_local_server(folder, idle if idle is not None else idle_minutes())
    except ServerError as e:
        fail(str(e))
    out.print(("started " if started else "already running: ") + _describe(server, folder), highlight=False, soft_wrap=True)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local server (the next command that runs a flow starts a new one)."""
    from flows.console import out

    folder = state_folder()
    server = stop_local_server(folder)
    message = f"stopped the local Prefect server (pid {server.pid})" if server else "no local Prefect server running"
    out.print(message, highlight=False)
