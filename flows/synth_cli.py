"""`lmforge synth wrap|self-instruct|preferences|mix`: synthetic data from a served model, and the pretraining mix.

Every generating command starts the generation server (or reaches `--url`), runs its generator and
stops the server; the server options are shared. The summary table says rows kept, rows set aside
(with reasons in `lmforge stats`), output tokens and tokens/s.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from flows.console import LakeOption, VerboseOption, fail, out, print_logs, rich_table, running, settings, user_errors

synth_app = typer.Typer(
    help="Synthetic data with a served model (vLLM by default): WRAP rephrasing, Self-Instruct, preference pairs; the mix.",
    no_args_is_help=True,
)

ServerOption = Annotated[str, typer.Option("--server", help="vllm (default, from .venv-vllm) | transformers | endpoint")]
ModelOption = Annotated[
    str,
    typer.Option("--model", help="model folder or hub id (default: SmolLM2-135M-Instruct, offline); endpoint: its model name"),
]
UrlOption = Annotated[
    Optional[str], typer.Option("--url", help="--server endpoint: the server's base URL, e.g. http://host:8000")
]
ApiKeyEnvOption = Annotated[str, typer.Option("--api-key-env", help="--server endpoint: environment variable with the API key")]
PythonOption = Annotated[Optional[str], typer.Option("--server-python", help="Python of the server's venv (default .venv-vllm)")]
ConcurrencyOption = Annotated[int, typer.Option("--concurrency", help="requests in flight")]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="seconds a request may take before it is tried again")]
CompileOption = Annotated[bool, typer.Option("--compile/--eager", help="vLLM: torch.compile (CPU: ~140 s start, ~1.8x tok/s)")]
ParallelOption = Annotated[int, typer.Option("--tensor-parallel", help="vLLM: GPUs per replica")]
ServerArgOption = Annotated[
    Optional[list[str]], typer.Option("--server-arg", help="more server flags, e.g. --server-arg=--data-parallel-size=2 (repeat)")
]
TemperatureOption = Annotated[Optional[float], typer.Option("--temperature", help="sampling temperature")]
MaxTokensOption = Annotated[Optional[int], typer.Option("--max-tokens", help="output tokens per request at most")]
SeedOption = Annotated[int, typer.Option("--seed", help="seeds which documents and examples are chosen")]


def server_settings(
    kind: str, model: str, url: str | None, api_key_env: str, python: str | None, compile_: bool, tp: int, extra: list[str] | None
) -> Any:
    from pipelines.synthetic.models import DEFAULT_MODEL
    from pipelines.synthetic.serving import ServerConfig

    if kind not in ("vllm", "transformers", "endpoint"):
        fail(f"unknown --server {kind!r}: use vllm, transformers or endpoint")
    if kind == "endpoint" and model == DEFAULT_MODEL:
        model = ""  # the endpoint's own (first) model
    return settings(
        ServerConfig,
        kind=kind,
        model=model,
        url=url,
        api_key_env=api_key_env,
        python=python,
        enforce_eager=not compile_,
        tensor_parallel=tp,
        extra_args=extra or [],
    )


def sampling(defaults: Any, temperature: float | None, max_tokens: int | None, seed: int) -> Any:
    values = (
        {"seed": seed}
        | ({"temperature": temperature} if temperature is not None else {})
        | ({"max_tokens": max_tokens} if max_tokens else {})
    )
    return defaults.model_copy(update=values)


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


def synthesize(lake: str | None, verbose: bool, server: Any, concurrency: int, timeout: float, **generators: Any) -> None:
    from flows.synthetic import synthesize_flow
    from pipelines.synthetic.inference import RequestPolicy

    policy = settings(RequestPolicy, concurrency=concurrency, timeout_s=timeout)
    with user_errors(), running(lake, "synth", verbose) as logs:
        result = synthesize_flow(lake, server, policy, **generators)
    print_synthesis(result)
    print_logs(logs)


@synth_app.command("wrap")
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
    temperature: TemperatureOption = None,
    max_tokens: MaxTokensOption = None,
    seed: SeedOption = 0,
    server: ServerOption = "vllm",
    model: ModelOption = "smollm2-135m-instruct",
    url: UrlOption = None,
    api_key_env: ApiKeyEnvOption = "OPENAI_API_KEY",
    server_python: PythonOption = None,
    compile_: CompileOption = False,
    tensor_parallel: ParallelOption = 1,
    server_arg: ServerArgOption = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 300.0,
    verbose: VerboseOption = False,
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
        sampling=sampling(defaults.sampling, temperature, max_tokens, seed),
    )
    where = server_settings(server, model, url, api_key_env, server_python, compile_, tensor_parallel, server_arg)
    synthesize(lake, verbose, where, concurrency, timeout, wrap=config)


@synth_app.command("self-instruct")
def self_instruct(
    lake: LakeOption = None,
    seeds: Annotated[
        Optional[str], typer.Option("--seeds", help="seed tasks, JSONL in Self-Instruct's format (default: ours)")
    ] = None,
    target: Annotated[int, typer.Option(help="instructions to accept")] = 100,
    batch: Annotated[int, typer.Option(help="instruction requests per round")] = 16,
    max_rounds: Annotated[int, typer.Option(help="rounds at most")] = 50,
    threshold: Annotated[float, typer.Option(help="ROUGE-L to the pool at or above which an instruction is rejected")] = 0.7,
    temperature: TemperatureOption = None,
    max_tokens: MaxTokensOption = None,
    seed: SeedOption = 0,
    server: ServerOption = "vllm",
    model: ModelOption = "smollm2-135m-instruct",
    url: UrlOption = None,
    api_key_env: ApiKeyEnvOption = "OPENAI_API_KEY",
    server_python: PythonOption = None,
    compile_: CompileOption = False,
    tensor_parallel: ParallelOption = 1,
    server_arg: ServerArgOption = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 300.0,
    verbose: VerboseOption = False,
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
        sampling=sampling(defaults.sampling, temperature, max_tokens, seed),
    )
    with user_errors():
        from pipelines.synthetic.self_instruct import load_seed_tasks

        load_seed_tasks(config.seed_file)  # a broken seed file is one line before the server starts
    where = server_settings(server, model, url, api_key_env, server_python, compile_, tensor_parallel, server_arg)
    synthesize(lake, verbose, where, concurrency, timeout, self_instruct=config)


@synth_app.command("preferences")
def preferences(
    lake: LakeOption = None,
    instructions: Annotated[
        str, typer.Option(help="a lake dataset or a JSONL/parquet file of instructions")
    ] = "synthetic/self_instruct",
    responses: Annotated[int, typer.Option("--responses", "-k", help="responses per instruction (≥ 2)")] = 2,
    margin: Annotated[int, typer.Option(help="minimum judge-score gap (1-10 scale) between chosen and rejected")] = 2,
    max_prompts: Annotated[Optional[int], typer.Option(help="instructions at most")] = None,
    temperature: TemperatureOption = None,
    max_tokens: MaxTokensOption = None,
    seed: SeedOption = 0,
    server: ServerOption = "vllm",
    model: ModelOption = "smollm2-135m-instruct",
    url: UrlOption = None,
    api_key_env: ApiKeyEnvOption = "OPENAI_API_KEY",
    server_python: PythonOption = None,
    compile_: CompileOption = False,
    tensor_parallel: ParallelOption = 1,
    server_arg: ServerArgOption = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 300.0,
    verbose: VerboseOption = False,
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
        sampling=sampling(defaults.sampling, temperature, max_tokens, seed),
    )
    where = server_settings(server, model, url, api_key_env, server_python, compile_, tensor_parallel, server_arg)
    synthesize(lake, verbose, where, concurrency, timeout, preferences=config)


@synth_app.command("mix")
def mix(
    lake: LakeOption = None,
    ratio: Annotated[str, typer.Option(help="REAL:SYNTHETIC characters (the WRAP paper: 1:1)")] = "1:1",
    seed: SeedOption = 0,
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
