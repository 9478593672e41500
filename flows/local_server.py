"""The local Prefect server lmforge keeps between commands when no Prefect API is configured (see `flows.prefect_api`).

It is Prefect's own API app in the mode of its temporary servers (the same services, no UI, no
scheduler), on 127.0.0.1 only, with the database they use (`$PREFECT_HOME/prefect.db`). Its state
(pid, URL, log) is under `$XDG_CACHE_HOME/lmforge/prefect-server/<database>/`. Commands started
together take a file lock: one starts the server, the others wait for it. A command holds a lease
(a shared file lock) while it runs, so a long stage without a request to the server keeps it; once
no command has used it for 30 minutes (`LMFORGE_SERVER_IDLE_MINUTES`, 0: never) it stops itself.
`python -m flows.local_server FOLDER IDLE_MINUTES` is the server's own process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flows.prefect_api import unanswered

IDLE_MINUTES = 30.0
STATE, LOG, LOCK, USERS = "server.json", "server.log", "lock", "users"
_lease: Any = None  # this command's shared lock on USERS, held until the process ends
SERVE_MODULE = "flows.local_server"


class ServerError(Exception):
    """The local server could not be started or reached; the message says where its log is."""


@dataclass
class LocalServer:
    """What a running kept server wrote about itself (`server.json`)."""

    pid: int
    url: str  # http://127.0.0.1:PORT
    started: str  # ISO time, UTC
    idle_minutes: float

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def lifetime(server: LocalServer) -> str:
    return f"stops after {server.idle_minutes:g} min idle" if server.idle_minutes > 0 else "kept until `lmforge server stop`"


def idle_minutes() -> float:
    return float(os.environ.get("LMFORGE_SERVER_IDLE_MINUTES", IDLE_MINUTES))


def state_folder() -> Path:
    """`$XDG_CACHE_HOME/lmforge/prefect-server/<database>/`: one kept server per Prefect database."""
    from prefect.settings import get_current_settings

    database = get_current_settings().server.database.connection_url
    key = hashlib.sha256((database.get_secret_value() if database else "").encode()).hexdigest()[:12]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "lmforge" / "prefect-server" / key


def running_server(folder: Path) -> LocalServer | None:
    """The kept server `folder` describes, if its process is alive and it answers; else None."""
    server = _read_state(folder)
    if server is None or not _is_our_server(server.pid):
        return None
    return server if unanswered(server.api_url, 2.0, proxies=False) is None else None


def ensure_local_server(folder: Path, idle: float, timeout: float | None = None) -> tuple[LocalServer, bool]:
    """The running kept server, or a new one; and whether it was started now. Safe to call from commands started together.

    This process holds a lease on the server from now until it ends (`hold_lease`).
    """
    import fasteners

    folder.mkdir(parents=True, exist_ok=True)
    with fasteners.InterProcessLock(str(folder / LOCK)):
        hold_lease(folder)  # waits while a server that found itself unused is exiting
        server = running_server(folder)
        if server:
            return server, False
        stale = _read_state(folder)
        if stale and _is_our_server(stale.pid):  # alive but not answering: replace it
            _terminate(stale.pid)
        return _start(folder, idle, timeout or _startup_timeout()), True


def hold_lease(folder: Path) -> None:
    """Hold a shared lock on the server's `users` file until this process ends.

    While a command holds one, its server is in use, even through hours of stage work without a
    request to it; a server that finds none (`claim_if_unused`) keeps the file locked while it exits.
    """
    global _lease
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the server goes by requests and connections alone
        return
    if _lease is None:
        _lease = open(folder / USERS, "a")
        fcntl.flock(_lease, fcntl.LOCK_SH)


def claim_if_unused(folder: Path) -> Any:
    """For the server: the `users` file locked for good if no command holds a lease, else None."""
    try:
        import fcntl
    except ImportError:
        return True
    users = open(folder / USERS, "a")
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        users.close()
        return None
    return users  # held until this process ends


def stop_local_server(folder: Path, timeout: float = 15.0) -> LocalServer | None:
    """Stop the kept server of `folder` (SIGTERM, then SIGKILL after `timeout` s); the server stopped, or None."""
    import fasteners

    if not folder.is_dir():
        return None
    with fasteners.InterProcessLock(str(folder / LOCK)):
        server = _read_state(folder)
        if server is None:
            return None
        (folder / STATE).unlink(missing_ok=True)
        if not _is_our_server(server.pid):
            return None
        _terminate(server.pid, timeout)
        return server


def _startup_timeout() -> float:
    from prefect.settings import get_current_settings

    return float(get_current_settings().server.ephemeral.startup_timeout_seconds)


def _start(folder: Path, idle: float, timeout: float) -> LocalServer:
    from prefect.settings import get_current_settings

    (folder / STATE).unlink(missing_ok=True)
    package_root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        # the settings this command resolved (profile, prefect.toml, .env…), as Prefect passes them to its own servers
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
    }
    with open(folder / LOG, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", SERVE_MODULE, str(folder), str(idle)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=env,
            start_new_session=True,  # not in the command's process group: Ctrl-C on a command leaves it be
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"the local Prefect server exited at start (code {process.returncode}): see {folder / LOG}")
        server = _read_state(folder)
        if server and server.pid == process.pid and unanswered(server.api_url, 1.0, proxies=False) is None:
            return server
        time.sleep(0.1)
    process.kill()
    raise ServerError(f"the local Prefect server did not answer within {timeout:g} s: see {folder / LOG}")


def _read_state(folder: Path) -> LocalServer | None:
    try:
        return LocalServer(**json.loads((folder / STATE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _is_our_server(pid: int) -> bool:
    """Alive, not a zombie, and (where /proc tells) running this module: a recycled pid is not ours."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        command = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return state != "Z" and SERVE_MODULE.encode() in command


def _terminate(pid: int, timeout: float = 15.0) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_our_server(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)


# ---- the kept server's own process ----------------------------------------------------------------


class _ActivityTracker:
    """ASGI middleware: for how long no request and no connection has been open (a running flow holds its events websocket)."""

    def __init__(self, app: Any) -> None:
        self.app, self.open, self.last = app, 0, time.monotonic()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
            self.last = time.monotonic()

    def idle_seconds(self) -> float:
        return 0.0 if self.open else time.monotonic() - self.last


def serve(folder: Path, idle: float) -> None:
    """Serve Prefect's API on a loopback port the kernel picks (see `server.json`) until `idle` minutes unused, or SIGTERM."""
    sock = socket.create_server(("127.0.0.1", 0))  # loopback only, never another interface
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    state = folder / STATE
    temporary = folder / f".{STATE}.{os.getpid()}"
    temporary.write_text(json.dumps(asdict(LocalServer(os.getpid(), url, started, idle))))
    temporary.replace(state)
    # uvicorn re-raises the SIGTERM it handled once it has shut down: end with an exit, so `finally` runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    import uvicorn
    from prefect.server.api.server import create_app

    # The mode of Prefect's temporary servers: their services (task runs recorded from events…), no UI, no scheduler.
    app = _ActivityTracker(create_app(ephemeral=True, final=True))
    config = uvicorn.Config(app, interface="asgi3", lifespan="on", log_level="error", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)

    claimed: list[Any] = []

    async def stop_when_idle() -> None:
        while not claimed:
            await asyncio.sleep(min(30.0, max(0.5, idle * 60 / 4)))
            if app.idle_seconds() < idle * 60:
                continue
            if users := claim_if_unused(folder):
                claimed.append(users)  # commands that come now wait for this server to be gone
            else:
                app.last = time.monotonic()  # a command holds a lease: idle counts from when the last one ends
        server.should_exit = True

    async def run() -> None:
        watchdog = asyncio.create_task(stop_when_idle()) if idle > 0 else None
        try:
            await server.serve(sockets=[sock])
        finally:
            if watchdog:
                watchdog.cancel()

    try:
        asyncio.run(run())
    finally:
        if (current := _read_state(folder)) and current.pid == os.getpid():
            state.unlink(missing_ok=True)


if __name__ == "__main__":
    serve(Path(sys.argv[1]), float(sys.argv[2]))
