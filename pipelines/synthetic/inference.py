"""Requests to the generation server through datatrove's `InferenceRunner`.

We use the runner for what it does well: a bounded number of requests in flight (async), the
checkpoints that let a killed run continue (finished chunks skipped, finished documents of the open
chunk replayed from its checkpoint file, every finished request replayed from its SQLite request
cache, keyed by document id + the request's hash) and its metrics. Two things we change, by
subclassing:
- the server: datatrove's `VLLMServer` runs `vllm serve` from PATH with `--trust-remote-code` (never
  here, DESIGN §7) and starts one server per pipeline run; ours is started once per flow run by
  `serving.served`, so the runner gets `LakeEndpointServer`, which only talks to it.
- the request: httpx with a timeout and the API key header (datatrove's localhost path has neither),
  our own bounded retries with backoff, waiting through a server restart, and every failure turned
  into an `InferenceError` that the rollout functions catch and set aside with its reason; a 400
  (an over-long prompt, say) keeps datatrove's "BadRequestError" marker and is never retried.
- the checkpoint bookkeeping: datatrove 0.10 deletes a finished chunk's checkpoint file and its
  cached requests *before* it records the chunk as finished, and records it by truncating and
  rewriting `last_chunk/<rank>.txt`; a kill in between makes the next run ask the whole chunk again
  (seen in CI) or fail to parse an empty file. `LakeCheckpointManager` records first, atomically.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import httpx
from datatrove.data import Document
from datatrove.pipeline.inference.checkpointing import CheckpointManager
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.inference.servers.base import InferenceServer
from datatrove.pipeline.inference.types import InferenceError, InferenceResult, ServerError
from datatrove.pipeline.writers.jsonl import JsonlWriter
from pydantic import BaseModel

from pipelines.lake.contract import atomic_write_bytes
from pipelines.synthetic.serving import Endpoint
from pipelines.synthetic.serving import ServerError as GenerationServerError

Generate = Callable[[dict], Awaitable[InferenceResult]]


class RequestPolicy(BaseModel):
    """How long a request may take and how often it is tried again."""

    timeout_s: float = 300.0
    retries: int = 4
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    restart_wait_s: float = 600.0  # how long a refused request waits for a server we manage to come back
    concurrency: int = 16  # requests in flight (163 tok/s at 16 on 2 CPU cores, DESIGN §8)


class LakeEndpointServer(InferenceServer):
    """datatrove's server interface over an `Endpoint` that is already running."""

    def __init__(self, config: InferenceConfig, rank: int, endpoint: Endpoint, policy: RequestPolicy) -> None:
        super().__init__(config, rank)
        self.endpoint, self.policy = endpoint, policy
        self._client: httpx.AsyncClient | None = None

    async def start_server(self) -> None:
        return None

    async def monitor_health(self) -> None:
        await asyncio.Future()  # the endpoint's own watcher restarts it; nothing to watch here

    def get_base_url(self) -> str:
        return self.endpoint.url

    async def is_ready(self) -> bool:
        try:
            response = await self.client.get(self.endpoint.ready_url, timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=self.policy.concurrency * 2)
            self._client = httpx.AsyncClient(headers=self.endpoint.headers(), limits=limits)
        return self._client

    async def server_cleanup(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await super().server_cleanup()

    async def _make_request(self, payload: dict) -> dict:
        """One request, tried again on a timeout, a 5xx or 429, or a refused connection (after waiting
        for a server we manage to restart). A request that keeps failing is an `InferenceError` (set
        aside); a server that stays unreachable is a `ServerError`, which stops the run (resumable)."""
        url = f"{self.endpoint.url}/v1/chat/completions"
        last, unreachable = "", False
        for attempt in range(self.policy.retries + 1):
            if attempt:
                await asyncio.sleep(min(self.policy.backoff_s * 2 ** (attempt - 1), self.policy.backoff_max_s))
            try:
                response = await self.client.post(url, json=payload, timeout=self.policy.timeout_s)
            except httpx.TimeoutException:
                last, unreachable = f"timed out after {self.policy.timeout_s:g} s", False
                continue
            except httpx.TransportError as e:
                last, unreachable = f"server unreachable ({type(e).__name__})", True
                await asyncio.to_thread(self.endpoint.wait_until_up, self.policy.restart_wait_s)
                continue
            if response.status_code == 200:
                return response.json()
            body = response.text[:500]
            if response.status_code in (400, 413, 422):
                raise InferenceError(None, f"BadRequestError (HTTP {response.status_code}): {body}")
            last, unreachable = f"HTTP {response.status_code}: {body}", False
            if response.status_code not in (408, 429) and response.status_code < 500:
                break
        if unreachable:
            raise ServerError(f"the server at {self.endpoint.url} stopped answering ({last}); rerun to continue where it stopped")
        raise InferenceError(None, f"request failed after {attempt + 1} attempts: {last}")


class LakeCheckpointManager(CheckpointManager):
    """datatrove's checkpoints, with a finished chunk recorded before its files are removed."""

    async def update_last_chunk_index(self, rank: int) -> None:
        async with self.checkpoint_file_lock:
            while self.last_chunk_index + 1 in self.new_completed_chunks:
                chunk_index = self.last_chunk_index + 1
                # recorded first: a kill from here on leaves at worst a stale file the next run skips
                fs, folder = self.checkpoints_local_dir_df.fs, self.checkpoints_local_dir_df.path
                atomic_write_bytes(fs, f"{folder}/last_chunk/{rank:05d}.txt", str(chunk_index).encode())
                self.last_chunk_index = chunk_index
                async with self.file_locks[chunk_index]:
                    chunk_file = os.path.join(self.checkpoints_local_dir, f"{rank:05d}/chunk_{chunk_index:05d}.jsonl")
                    if os.path.exists(chunk_file):
                        os.remove(chunk_file)
                self.file_locks.pop(chunk_index)
                self.per_chunk_counts.pop(chunk_index)
                self.new_completed_chunks.remove(chunk_index)
                if self.request_cache is not None:
                    await self.request_cache.drop_chunk(chunk_index)


class LakeInferenceRunner(InferenceRunner):
    """`InferenceRunner` whose server is our running endpoint and whose checkpoints are recorded
    before they are cleaned up (see the module docstring)."""

    def __init__(self, endpoint: Endpoint, policy: RequestPolicy, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.endpoint, self.policy = endpoint, policy
        manager = self.checkpoint_manager
        self.checkpoint_manager = LakeCheckpointManager(
            manager.checkpoints_local_dir, manager.records_per_chunk, request_cache=self.request_cache
        )

    def _init_server(self, rank: int) -> InferenceServer:
        return LakeEndpointServer(self.config, rank, self.endpoint, self.policy)


@dataclass
class PassResult:
    """What one pass over a list of work items took and produced."""

    seconds: float
    prompt_tokens: int
    completion_tokens: int
    requests: int
    failed_requests: int
    results: dict[str, dict] = field(default_factory=dict)  # each item's rollout result, by item id

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


Rollout = Callable[[Document, Generate], Awaitable[dict]]


def run_pass(
    endpoint: Endpoint,
    policy: RequestPolicy,
    items: Iterable[Document],
    rollout: Rollout,
    work_dir: str,
    progress: Callable[..., None] | None = None,
    records_per_chunk: int = 200,
) -> PassResult:
    """Run `rollout` on every item (its dict result lands in `<work_dir>/output/*.jsonl`), resumably.

    `work_dir` holds the runner's checkpoints; a pass killed midway and run again with the same
    items continues where it stopped: finished chunks are skipped, finished items of the open chunk
    kept, and requests already answered replayed from the cache. Items must come in the same order.
    """
    config = InferenceConfig(
        server_type="endpoint",
        endpoint_url=endpoint.url,
        model_name_or_path=endpoint.model,
        use_chat=True,
        max_concurrent_generations=policy.concurrency,
        metric_interval=3600,
        server_ready_max_attempts=60,
        server_ready_delay_sec=1.0,
    )

    items = list(items)
    earlier = pass_results(work_dir)
    done = len(earlier)  # a resumed pass starts from what it already has
    if done and {d.id for d in items} <= earlier.keys():
        return PassResult(0.0, 0, 0, 0, 0, earlier)  # finished before a kill: nothing to ask, no server to start
    endpoint.ensure_up()

    async def counted(document: Document, generate: Generate) -> dict:
        nonlocal done
        result = await rollout(document, generate)
        done += 1
        if progress is not None:
            progress(done)
        return result

    runner = LakeInferenceRunner(
        endpoint,
        policy,
        rollout_fn=counted,
        config=config,
        output_writer=JsonlWriter(f"{work_dir}/output", output_filename="${rank}_chunk_${chunk_index}.jsonl", compression=None),
        checkpoints_local_dir=f"{work_dir}/checkpoints",
        records_per_chunk=records_per_chunk,
        metadata_key="result",
    )
    started = time.monotonic()
    try:
        runner.run(items)
    except ServerError as e:  # the server stayed unreachable: one line naming it (and its log), the run resumable
        log = f"; server log: {endpoint.log_path}" if endpoint.log_path else ""
        raise GenerationServerError(f"{e.error}{log}") from None
    stats = runner.stats
    # datatrove logs a document it failed to save and carries on; here that would lose data silently
    results = pass_results(work_dir)
    missing = {d.id for d in items} - results.keys()
    if missing:
        raise RuntimeError(
            f"{len(missing)} of {len(items)} items have no result in {work_dir}/output (e.g. {min(missing)}); rerun to retry them"
        )
    return PassResult(
        seconds=time.monotonic() - started,
        prompt_tokens=int(_stat(stats, "prompt_tokens")),
        completion_tokens=int(_stat(stats, "completion_tokens")),
        requests=int(_stat(stats, "successful_requests")),
        failed_requests=int(_stat(stats, "failed_requests")),
        results=results,
    )


def _stat(stats, name: str) -> float:  # noqa: ANN001
    value = stats.stats.get(name) if hasattr(stats, "stats") else None
    return getattr(value, "total", 0) if value is not None else 0


def pass_results(work_dir: str) -> dict[str, dict]:
    """Each item's rollout result from a finished pass, by item id."""
    import orjson
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(f"{work_dir}/output")
    results: dict[str, dict] = {}
    for path in sorted(fs.glob(f"{root}/*.jsonl")):
        with fs.open(path, "rb") as f:
            for line in f:
                if line.strip():
                    row = orjson.loads(line)
                    results[row["id"]] = row["metadata"]["result"][0]
    return results
