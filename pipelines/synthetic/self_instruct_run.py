"""Self-Instruct over a seed file: rounds of new instructions, the paper's filters, one instance each
→ `synthetic/self_instruct/` as SFT-ready chat `messages`.

Each round asks `batch` times for new instructions, each prompt showing 8 in-context instructions
(6 from the seed tasks, 2 from those generated so far), then filters what came back in a fixed
order: the paper's length, keyword and form rules, then novelty (ROUGE-L < 0.7 against the whole
pool, seeds included). Rounds run until `target` instructions are accepted or `max_rounds` end
(the last round's valid instructions are all kept, so a run may pass its target by part of a round).
Every round is one resumable pass whose prompts depend only on the rounds before it, so a killed
run recomputes the pool from the finished rounds and continues the open one. Then each accepted
instruction is classified (classification or not) and gets one instance, output-first for
classification tasks (the paper's fix for label imbalance), input-first otherwise.
"""

from __future__ import annotations

import random

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.inference.types import InferenceError
from pydantic import BaseModel, Field

from pipelines.lake import SELF_INSTRUCT_SCHEMA, SYNTHETIC_SELF_INSTRUCT, Lake, fingerprint
from pipelines.synthetic.generation import GenerationResult, GenerationRun, Progress, Rejection, Sampling, failure, no_progress
from pipelines.synthetic.inference import Generate, RequestPolicy, run_pass
from pipelines.synthetic.models import model_label
from pipelines.synthetic.self_instruct import (
    PROMPT_VERSION,
    SEED_TASKS,
    Instance,
    NoveltyFilter,
    classification_messages,
    instance_messages,
    instance_rejection,
    instruction_messages,
    instruction_rejection,
    load_seed_tasks,
    parse_instances,
    parse_instructions,
    parse_is_classification,
    sample_in_context,
    to_messages,
)
from pipelines.synthetic.serving import Endpoint


class SelfInstructConfig(BaseModel):
    seed_file: str = str(SEED_TASKS)
    target: int = Field(100, ge=1, description="instructions to accept")
    batch: int = Field(16, ge=1, description="instruction requests per round")
    max_rounds: int = Field(50, ge=1)
    threshold: float = Field(0.7, gt=0.0, le=1.0, description="ROUGE-L at or above which an instruction is too similar")
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.7, top_p=0.5, max_tokens=384))
    instance_sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.0, top_p=1.0, max_tokens=384))


class Accepted(BaseModel):
    instruction: str
    rouge_l_max: float


def round_items(round_: int, seeds: list[str], generated: list[str], config: SelfInstructConfig) -> list[Document]:
    items = []
    for i in range(config.batch):
        rng = random.Random(fingerprint([config.sampling.seed, round_, i]))
        examples = sample_in_context(seeds, generated, rng)
        id_ = fingerprint([round_, i, examples, PROMPT_VERSION, config.sampling.label()])
        items.append(Document(text="\n".join(examples), id=id_, metadata={"examples": examples}))
    return items


def run_self_instruct(
    lake: Lake, endpoint: Endpoint, config: SelfInstructConfig, policy: RequestPolicy, progress: Progress = no_progress
) -> GenerationResult:
    seeds = load_seed_tasks(config.seed_file)
    model = model_label(endpoint.source)
    parameters = {**config.model_dump(exclude={"seed_file"}), "model": model, "prompt_version": PROMPT_VERSION}
    seed_id = fingerprint([t.model_dump() for t in seeds])
    run = GenerationRun(lake, "self_instruct", SYNTHETIC_SELF_INSTRUCT, parameters, [f"seeds:{seed_id}"])
    if run.done():
        return run.finished_result()
    result = run.result(0, [], model)
    rejected: list[Rejection] = []
    accepted = generate_instructions(run, endpoint, config, policy, [t.instruction for t in seeds], rejected, result, progress)
    rows = generate_instances(run, endpoint, config, policy, accepted, rejected, result, progress)
    run.publish({"": pa.Table.from_pylist(rows, schema=SELF_INSTRUCT_SCHEMA)}, rejected)
    final = run.result(len(rows), rejected, model)
    final.requests, final.completion_tokens, final.seconds = result.requests, result.completion_tokens, result.seconds
    final.extra = {"rounds": result.extra.get("rounds", 0), "seed_tasks": len(seeds)}
    return final


def generate_instructions(
    run: GenerationRun,
    endpoint: Endpoint,
    config: SelfInstructConfig,
    policy: RequestPolicy,
    seeds: list[str],
    rejected: list[Rejection],
    result: GenerationResult,
    progress: Progress,
) -> list[Accepted]:
    novelty = NoveltyFilter(config.threshold)
    for s in seeds:
        novelty.add(s)
    accepted: list[Accepted] = []
    progress(0, config.target)

    async def rollout(document: Document, generate: Generate) -> dict:
        try:
            answer = await generate(config.sampling.payload(instruction_messages(document.metadata["examples"])))
        except InferenceError as e:
            return failure(e)
        return {"text": answer.text, "finish_reason": answer.finish_reason}

    for round_ in range(config.max_rounds):
        if len(accepted) >= config.target:
            break
        items = round_items(round_, seeds, [a.instruction for a in accepted], config)
        work = f"{run.work}/round-{round_:04d}"
        passed = run_pass(endpoint, policy, items, rollout, work)
        result.add(passed)
        result.extra["rounds"] = round_ + 1
        answers = passed.results
        for item in items:
            answer = answers[item.id]
            if "reason" in answer:
                rejected.append(Rejection(item.id, answer["reason"], answer["detail"], text=item.text))
                continue
            for n, candidate in enumerate(parse_instructions(answer["text"])):
                candidate_id = fingerprint([item.id, n])
                reason = instruction_rejection(candidate)
                if reason is None:
                    ok, score = novelty.accept(candidate)
                    if ok:
                        accepted.append(Accepted(instruction=candidate, rouge_l_max=score))
                        continue
                    reason = "similar_to_pool"
                    rejected.append(Rejection(candidate_id, reason, f"rouge_l={score:.3f}", text=candidate))
                    continue
                rejected.append(Rejection(candidate_id, reason, None, text=candidate))
        progress(len(accepted), config.target)
    return accepted


def generate_instances(
    run: GenerationRun,
    endpoint: Endpoint,
    config: SelfInstructConfig,
    policy: RequestPolicy,
    accepted: list[Accepted],
    rejected: list[Rejection],
    result: GenerationResult,
    progress: Progress,
) -> list[dict]:
    sampling = config.instance_sampling
    items = [
        Document(
            text=a.instruction,
            id=fingerprint([a.instruction, PROMPT_VERSION, sampling.label()]),
            metadata={"rouge": a.rouge_l_max},
        )
        for a in accepted
    ]
    progress(0, len(items))

    async def rollout(document: Document, generate: Generate) -> dict:
        try:
            verdict = await generate(sampling.payload(classification_messages(document.text), max_tokens=8, temperature=0.0))
            is_classification = bool(parse_is_classification(verdict.text))
            answer = await generate(sampling.payload(instance_messages(document.text, is_classification)))
        except InferenceError as e:
            return failure(e)
        return {"is_classification": is_classification, "text": answer.text, "finish_reason": answer.finish_reason}

    work = f"{run.work}/instances"
    passed = run_pass(endpoint, policy, items, rollout, work, progress=progress)
    result.add(passed)
    answers = passed.results
    rows = []
    for item in items:
        answer = answers[item.id]
        if "reason" in answer:
            rejected.append(Rejection(item.id, answer["reason"], answer["detail"], text=item.text))
            continue
        instance, reason = first_valid(parse_instances(answer["text"], answer["is_classification"]))
        if instance is None:
            rejected.append(Rejection(item.id, reason, f"finish_reason={answer['finish_reason']}", text=answer["text"]))
            continue
        rows.append(
            {
                "id": item.id,
                "instruction": item.text,
                "input": instance.input,
                "output": instance.output,
                "is_classification": answer["is_classification"],
                "rouge_l_max": item.metadata["rouge"],
                "messages": to_messages(item.text, instance),
                "model": model_label(endpoint.source),
                "prompt_version": PROMPT_VERSION,
                "sampling": sampling.label(),
                "run": run.run,
            }
        )
    return rows


def first_valid(instances: list[Instance]) -> tuple[Instance | None, str]:
    """The first instance that passes the paper's instance filters, else why none did."""
    reason = "no_instance_parsed"
    for instance in instances:
        why = instance_rejection(instance)
        if why is None:
            return instance, ""
        reason = why
    return None, reason
