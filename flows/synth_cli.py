"""`lmforge synth wrap|self-instruct|preferences|best-of-n|mix`: synthetic data from a served model, and the pretraining mix.

Every generating command starts the generation server (or reaches `--url`), runs its generator and
stops the server; the server options are shared. The summary table says rows kept, rows set aside
(with reasons in `lmforge stats`), output tokens and tokens/s.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from flows.console import LakeOption, VerboseOption, fail, out, print_logs, rich_table, running, settings, user_errors

synth_app = typer.Typer(
    help="Synthetic data with a served model (vLLM by default): WRAP rephrasing, Self-Instruct, preference pairs, "
    "best-of-n; the mix.",
    no_args_is_help=True,
)


@dataclass
class Generating:
    """What every generating command takes besides its generator's own options: where the lake is, how
    to sample, which server, how requests go, and -v (added to each command by `generating`)."""

    lake: str | None
    temperature: float | None
    max_tokens: int | None
    seed: int
    server: Any  # ServerConfig
    policy: Any  # RequestPolicy
    verbose: bool

    def sampling(self, defaults: Any) -> Any:
        """The generator's default sampling with what the command line changed."""
        values = {"seed": self.seed} | ({"temperature": self.temperature} if self.temperature is not None else {})
        return defaults.model_copy(update=values | ({"max_tokens": self.max_tokens} if self.max_tokens else {}))

    def run(self, **generators: Any) -> None:
        """Run the synthesize flow with these generators, then print its summary."""
        from flows.synthetic import synthesize_flow

        with user_errors(), running(self.lake, "synth", self.verbose) as logs:
            result = synthesize_flow(self.lake, self.server, self.policy, **generators)
        print_synthesis(result)
        print_logs(logs)


SHARED_OPTIONS: list[tuple[str, Any, Any]] = [  # (parameter, annotation, default), after each command's own
    ("temperature", Annotated[Optional[float], typer.Option("--temperature", help="sampling temperature")], None),
    ("max_tokens", Annotated[Optional[int], typer.Option("--max-tokens", help="output tokens per request at most")], None),
    ("seed", Annotated[int, typer.Option("--seed", help="seeds which documents and examples are chosen")], 0),
    ("server", Annotated[str, typer.Option("--server", help="vllm (default, .venv-vllm) | transformers | endpoint")], "vllm"),
    (
        "model",
        Annotated[
            str, typer.Option("--model", help="model folder or hub id (default SmolLM2-135M-Instruct); endpoint: its name")
        ],
        "smollm2-135m-instruct",
    ),
    ("url", Annotated[Optional[str], typer.Option("--url", help="--server endpoint: its base URL, e.g. http://host:8000")], None),
    (
        "api_key_env",
        Annotated[str, typer.Option("--api-key-env", help="--server endpoint: environment variable with the API key")],
        "OPENAI_API_KEY",
    ),
    ("server_python", Annotated[Optional[str], typer.Option("--server-python", help="Python of the server's venv")], None),
    (
        "compile_",
        Annotated[bool, typer.Option("--compile/--eager", help="vLLM: torch.compile (CPU: ~140 s start, ~2x tok/s)")],
        False,
    ),
    ("tensor_parallel", Annotated[int, typer.Option("--tensor-parallel", help="vLLM: GPUs per replica")], 1),
    (
        "server_arg",
        Annotated[
            Optional[list[str]], typer.Option("--server-arg", help="more server flags, e.g. --server-arg=--data-parallel-size=2")
        ],
        None,
    ),
    ("concurrency", Annotated[int, typer.Option("--concurrency", help="requests in flight")], 16),
    ("timeout", Annotated[float, typer.Option("--timeout", help="seconds a request may take before it is tried again")], 300.0),
    ("verbose", VerboseOption, False),
]


def generating(command: Callable[..., None]) -> Callable[..., None]:
    """Give a generating command the shared options (`SHARED_OPTIONS`, written once): Typer sees them in
    its signature after the command's own, and the command receives them as one `Generating`, `run`."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "run"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for name, a, d in SHARED_OPTIONS]

    @functools.wraps(command)
    def with_shared_options(**values: Any) -> None:
        common = {name: values.pop(name) for name, _, _ in SHARED_OPTIONS}
        command(**values, run=generating_settings(values.get("lake"), **common))

    with_shared_options.__signature__ = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared)
    return with_shared_options


def generating_settings(lake: str | None, **o: Any) -> Generating:
    from pipelines.synthetic.inference import RequestPolicy
    from pipelines.synthetic.models import DEFAULT_MODEL
    from pipelines.synthetic.serving import ServerConfig

    if o["server"] not in ("vllm", "transformers", "endpoint"):
        fail(f"unknown --server {o['server']!r}: use vllm, transformers or endpoint")
    model = "" if o["server"] == "endpoint" and o["model"] == DEFAULT_MODEL else o["model"]  # "": the endpoint's own
    server = settings(
        ServerConfig,
        kind=o["server"],
        model=model,
        url=o["url"],
        api_key_env=o["api_key_env"],
        python=o["server_python"],
        enforce_eager=not o["compile_"],
        tensor_parallel=o["tensor_parallel"],
        extra_args=o["server_arg"] or [],
    )
    policy = settings(RequestPolicy, concurrency=o["concurrency"], timeout_s=o["timeout"])
    return Generating(lake, o["temperature"], o["max_tokens"], o["seed"], server, policy, o["verbose"])


def print_synthesis(result: Any) -> None:
    from flows.synthetic import summary_rows

    rows = summary_rows(result)
    ready = f", ready in {result.server_start_s:.0f} s" if result.server_start_s else ""
    title = f"synthetic data ({result.server}{ready})" if result.server else "synthetic data"
    out.print(rich_table(title, list(rows[0]) if rows else ["generator"], [list(r.values()) for r in rows]))
    for r in result.results.values():
        if r.skipped:
            line = "already done: nothing to generate"
        elif r.generator == "mix":
            line = f"real {r.extra['real_chars']:,} chars : synthetic {r.extra['synthetic_chars']:,} chars"
        else:
            reasons = ", ".join(f"{k} {v}" for k, v in r.by_reason.items())
            line = f"{r.requests} requests" + (f"; set aside: {reasons}" if reasons else "")
        out.print(f"{r.generator} run {r.run} → {r.dataset}: {line}", highlight=False, soft_wrap=True)
    if result.url:
        log = f", log {result.server_log}" if result.server_log else ""
        out.print(f"server: {result.url}{log} · set-aside rows: the synthetic_rejected view", highlight=False, soft_wrap=True)


@synth_app.command("wrap")
@generating
def wrap(
    lake: LakeOption = None,
    styles: Annotated[
        Optional[list[str]], typer.Option("--style", help="easy | medium | hard | qa (repeat; default all four)")
    ] = None,
    max_documents: Annotated[Optional[int], typer.Option(help="rephrase at most this many documents (a seeded sample)")] = None,
    max_chunks: Annotated[Optional[int], typer.Option(help="chunks per document at most")] = None,
    chunk_tokens: Annotated[int, typer.Option(help="chunk size in the model's tokens (the paper: ~300)")] = 300,
    langs: Annotated[
        Optional[list[str]], typer.Option("--lang", help="document languages (repeat; default eng_Latn; all)")
    ] = None,
    *,
    run: Generating,
) -> None:
    """Rephrase the lake's documents in the WRAP styles → synthetic/wrap/style=<style>/ (the `wrap` view)."""
    from pipelines.synthetic.wrap_run import WrapConfig

    defaults = WrapConfig()
    config = settings(
        WrapConfig,
        styles=styles or defaults.styles,
        max_documents=max_documents,
        max_chunks_per_document=max_chunks,
        chunk_tokens=chunk_tokens,
        langs=langs or defaults.langs,
        sampling=run.sampling(defaults.sampling),
    )
    run.run(wrap=config)


@synth_app.command("self-instruct")
@generating
def self_instruct(
    lake: LakeOption = None,
    seeds: Annotated[
        Optional[str], typer.Option("--seeds", help="seed tasks, JSONL in Self-Instruct's format (default: ours)")
    ] = None,
    target: Annotated[int, typer.Option(help="instructions to accept")] = 100,
    batch: Annotated[int, typer.Option(help="instruction requests per round")] = 16,
    max_rounds: Annotated[int, typer.Option(help="rounds at most")] = 50,
    threshold: Annotated[float, typer.Option(help="ROUGE-L to the pool at or above which an instruction is rejected")] = 0.7,
    *,
    run: Generating,
) -> None:
    """Self-Instruct from seed tasks → synthetic/self_instruct/ (chat messages for SFT; the `self_instruct` view)."""
    from pipelines.synthetic.self_instruct_run import SelfInstructConfig

    defaults = SelfInstructConfig()
    config = settings(
        SelfInstructConfig,
        **({"seed_file": seeds} if seeds else {}),
        target=target,
        batch=batch,
        max_rounds=max_rounds,
        threshold=threshold,
        sampling=run.sampling(defaults.sampling),
    )
    with user_errors():
        from pipelines.synthetic.self_instruct import load_seed_tasks

        load_seed_tasks(config.seed_file)  # a broken seed file is one line before the server starts
    run.run(self_instruct=config)


@synth_app.command("preferences")
@generating
def preferences(
    lake: LakeOption = None,
    instructions: Annotated[
        str, typer.Option(help="lake datasets, JSONL/parquet files of instructions or seed-tasks (bundled), comma-separated")
    ] = "synthetic/self_instruct",
    responses: Annotated[int, typer.Option("--responses", "-k", help="responses per instruction (≥ 2)")] = 2,
    margin: Annotated[int, typer.Option(help="minimum judge-score gap (1-10 scale) between chosen and rejected")] = 2,
    max_prompts: Annotated[Optional[int], typer.Option(help="instructions at most")] = None,
    *,
    run: Generating,
) -> None:
    """k responses per instruction, judged 1-10 by the model → (chosen, rejected) pairs in synthetic/preferences/."""
    from pipelines.synthetic.preferences_run import PreferencesConfig

    defaults = PreferencesConfig()
    config = settings(
        PreferencesConfig,
        instructions=instructions,
        responses=responses,
        margin=margin,
        max_prompts=max_prompts,
        sampling=run.sampling(defaults.sampling),
    )
    run.run(preferences=config)


@synth_app.command("best-of-n")
@generating
def best_of_n(
    lake: LakeOption = None,
    instructions: Annotated[
        str, typer.Option(help="lake datasets, JSONL/parquet files of instructions or seed-tasks (bundled), comma-separated")
    ] = "synthetic/self_instruct",
    reward: Annotated[
        Optional[str], typer.Option(help="reward model that scores: a run in checkpoints/, a step_N folder or an HF folder")
    ] = None,
    judge: Annotated[bool, typer.Option("--judge", help="score with the served model as judge (1-10) instead")] = False,
    n: Annotated[int, typer.Option("--n", "-n", help="responses sampled per instruction (≥ 2)")] = 4,
    max_prompts: Annotated[Optional[int], typer.Option(help="instructions at most")] = None,
    *,
    run: Generating,
) -> None:
    """n responses per instruction, scored → the best as SFT data and (best, worst) as a pair in synthetic/best_of_n/."""
    from pipelines.synthetic.best_of_n_run import BestOfNConfig

    if (reward is not None) == judge:  # neither, or both
        fail("score with a reward model (--reward CHECKPOINT) or with the LLM judge (--judge): one of the two")
    defaults = BestOfNConfig()
    config = settings(
        BestOfNConfig,
        instructions=instructions,
        n=n,
        reward=reward,
        max_prompts=max_prompts,
        sampling=run.sampling(defaults.sampling),
    )
    run.run(best_of_n=config)


@synth_app.command("mix")
def mix(
    lake: LakeOption = None,
    ratio: Annotated[str, typer.Option(help="REAL:SYNTHETIC characters (the WRAP paper: 1:1)")] = "1:1",
    seed: Annotated[int, typer.Option(help="seeds which rows of the abundant side are taken")] = 0,
    verbose: VerboseOption = False,
) -> None:
    """The pretraining mix of documents and WRAP rephrasings at a ratio → synthetic/mix/ (the `pretrain_mix` view)."""
    from pipelines.synthetic.mix import parse_ratio
    from pipelines.synthetic.mix_run import MixConfig

    try:
        parsed = parse_ratio(ratio)
    except ValueError as e:
        fail(str(e))
    with user_errors(), running(lake, "synth-mix", verbose) as logs:
        from flows.synthetic import synthesize_flow

        result = synthesize_flow(lake, mix=MixConfig(ratio=parsed, seed=seed))
    print_synthesis(result)
    print_logs(logs)
