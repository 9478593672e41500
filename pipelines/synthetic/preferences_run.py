"""Preference pairs: k responses per instruction, each scored 1-10 by an LLM judge → `synthetic/preferences/`.

Instructions come from a lake dataset with `instruction` (and `input`) columns, Self-Instruct's by
default, or from a JSONL/parquet file with those columns or chat `messages` (the first user turn).
The judge is asked for structured output (vLLM's `response_format` with the verdict's JSON schema,
enforced by xgrammar on the CPU build too) and its answer is still validated with pydantic: a bad
one is asked again (`judge_retries`), then set aside as `judge_invalid`. The best and the worst
response make a pair when their scores differ by at least `margin`; otherwise the instruction is set
aside with the scores, so every instruction ends as a pair or as a reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.inference.types import InferenceError
from pydantic import BaseModel, Field

from pipelines.common.bundled import BUNDLED, bundled_path
from pipelines.common.errors import UserError
from pipelines.common.jsonl import read_jsonl
from pipelines.lake import (
    PREFERENCES_SCHEMA,
    SCHEMAS,
    SYNTHETIC_PREFERENCES,
    Lake,
    fingerprint,
    listed_runs,
    listed_shards,
    read_shard,
)
from pipelines.synthetic.generation import GenerationResult, GenerationRun, Progress, Rejection, Sampling, failure, no_progress
from pipelines.synthetic.inference import Generate, RequestPolicy, run_pass
from pipelines.synthetic.models import model_label
from pipelines.synthetic.preferences import (
    JUDGE_PROMPT_VERSION,
    RESPONSE_PROMPT_VERSION,
    JudgeVerdict,
    judge_messages,
    judge_response_format,
    parse_verdict,
    pick_pair,
    response_messages,
)
from pipelines.synthetic.serving import Endpoint

PROMPT_VERSION = f"{RESPONSE_PROMPT_VERSION}+{JUDGE_PROMPT_VERSION}"


class PreferencesConfig(BaseModel):
    instructions: str = Field(
        "synthetic/self_instruct", description="lake datasets, JSONL/parquet files or seed-tasks, comma-separated"
    )
    responses: int = Field(2, ge=2, description="responses sampled per instruction (k)")
    margin: int = Field(2, ge=1, le=9, description="minimum judge-score gap between chosen and rejected")
    max_prompts: int | None = Field(None, ge=1)
    judge_retries: int = Field(2, ge=0)
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=1.0, top_p=0.95, max_tokens=384))
    judge_sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.0, top_p=1.0, max_tokens=160))


class Prompt(BaseModel):
    id: str
    instruction: str
    input: str = ""


def load_prompts(lake: Lake, sources: str) -> tuple[list[Prompt], list[str]]:
    """The instructions to answer from the comma-separated sources, and what identifies them (each dataset's
    runs, each file's hash). A dataset without rows is passed over when another source has some."""
    prompts, identity = [], []
    for source in (s.strip() for s in sources.split(",") if s.strip()):
        rows, identified = _source_rows(lake, source)
        identity += identified
        for n, row in enumerate(rows):
            instruction, input_ = _instruction_of(row)
            if not instruction:
                raise UserError(f"{source}: row {n + 1} has no instruction (an `instruction` column or a user message)")
            id_ = str(row.get("id") or fingerprint([instruction, input_]))
            prompts.append(Prompt(id=id_, instruction=instruction, input=input_))
    if not prompts:
        raise UserError(
            f"{sources} holds no instructions: run `lmforge synth self-instruct` first, or give --instructions FILE "
            f"(or {', '.join(BUNDLED)}: bundled with lmforge)"
        )
    return prompts, identity


def _source_rows(lake: Lake, source: str) -> tuple[list[dict], list[str]]:
    """One source's rows and identity: a lake dataset, a JSONL/parquet file or a bundled name (`seed-tasks`)."""
    if source in SCHEMAS:
        tables = [read_shard(lake.fs, s) for s in listed_shards(lake, source)]
        return [r for t in tables for r in t.to_pylist()], sorted(listed_runs(lake, source))
    path = Path(bundled_path(source))
    if not path.is_file():
        raise UserError(
            f"{source} is neither a lake dataset ({', '.join(sorted(SCHEMAS))}), a file, nor one of {', '.join(BUNDLED)}"
        )
    rows = pq.read_table(path).to_pylist() if path.suffix == ".parquet" else read_jsonl(path)
    return rows, [f"file:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"]


def _instruction_of(row: dict) -> tuple[str, str]:
    if row.get("instruction"):
        return str(row["instruction"]), str(row.get("input") or "")
    for message in row.get("messages") or []:
        if message.get("role") == "user":
            return str(message.get("content") or ""), ""
    return "", ""


async def judge_verdict(
    document: Document, response: str, generate: Generate, sampling: Sampling, retries: int
) -> JudgeVerdict | str:
    """The judge's verdict on `response` to the item's instruction, asked again up to `retries` times while
    it is not a valid verdict; else what was wrong with the last answer (a string)."""
    messages = judge_messages(document.text, document.metadata["input"], response)
    response_format = judge_response_format()
    problem = ""
    for attempt in range(retries + 1):
        # `user` makes each attempt its own request: the request cache must not replay a bad verdict
        answer = await generate(sampling.payload(messages, response_format=response_format, user=f"judge-{attempt}"))
        try:
            return parse_verdict(answer.text)
        except ValueError as e:
            problem = f"{e} (answer: {answer.text[:200]!r})"
    return problem


def run_preferences(
    lake: Lake, endpoint: Endpoint, config: PreferencesConfig, policy: RequestPolicy, progress: Progress = no_progress
) -> GenerationResult:
    prompts, identity = load_prompts(lake, config.instructions)
    prompts = prompts[: config.max_prompts]
    model = model_label(endpoint.source)
    parameters = {**config.model_dump(), "model": model, "prompt_version": PROMPT_VERSION}
    run = GenerationRun(lake, "preferences", SYNTHETIC_PREFERENCES, parameters, identity)
    if run.done():
        return run.finished_result()
    signature = [PROMPT_VERSION, config.sampling.label(), config.judge_sampling.label(), config.responses]
    items = [
        Document(
            text=p.instruction,
            id=fingerprint([n, p.id, p.instruction, p.input, *signature]),  # n: a file may repeat a prompt or an id
            metadata={"source_id": p.id, "input": p.input},
        )
        for n, p in enumerate(prompts)
    ]
    progress(0, len(items))

    async def judge(document: Document, response: str, generate: Generate) -> dict:
        verdict = await judge_verdict(document, response, generate, config.judge_sampling, config.judge_retries)
        return {"invalid": verdict} if isinstance(verdict, str) else {"score": verdict.score, "reason": verdict.reason}

    async def respond(document: Document, index: int, generate: Generate) -> dict:
        payload = config.sampling.payload(response_messages(document.text, document.metadata["input"]), user=f"response-{index}")
        answer = await generate(payload)
        if answer.finish_reason == "length":
            return {"text": answer.text, "truncated": True}
        return {"text": answer.text, **await judge(document, answer.text, generate)}

    async def rollout(document: Document, generate: Generate) -> dict:
        try:
            scored = await asyncio.gather(*(respond(document, i, generate) for i in range(config.responses)))
        except InferenceError as e:
            return failure(e)
        return {"responses": list(scored)}

    passed = run_pass(endpoint, policy, items, rollout, posixpath.join(run.work, "pairs"), progress=progress)
    rows, rejected = preference_rows(items, passed.results, config, run.run, model)
    run.publish({"": pa.Table.from_pylist(rows, schema=PREFERENCES_SCHEMA)}, rejected)
    result = run.result(len(rows), rejected, model)
    result.add(passed)
    return result


def preference_rows(
    items: list[Document], results: dict[str, dict], config: PreferencesConfig, run: str, model: str
) -> tuple[list[dict], list[Rejection]]:
    rows, rejected = [], []
    for item in items:
        result, source = results[item.id], item.metadata["source_id"]
        if "reason" in result:
            rejected.append(Rejection(item.id, result["reason"], result["detail"], source, item.text))
            continue
        responses = result["responses"]
        invalid = [r["invalid"] for r in responses if "invalid" in r]
        scored = [(r["text"], r["score"]) for r in responses if "score" in r]
        if len(scored) < 2:
            reason = "judge_invalid" if invalid else "responses_truncated"
            detail = (
                invalid[0] if invalid else f"{sum('truncated' in r for r in responses)} of {len(responses)} cut by max_tokens"
            )
            rejected.append(Rejection(item.id, reason, detail, source, item.text))
            continue
        pair = pick_pair(scored, config.margin)
        if pair is None:
            detail = f"scores {[s for _, s in scored]}, margin {config.margin}"
            rejected.append(Rejection(item.id, "gap_below_margin", detail, source, item.text))
            continue
        (chosen, score_chosen), (rejected_text, score_rejected) = scored[pair[0]], scored[pair[1]]
        prompt = item.text if not item.metadata["input"] else f"{item.text}\n\n{item.metadata['input']}"
        rows.append(
            {
                "id": item.id,
                "source_id": source,
                "prompt": prompt,
                "chosen": chosen,
                "rejected": rejected_text,
                "score_chosen": score_chosen,
                "score_rejected": score_rejected,
                "judge": f"{model} ({JUDGE_PROMPT_VERSION})",
                "n_responses": len(responses),
                "model": model,
                "prompt_version": PROMPT_VERSION,
                "sampling": config.sampling.label(),
                "run": run,
            }
        )
    return rows, rejected
