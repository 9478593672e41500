"""What a model knows, per language, in bits per byte: on aligned text (FLORES layout, one sentence
per line, every language saying the same thing) and on the lake's held-out documents; for an SFT run
also its loss on held-out chats, for a reward model its accuracy on held-out preference pairs.

Bits per byte, not loss per token: a tokenizer that cuts a language into more tokens makes each token
easier to predict, so only a per-byte figure compares models with different tokenizers, and languages
with each other. Beside it stands each language's tokenizer premium (tokens for the same content
relative to English, Petrov et al. 2023): what a language costs and how well the model knows it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
import xxhash
from pydantic import BaseModel, ConfigDict, Field
from tokenizers import Tokenizer

from model.data import DataError
from model.loading import LoadedModel
from model.tasks import pairs_task, sft_task
from model.text_scoring import Scores, encode_texts, score_ids
from model.token_shards import DOCUMENTS_ALIAS, read_tokens_manifest
from model.tokens import TokenizeConfig, lake_tokenizers, val_mask
from pipelines.common.parallel_text import REFERENCE_LANGUAGE, read_parallel_lines
from pipelines.lake import DOCUMENTS_DEDUP, REPORTS, Lake, listed_shards, read_shard, utc_now

Progress = Callable[[int], None]


class EvalConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    parallel: str | None = Field(None, description="a folder of aligned <lang>.txt files (FLORES layout)")
    languages: list[str] | None = Field(None, description="only these languages of the aligned text (each must be there)")
    max_lines: int | None = Field(None, ge=1, description="the first N lines of each aligned file")
    heldout: str | None = Field(DOCUMENTS_ALIAS, description="the lake dataset whose held-out documents are measured")
    val_fraction: float | None = Field(None, gt=0, le=0.5, description="default: the fraction its token shards were split with")
    heldout_bytes: int = Field(200_000, ge=1, description="held-out text per language at most")
    window: int | None = Field(None, ge=8, description="tokens of context at most; default: the model's longest")
    device: str = "auto"


@dataclass
class LanguageScore:
    bits_per_byte: float
    bytes: int
    tokens: int
    texts: int


def pooled_bpb(scores: list[tuple[float, int]]) -> float | None:
    """Bits per byte of several texts together, from each one's (bits per byte, bytes)."""
    nbytes = sum(b for _, b in scores)
    return sum(bpb * b for bpb, b in scores) / nbytes if nbytes else None


@dataclass
class ModelReport:
    name: str
    path: str
    objective: str | None
    head: str
    parameters: int
    tokenizer: str
    aligned: dict[str, LanguageScore] = field(default_factory=dict)
    heldout: dict[str, LanguageScore] = field(default_factory=dict)
    premium: dict[str, float] = field(default_factory=dict)
    premium_source: str | None = None
    # Bits for the same content relative to English (aligned text): per byte, a script of 3-byte
    # characters looks cheap because UTF-8 continuation bytes are nearly free to predict; per sentence
    # it does not (Tsvetkov & Kipnis 2024's information parity, inverted).
    content_bits: dict[str, float] = field(default_factory=dict)
    held_out_task: dict[str, float] = field(default_factory=dict)  # SFT chat loss, or pair accuracy and margin
    notes: list[str] = field(default_factory=list)

    def overall(self, part: str) -> float | None:
        """Bits per byte over all of `part`'s text."""
        return pooled_bpb([(s.bits_per_byte, s.bytes) for s in getattr(self, part).values()])


# --- the texts ------------------------------------------------------------------------------------


@dataclass
class EvalTexts:
    aligned: dict[str, list[str]]  # language → lines
    heldout: dict[str, list[str]]  # language → documents
    sources: dict[str, Any]  # where they came from, for the report


def heldout_fraction(lake: Lake, dataset: str, tokenizer: str | None) -> float:
    """The fraction the dataset's token shards were split with (this tokenizer's, else any), so that
    evaluation reads exactly the documents training never saw; the tokenize default if none."""
    names = sorted(lake_tokenizers(lake), key=lambda name: name != tokenizer)  # this tokenizer's first
    for name in names:
        manifest = read_tokens_manifest(lake, name, dataset)
        if manifest is not None:
            return float(manifest.parameters["val_fraction"])
    return TokenizeConfig.model_fields["val_fraction"].default


def heldout_documents(lake: Lake, dataset: str, fraction: float, max_bytes: int) -> dict[str, list[str]]:
    """The dataset's held-out documents (the tokenize stage's rule, `val_mask`), per language, in id-hash
    order, up to `max_bytes` of text per language; none for a dataset the lake does not hold."""
    source = DOCUMENTS_DEDUP if dataset == DOCUMENTS_ALIAS else dataset
    found: list[tuple[int, str, str]] = []
    for shard in listed_shards(lake, source):
        table = read_shard(lake.fs, shard, columns=["id", "text", "lang"])
        table = table.filter(pc.is_valid(table["text"]))
        keep = val_mask(table["id"].to_pylist(), fraction)
        for doc_id, text, lang in zip(*(table[c].filter(keep).to_pylist() for c in ("id", "text", "lang"))):
            found.append((xxhash.xxh64_intdigest(doc_id.encode()), lang or "und", text))
    per_language: dict[str, list[str]] = {}
    used: dict[str, int] = {}
    for _, lang, text in sorted(found):
        if used.get(lang, 0) < max_bytes:
            per_language.setdefault(lang, []).append(text)
            used[lang] = used.get(lang, 0) + len(text.encode())
    return dict(sorted(per_language.items()))


def gather_texts(lake: Lake, config: EvalConfig, tokenizer: str | None = None) -> EvalTexts:
    """The aligned lines and held-out documents every model of one evaluation is measured on."""
    aligned: dict[str, list[str]] = {}
    sources: dict[str, Any] = {}
    if config.parallel:
        aligned = read_parallel_lines(config.parallel, config.languages)
        if REFERENCE_LANGUAGE not in aligned:
            raise DataError(f"no {REFERENCE_LANGUAGE}.txt in {config.parallel}: the premium is measured against English")
        aligned = {lang: lines[: config.max_lines] for lang, lines in aligned.items()}
        sources["parallel"] = {"folder": config.parallel, "lines": len(aligned[REFERENCE_LANGUAGE])}
    heldout: dict[str, list[str]] = {}
    if config.heldout:
        fraction = config.val_fraction or heldout_fraction(lake, config.heldout, tokenizer)
        heldout = heldout_documents(lake, config.heldout, fraction, config.heldout_bytes)
    if heldout:
        sources["heldout"] = {
            "dataset": config.heldout,
            "val_fraction": fraction,
            "documents": sum(len(d) for d in heldout.values()),
            "max_bytes_per_language": config.heldout_bytes,
        }
    if not aligned and not heldout:
        where = f"{config.heldout} has no held-out documents in {lake.root}" if config.heldout else "no held-out dataset"
        raise DataError(f"nothing to evaluate on: {where}; give aligned text (--parallel) or a lake with documents")
    return EvalTexts(aligned, heldout, sources)


# --- scoring ----------------------------------------------------------------------------------------


def score_languages(
    loaded: LoadedModel, texts: dict[str, list[str]], window: int | None, progress: Progress | None
) -> dict[str, LanguageScore]:
    """Bits per byte per language, all languages' texts scored in one batched pass."""
    tokenizer = Tokenizer.from_file(str(loaded.tokenizer / "tokenizer.json"))
    owners = [lang for lang, items in texts.items() for _ in items]
    flat = [t for items in texts.values() for t in items]
    scores = score_ids(loaded.model, encode_texts(tokenizer, flat), [len(t.encode()) for t in flat], window, progress=progress)
    owners = np.array(owners)
    result = {}
    for lang in texts:
        rows = owners == lang
        own = Scores(scores.nats[rows], scores.tokens[rows], scores.bytes[rows])
        result[lang] = LanguageScore(own.bits_per_byte(), int(own.bytes.sum()), int(own.tokens.sum()), int(rows.sum()))
    return result


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def report_premiums(lake: Lake, tokenizer: Path) -> dict[str, float]:
    """The premiums the tokenizer report measured on aligned text for this tokenizer (the same
    tokenizer.json, wherever it lies), if any. Entries for other kinds (tiktoken rank files) never match."""
    path = Path(lake.path(REPORTS, "tokenizer", "report.json")) if lake.is_local else None
    if path is None or not path.is_file():
        return {}
    sha = file_sha(tokenizer / "tokenizer.json")
    for entry in json.loads(path.read_text()).get("tokenizers", {}).values():
        file = Path(entry.get("path") or "")
        if file.name == "tokenizer.json" and file.is_file() and file_sha(file) == sha:
            return {
                lang: stats["premium"]
                for lang, stats in entry.get("languages", {}).items()
                if stats.get("source") == "parallel" and stats.get("premium") is not None
            }
    return {}


def premiums(lake: Lake, loaded: LoadedModel, aligned: dict[str, LanguageScore]) -> tuple[dict[str, float], str | None]:
    """Each language's premium: the tokenizer report's, else tokens per line here relative to English."""
    reported = report_premiums(lake, loaded.tokenizer)
    if reported and set(aligned) <= set(reported):
        return {lang: reported[lang] for lang in aligned}, "tokenizer report"
    english = aligned.get(REFERENCE_LANGUAGE)
    if not english or not english.tokens:
        return {}, None
    # The tokens scored are the text's own: the separator before each line is context, never scored.
    return {lang: s.tokens / english.tokens for lang, s in aligned.items()}, "measured on the aligned lines"


def content_bits(aligned: dict[str, LanguageScore]) -> dict[str, float]:
    """Each language's total bits on the aligned lines over English's: what the same content costs the model."""
    english = aligned.get(REFERENCE_LANGUAGE)
    if not english or not english.bytes:
        return {}
    bits = {lang: s.bits_per_byte * s.bytes for lang, s in aligned.items()}
    return {lang: b / bits[REFERENCE_LANGUAGE] for lang, b in bits.items()}


def held_out_task(lake: Lake, loaded: LoadedModel) -> dict[str, float]:
    """The run's own held-out split: chat loss and bits per byte on assistant tokens (SFT), or pair
    accuracy and margin (reward model), exactly as the training run evaluated it."""
    if loaded.record is None or loaded.objective not in {"sft", "reward"}:
        return {}
    c = loaded.record["config"]
    build = sft_task if loaded.objective == "sft" else pairs_task
    task = build(lake, c["tokenizer"], c["data"], c["seq_len"], c["batch_size"], c["val_fraction"], c["seed"])
    if not task.eval_batches:
        return {}
    return task.evaluate(loaded.model, task.eval_batches)


def evaluate_model(
    lake: Lake, loaded: LoadedModel, texts: EvalTexts, config: EvalConfig, progress: Progress | None = None
) -> ModelReport:
    report = ModelReport(
        name=loaded.name,
        path=str(loaded.path),
        objective=loaded.objective,
        head=loaded.head,
        parameters=loaded.model.num_params(),
        tokenizer=str(loaded.tokenizer),
    )
    if loaded.head == "lm":
        report.aligned = score_languages(loaded, texts.aligned, config.window, progress) if texts.aligned else {}
        report.heldout = score_languages(loaded, texts.heldout, config.window, progress) if texts.heldout else {}
        report.premium, report.premium_source = premiums(lake, loaded, report.aligned)
        report.content_bits = content_bits(report.aligned)
    else:
        report.notes.append("a reward model has no language-model head: no bits per byte, only its held-out pairs")
    report.held_out_task = held_out_task(lake, loaded)
    return report


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def report_name(names: list[str]) -> str:
    """A folder name for an evaluation of these models: `sample-pretrain-300`, or several joined by `+`."""
    slug = "+".join(re.sub(r"[^A-Za-z0-9._-]+", "-", n).strip("-") for n in names)
    return slug[:120] or "eval"


def report_dict(reports: list[ModelReport], texts: EvalTexts) -> dict[str, Any]:
    return {"created": utc_now(), "sources": texts.sources, "models": [asdict(r) for r in reports]}
