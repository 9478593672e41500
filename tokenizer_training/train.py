"""Train a byte-level BPE tokenizer on the lake's documents (DESIGN §4), streaming, deterministic.

The result is `tokenizers/<name>/` in the lake: `tokenizer.json` (HF `tokenizers`), the files
`transformers.AutoTokenizer.from_pretrained` reads (with a ChatML chat template) and
`_manifest.json` (data fingerprint, per-language sample, parameters, timing). The folder appears
whole or not at all. The same data and parameters give a byte-identical `tokenizer.json`: the
sample is chosen by id hashes (`sampling`) and HF's BPE trainer breaks ties deterministically.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field, field_validator
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from pipelines.common.errors import UserError
from pipelines.lake import (
    DOCUMENTS_CLEAN,
    DOCUMENTS_DEDUP,
    MANIFEST,
    TOKENIZERS,
    Lake,
    fingerprint,
    listed_shards,
    lmforge_version,
    publish_folder,
    read_manifest,
    utc_now,
)
from tokenizer_training.sampling import Survey, TrainingDataError, plan_sample, stream_texts, survey

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")
BYTE_ALPHABET = 256
MIN_VOCAB = BYTE_ALPHABET + len(SPECIAL_TOKENS)

# GPT-4's (cl100k) split, with one change: numbers split into single digits (`\p{N}`, not
# `\p{N}{1,3}`), as LLaMA and DeepSeek do, so arithmetic sees every digit the same way.
# Pieces: English contractions; a word with at most one leading non-letter (" hello", "¿Qué");
# a digit; punctuation runs with their trailing newlines; newlines; whitespace not followed by a
# word (so " word" keeps its space); any other whitespace.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ChatML. The `{% generation %}` block marks assistant tokens, so transformers'
# `apply_chat_template(..., return_assistant_tokens_mask=True)` gives the SFT loss mask.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- else %}{{- message['content'] + '<|im_end|>' }}{%- endif %}"
    "{{- '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


class TokenizerExistsError(UserError, ValueError):
    """`tokenizers/<name>/` holds a tokenizer trained on other data or with other parameters."""


class TokenizerConfig(BaseModel):
    """What to train. Everything here (with the data fingerprint) names the result."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="folder name under tokenizers/")
    vocab_size: int = Field(le=1_000_000, description="bytes + specials + merges")
    languages: list[str] | None = Field(default=None, description="train on these only (default: every language)")
    alpha: float = Field(default=0.3, ge=0.0, le=1.0, description="language sampling p ∝ n^alpha")
    min_frequency: int = Field(default=2, ge=1, description="a pair merges only if seen this often")
    heldout_fraction: float = Field(default=0.05, gt=0.0, lt=0.5, description="documents per language kept for evaluation")
    max_sample_bytes: int | None = Field(default=None, gt=0, description="sample size (default: the training data's size)")
    dataset: str = Field(default=DOCUMENTS_DEDUP, description="the lake dataset to read")

    @field_validator("vocab_size")
    @classmethod
    def _room_for_bytes(cls, value: int) -> int:
        if value < MIN_VOCAB:
            raise ValueError(
                f"{value} leaves no room: the vocabulary holds all {BYTE_ALPHABET} bytes and "
                f"{len(SPECIAL_TOKENS)} special tokens, so it needs at least {MIN_VOCAB}"
            )
        return value

    @field_validator("languages")
    @classmethod
    def _sorted_languages(cls, value: list[str] | None) -> list[str] | None:
        return sorted(set(value)) if value else None


@dataclass
class TrainResult:
    name: str
    path: str
    vocab_size: int
    manifest: dict[str, Any]
    already_trained: bool = False

    @property
    def languages(self) -> dict[str, dict[str, Any]]:
        """Per language: documents, bytes, weight, sampled bytes, held-out bound (from the manifest)."""
        return self.manifest["languages"]


def tokenizer_dir(lake: Lake, name: str) -> str:
    return lake.path(TOKENIZERS, name)


def build_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE: no normaliser (text must round-trip exactly, and FLORES is not
    all NFC), the split above, then bytes mapped to printable characters."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def bpe_trainer(config: TokenizerConfig) -> trainers.BpeTrainer:
    # All 256 bytes are in the vocabulary from the start, so no character is ever unknown.
    return trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )


def data_fingerprint(lake: Lake, dataset: str, shards: list[str]) -> str:
    """Names the training data: its shards (path within the dataset, size) and the runs that made them."""
    fs, base = lake.fs, lake.path(dataset)
    manifest = read_manifest(lake, dataset)
    return fingerprint(
        {
            "shards": [(posixpath.relpath(s, base) if lake.is_local else s, fs.size(s)) for s in shards],
            "runs": [r.run for r in manifest.runs] if manifest else [],
        }
    )


def _shards(lake: Lake, dataset: str) -> list[str]:
    """The dataset's shards as its manifest lists them (never a killed run's), or why there are none."""
    shards = listed_shards(lake, dataset)
    if not shards:
        hint = (
            "run `lmforge dedup` first"
            if dataset == DOCUMENTS_DEDUP and listed_shards(lake, DOCUMENTS_CLEAN)
            else "run `lmforge ingest` and `lmforge dedup` first"
        )
        raise TrainingDataError(f"no documents in {lake.path(dataset)}: {hint}")
    return shards


def read_tokenizer_manifest(path: str, lake: Lake | None = None) -> dict[str, Any] | None:
    fs = (lake or Lake.at(path)).fs
    target = posixpath.join(path, MANIFEST)
    if not fs.exists(target):
        return None
    with fs.open(target, "rb") as f:
        return json.loads(f.read())


def train_tokenizer(
    lake: Lake,
    config: TokenizerConfig,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train `config.name` on the lake, or return the existing one if data and parameters match.

    Raises TrainingDataError (empty lake, unknown or too small languages) and TokenizerExistsError
    (the name is taken by another training, and `overwrite` is False) before anything is written.
    `progress(bytes_done, bytes_total)` follows the text streamed to the trainer.
    """
    shards = _shards(lake, config.dataset)
    data = data_fingerprint(lake, config.dataset, shards)
    parameters = config.model_dump(exclude={"name"}) | {
        "special_tokens": list(SPECIAL_TOKENS),
        "split_pattern": SPLIT_PATTERN,
        "tokenizers_version": metadata.version("tokenizers"),
    }
    run = fingerprint({"data": data, "parameters": parameters})
    dest = tokenizer_dir(lake, config.name)
    existing = read_tokenizer_manifest(dest, lake)
    if existing is not None and existing.get("run") == run:
        return TrainResult(config.name, dest, existing["vocab_size"], existing, already_trained=True)
    if lake.fs.exists(dest) and not overwrite:
        raise TokenizerExistsError(
            f"{dest} already holds a tokenizer trained on other data or with other parameters; "
            "choose another --name or pass --overwrite"
        )

    found = survey(lake, shards)
    plan = plan_sample(found, config.languages, config.alpha, config.heldout_fraction, config.max_sample_bytes)
    tokenizer = build_tokenizer()
    started = time.perf_counter()
    total = plan.sampled_bytes
    texts = stream_texts(lake, found, plan.copies, progress=(lambda done: progress(done, total)) if progress else None)
    tokenizer.train_from_iterator(texts, bpe_trainer(config), length=plan.sampled_documents)
    seconds = time.perf_counter() - started

    manifest = {
        "name": config.name,
        "run": run,
        "created": utc_now(),
        "lmforge_version": lmforge_version(),
        "vocab_size": tokenizer.get_vocab_size(),
        "parameters": parameters,
        "data": _data_record(lake, config.dataset, shards, data, found),
        "sample": {"budget_bytes": plan.budget_bytes, "documents": plan.sampled_documents, "bytes": total},
        "languages": {lang: s.as_json() for lang, s in plan.languages.items()},
        "skipped_languages": plan.skipped,
        "training_seconds": round(seconds, 3),
        "megabytes_per_second": round(total / 1e6 / seconds, 3) if seconds else None,
    }
    _write_folder(lake, dest, tokenizer, manifest)
    return TrainResult(config.name, dest, manifest["vocab_size"], manifest)


def _data_record(lake: Lake, dataset: str, shards: list[str], data: str, found: Survey) -> dict[str, Any]:
    return {
        "lake": lake.root,
        "dataset": dataset,
        "fingerprint": data,
        "shards": len(shards),
        "documents": found.documents,
        "bytes": int(found.sizes.sum()),
    }


def _write_folder(lake: Lake, dest: str, tokenizer: Tokenizer, manifest: dict[str, Any]) -> None:
    """Write every file into a local temporary folder, then publish it whole."""
    with tempfile.TemporaryDirectory(prefix="lmforge-tokenizer-") as tmp:
        os.chmod(tmp, 0o755)  # the temporary folder is private; the published one is not
        save_transformers_folder(tokenizer, tmp)
        manifest["files"] = {
            name: hashlib.sha256(Path(tmp, name).read_bytes()).hexdigest() for name in sorted(os.listdir(tmp))
        }
        Path(tmp, MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        publish_folder(lake.fs, tmp, dest)


def save_transformers_folder(tokenizer: Tokenizer, folder: str) -> None:
    """`tokenizer.json` plus what `AutoTokenizer.from_pretrained` reads: the config and the ChatML template.

    Written by hand rather than through transformers' `save_pretrained`: importing transformers
    would add ~100 MB to the training process (the benchmark holds us to the raw trainer's peak
    RSS), and save_pretrained rewrites tokenizer.json with a post-processor of its own. The
    config uses the keys transformers 4.x and 5.x both read; the test loads it with AutoTokenizer.
    """
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": SPECIAL_TOKENS[0],
        "pad_token": SPECIAL_TOKENS[3],
        "unk_token": None,
        "additional_special_tokens": list(SPECIAL_TOKENS[1:3]),
        "clean_up_tokenization_spaces": False,
        "chat_template": CHATML_TEMPLATE,
    }
    Path(folder, "tokenizer.json").write_text(tokenizer.to_str(pretty=True))
    Path(folder, "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    Path(folder, "chat_template.jinja").write_text(CHATML_TEMPLATE)
