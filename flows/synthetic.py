"""Prefect flow for synthetic data: one generation server for the whole flow run, the generators asked
for in turn (WRAP, Self-Instruct, preferences, best-of-n), then the pretraining mix.

The flow only orchestrates: the model is resolved (the default converted into the lake once), the
server started and stopped by `pipelines.synthetic.serving.served`, the work done by the
generators in `pipelines.synthetic` (best-of-n's reward model is loaded here, from `model`, and handed
to its generator as a plain scoring function). What happened is published as artifacts: a progress
artifact per generator while it runs, then a table of rows, set-aside rows and tokens/s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from flows.logs import log_path
from flows.progress import stage_bar
from pipelines.lake import Lake
from pipelines.synthetic.best_of_n import RewardScoring
from pipelines.synthetic.best_of_n_run import BestOfNConfig, run_best_of_n
from pipelines.synthetic.generation import GenerationResult
from pipelines.synthetic.inference import RequestPolicy
from pipelines.synthetic.mix_run import MixConfig, run_mix
from pipelines.synthetic.models import DEFAULT_MODEL, resolve_model
from pipelines.synthetic.preferences_run import PreferencesConfig, run_preferences
from pipelines.synthetic.self_instruct_run import SelfInstructConfig, run_self_instruct
from pipelines.synthetic.serving import Endpoint, ServerConfig, served, server_python
from pipelines.synthetic.wrap_run import WrapConfig, run_wrap


@dataclass
class SynthesisResult:
    results: dict[str, GenerationResult] = field(default_factory=dict)
    server: str = ""  # what served which model, for the summary
    url: str = ""
    server_start_s: float = 0.0
    server_log: str | None = None


@contextmanager
def generator_progress(label: str, unit: str) -> Iterator[Callable[..., None]]:
    """The CLI's progress bar and, inside a flow run, a Prefect progress artifact, fed by one callback."""
    with stage_bar(label, None, unit) as bar:
        artifact = create_progress_artifact(0.0, description=label) if FlowRunContext.get() else None
        state = {"total": None, "shown": 0.0}

        def update(done: float, total: float | None = None) -> None:
            bar(done, total)
            state["total"] = total if total is not None else state["total"]
            now = time.monotonic()
            if artifact is not None and state["total"] and (now - state["shown"] > 2.0 or done >= state["total"]):
                update_progress_artifact(artifact, min(100.0, 100.0 * done / state["total"]))
                state["shown"] = now

        yield update


@task(name="prepare the generation model", cache_policy=NO_CACHE)
def prepare_model(lake_root: str, server: ServerConfig) -> ServerConfig:
    """The server config with its model resolved: the default is converted into the lake on first use."""
    if server.kind == "endpoint":
        return server
    python = server_python(server)
    with stage_bar("prepare model", None, "models"):
        model = resolve_model(Lake.at(lake_root), server.model or DEFAULT_MODEL, python)
    return server.model_copy(update={"model": model, "python": python})


@task(name="WRAP rephrasing", cache_policy=NO_CACHE)
def wrap_task(lake_root: str, endpoint: Endpoint, config: WrapConfig, policy: RequestPolicy) -> GenerationResult:
    with generator_progress("synth wrap", "chunks") as progress:
        return run_wrap(Lake.at(lake_root), endpoint, config, policy, progress)


@task(name="Self-Instruct", cache_policy=NO_CACHE)
def self_instruct_task(lake_root: str, endpoint: Endpoint, config: SelfInstructConfig, policy: RequestPolicy) -> GenerationResult:
    with generator_progress("synth self-instruct", "tasks") as progress:
        return run_self_instruct(Lake.at(lake_root), endpoint, config, policy, progress)


@task(name="preference pairs", cache_policy=NO_CACHE)
def preferences_task(lake_root: str, endpoint: Endpoint, config: PreferencesConfig, policy: RequestPolicy) -> GenerationResult:
    with generator_progress("synth preferences", "prompts") as progress:
        return run_preferences(Lake.at(lake_root), endpoint, config, policy, progress)


@task(name="best-of-n", cache_policy=NO_CACHE)
def best_of_n_task(lake_root: str, endpoint: Endpoint, config: BestOfNConfig, policy: RequestPolicy) -> GenerationResult:
    """Best-of-n scored by `config.reward`'s model, loaded first (a wrong checkpoint fails before any request),
    or by the LLM judge."""
    lake = Lake.at(lake_root)
    reward = None
    if config.reward:
        from model.reward_scoring import reward_scorer  # torch is imported only when a reward model scores

        scorer = reward_scorer(config.reward, lake)
        reward = RewardScoring(scorer.label, scorer)
    with generator_progress("synth best-of-n", "prompts") as progress:
        return run_best_of_n(lake, endpoint, config, policy, reward, progress)


@task(name="pretraining mix", cache_policy=NO_CACHE)
def mix_task(lake_root: str, config: MixConfig) -> GenerationResult:
    return run_mix(Lake.at(lake_root), config)


def summary_rows(result: SynthesisResult) -> list[dict]:
    return [
        {
            "generator": r.generator,
            "rows": r.rows,
            "set aside": r.rejected,
            "out tokens": r.completion_tokens,
            "tok/s": round(r.tokens_per_s, 1),
        }
        for r in result.results.values()
    ]


@flow(name="synthesize", log_prints=True)
def synthesize_flow(
    lake: str | None = None,
    server: ServerConfig | None = None,
    policy: RequestPolicy | None = None,
    wrap: WrapConfig | None = None,
    self_instruct: SelfInstructConfig | None = None,
    preferences: PreferencesConfig | None = None,
    mix: MixConfig | None = None,
    best_of_n: BestOfNConfig | None = None,
) -> SynthesisResult:
    """Generate the synthetic datasets asked for with one server, started once and stopped at the end."""
    root = Lake.at(lake).root
    policy = policy or RequestPolicy()
    result = SynthesisResult()
    if wrap or self_instruct or preferences or best_of_n:
        config = prepare_model(root, server or ServerConfig())
        result.server_log = None if config.kind == "endpoint" else log_path(Lake.at(root), "server")
        with served(config, result.server_log or "") as endpoint:
            result.server = f"{endpoint.kind}, {endpoint.model}"
            result.url = endpoint.url
            if wrap:
                result.results["wrap"] = wrap_task(root, endpoint, wrap, policy)
            if self_instruct:
                result.results["self_instruct"] = self_instruct_task(root, endpoint, self_instruct, policy)
            if preferences:
                result.results["preferences"] = preferences_task(root, endpoint, preferences, policy)
            if best_of_n:
                result.results["best_of_n"] = best_of_n_task(root, endpoint, best_of_n, policy)
            started = endpoint.server.start_seconds if endpoint.server is not None else None
            result.server_start_s = started or 0.0
            if endpoint.server is not None and started is None:
                result.server, result.url, result.server_log = "", "", None  # every generator was done: none started
    if mix:
        result.results["mix"] = mix_task(root, mix)
    rows = summary_rows(result)
    if rows:
        create_table_artifact(
            key="synthetic-summary", table=rows, description=f"{result.server} at {result.url}" if result.server else ""
        )
    for r in result.results.values():
        reasons = ", ".join(f"{k}: {v}" for k, v in r.by_reason.items()) or "none"
        get_run_logger().info(
            f"{r.generator} run {r.run}: {r.rows} rows, {r.rejected} set aside ({reasons}); {r.tokens_per_s:.1f} tok/s"
        )
    return result
