"""WRAP over the lake: `documents` → ~300-token chunks → one rephrasing per chunk and style → `synthetic/wrap/style=<style>/`.

Which documents: those in the languages asked for (English by default: the paper rephrased English
web text, and the default model writes English), in a seeded order, up to `max_documents`. Outputs
cut by the token limit, empty after cleaning, or refusals are set aside with their reason, as are
requests that failed for good (an over-long chunk answered 400, a server that stayed down).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.inference.types import InferenceError
from pydantic import BaseModel, Field, field_validator

from pipelines.common.errors import UserError
from pipelines.lake import (
    DOCUMENTS_DEDUP,
    SYNTHETIC_WRAP,
    WRAP_SCHEMA,
    Lake,
    fingerprint,
    listed_runs,
    listed_shards,
    shard_batches,
)
from pipelines.synthetic.generation import GenerationResult, GenerationRun, Progress, Rejection, Sampling, failure, no_progress
from pipelines.synthetic.inference import Generate, RequestPolicy, run_pass
from pipelines.synthetic.models import model_label
from pipelines.synthetic.serving import Endpoint
from pipelines.synthetic.wrap import PROMPT_VERSION, STYLES, chunk_document, clean_rephrase, rephrase_rejection, wrap_messages


class WrapConfig(BaseModel):
    styles: list[str] = Field(default_factory=lambda: list(STYLES))
    chunk_tokens: int = Field(300, ge=16, description="target chunk size in the served model's tokens (the paper: ~300)")
    max_documents: int | None = Field(None, ge=1, description="rephrase at most this many documents (a seeded sample)")
    max_chunks_per_document: int | None = Field(None, ge=1)
    langs: list[str] = Field(
        default_factory=lambda: ["eng_Latn"], description="document languages to rephrase; ['all'] for every one"
    )
    sampling: Sampling = Field(default_factory=lambda: Sampling(temperature=0.7, max_tokens=512))
    dataset: str = DOCUMENTS_DEDUP

    @field_validator("styles")
    @classmethod
    def _known_styles(cls, styles: list[str]) -> list[str]:
        unknown = sorted(set(styles) - set(STYLES))
        if unknown or not styles:
            raise ValueError(f"unknown WRAP style(s) {unknown}: choose from {', '.join(STYLES)}")
        return styles


class Chunk(BaseModel):
    source_id: str
    chunk: int
    lang: str | None
    text: str


def token_counter(model: str) -> Callable[[str], int]:
    """Token counts in the served model's tokenizer when its folder is at hand, else ~4 characters a token."""
    path = Path(model) / "tokenizer.json"
    if path.is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    return lambda text: len(text) // 4 + 1


def selected_documents(lake: Lake, config: WrapConfig) -> list[tuple[str, str | None, str]]:
    """(id, lang, text) of the documents to rephrase: the languages asked for, seeded order, at most `max_documents`
    (kept as they stream by, so a large lake is never held whole)."""
    langs = None if "all" in config.langs else set(config.langs)

    def keyed() -> Iterator[tuple[str, str, str | None, str]]:
        for shard in listed_shards(lake, config.dataset):
            for batch in shard_batches(lake.fs, shard, ["id", "lang", "text"], 4096):
                for id_, lang, text in zip(*(batch.column(c).to_pylist() for c in ("id", "lang", "text"))):
                    if langs is None or lang in langs:
                        yield fingerprint([config.sampling.seed, id_]), id_, lang, text

    items = sorted(keyed()) if config.max_documents is None else heapq.nsmallest(config.max_documents, keyed())
    return [(id_, lang, text) for _, id_, lang, text in items]


def chunks_of(documents: list[tuple[str, str | None, str]], config: WrapConfig, count: Callable[[str], int]) -> list[Chunk]:
    chunks = []
    for id_, lang, text in documents:
        pieces = chunk_document(text, count, config.chunk_tokens)
        chunks += [
            Chunk(source_id=id_, chunk=i, lang=lang, text=p) for i, p in enumerate(pieces[: config.max_chunks_per_document])
        ]
    return chunks


def work_items(chunks: list[Chunk], config: WrapConfig) -> Iterator[Document]:
    sampling = config.sampling.label()
    for c in chunks:
        for style in config.styles:
            id_ = fingerprint([c.source_id, c.chunk, style, PROMPT_VERSION, sampling])
            yield Document(
                text=c.text, id=id_, metadata={"source_id": c.source_id, "chunk": c.chunk, "style": style, "lang": c.lang}
            )


def run_wrap(
    lake: Lake,
    endpoint: Endpoint,
    config: WrapConfig,
    policy: RequestPolicy,
    progress: Progress = no_progress,
) -> GenerationResult:
    """Rephrase the selected documents' chunks in every style; resumable, idempotent (see `generation`)."""
    model = model_label(endpoint.source)
    parameters = {**config.model_dump(), "model": model, "prompt_version": PROMPT_VERSION}
    run = GenerationRun(lake, "wrap", SYNTHETIC_WRAP, parameters, sorted(listed_runs(lake, config.dataset)))
    if run.done():
        return run.finished_result()
    documents = selected_documents(lake, config)
    if not documents:
        langs = ", ".join(config.langs)
        raise UserError(f"no {langs} documents in {config.dataset}: ingest and dedup first, or pick --lang")
    items = list(work_items(chunks_of(documents, config, token_counter(endpoint.source)), config))
    progress(0, len(items))

    async def rollout(document: Document, generate: Generate) -> dict:
        style = document.metadata["style"]
        try:
            answer = await generate(config.sampling.payload(wrap_messages(style, document.text)))
        except InferenceError as e:
            return failure(e)
        return {"text": answer.text, "finish_reason": answer.finish_reason, "n_tokens": answer.usage.get("completion_tokens", 0)}

    passed = run_pass(endpoint, policy, items, rollout, f"{run.work}/rephrase", progress=progress)
    kept, rejected = wrap_rows(items, passed.results, run.run, model, config.sampling.label())
    run.publish(kept, rejected)
    result = run.result(sum(t.num_rows for t in kept.values()), rejected, model)
    result.add(passed)
    return result


def wrap_rows(
    items: list[Document], results: dict[str, dict], run: str, model: str, sampling: str
) -> tuple[dict[str, pa.Table], list[Rejection]]:
    """Kept rephrasings by `style=<style>` partition, and what was set aside with its reason."""
    rows: dict[str, list[dict]] = {}
    rejected: list[Rejection] = []
    for item in items:
        meta, result = item.metadata, results.get(item.id)
        if result is None:  # the pass checks every item has a result; a missing one is a bug, not data
            raise RuntimeError(f"no result for work item {item.id}")
        if "reason" in result:
            rejected.append(Rejection(item.id, result["reason"], result["detail"], meta["source_id"], item.text, meta["lang"]))
            continue
        text = clean_rephrase(result["text"])
        reason = rephrase_rejection(text, result["finish_reason"])
        if reason is not None:
            detail = f"finish_reason={result['finish_reason']}"
            rejected.append(Rejection(item.id, reason, detail, meta["source_id"], result["text"], meta["lang"]))
            continue
        rows.setdefault(f"style={meta['style']}", []).append(
            {
                "id": item.id,
                "source_id": meta["source_id"],
                "chunk": meta["chunk"],
                "style": meta["style"],
                "lang": meta["lang"],
                "text": text,
                "source_text": item.text,
                "n_chars": len(text),
                "n_tokens": result["n_tokens"],
                "finish_reason": result["finish_reason"],
                "model": model,
                "prompt_version": PROMPT_VERSION,
                "sampling": sampling,
                "run": run,
            }
        )
    return {p: pa.Table.from_pylist(r, schema=WRAP_SCHEMA) for p, r in rows.items()}, rejected
