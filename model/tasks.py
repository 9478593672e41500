"""What differs between the four loops, and nothing else: where a micro-batch comes from, its loss,
and what the held-out evaluation reports. `model/train.py` runs any of them with one step function.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, pre_tokenizers

from model.data import (
    DataError,
    Example,
    ExampleData,
    PackedTokens,
    PretrainData,
    SetAside,
    chat_messages,
    eval_windows,
    lm_batch,
    parse_mixture,
    read_sources,
    render_chat,
    split_rows,
    value_batch,
)
from model.objectives import bradley_terry_loss, dpo_loss, last_values, lm_loss, sequence_logprobs, token_nll
from model.token_shards import TokensManifest, open_split, read_tokens_manifest
from pipelines.lake import TOKENIZERS, Lake, fingerprint

Batch = tuple[torch.Tensor, torch.Tensor]
StepFn = Callable[[torch.nn.Module, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class Task:
    train_batch: Callable[[int], Batch]  # global micro-batch index → batch
    step: StepFn  # (model, batch) → (loss, extra metrics)
    eval_batches: list[Batch]
    evaluate: Callable[[torch.nn.Module, list[Batch]], dict[str, float]]
    vocab_size: int
    data: dict[str, Any]  # what was read: recorded in run.json, and compared on resume
    set_aside: list[SetAside] = field(default_factory=list)


def tokenizer_dir(lake: Lake, name: str) -> Path:
    path = Path(lake.path(TOKENIZERS, name))
    if not (path / "tokenizer.json").is_file():
        known = sorted(p.parent.name for p in Path(lake.path(TOKENIZERS)).glob("*/tokenizer.json"))
        raise DataError(f"no tokenizer {name!r} in {lake.path(TOKENIZERS)} (there are: {', '.join(known) or 'none'})")
    return path


def token_bytes(path: Path) -> torch.Tensor:
    """UTF-8 bytes each token stands for (0 for special tokens): the denominator of bits per byte.

    In a byte-level BPE each character of a token's string is one byte; other tokenizers are
    measured by decoding the token alone.
    """
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    sizes = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    for token, i in tokenizer.get_vocab().items():
        if token in special:
            continue
        sizes[i] = len(token) if set(token) <= alphabet else len(tokenizer.decode([i]).encode())
    return torch.from_numpy(sizes)


# --- the step functions -------------------------------------------------------------------------


def lm_step(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    inputs, targets = batch
    return lm_loss(model(inputs), targets), {}


def reward_step(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    inputs, lengths = batch  # chosen rows, then rejected rows
    chosen, rejected = last_values(model(inputs), lengths).float().chunk(2)
    return bradley_terry_loss(chosen, rejected), {
        "accuracy": (chosen > rejected).float().mean(),
        "margin": (chosen - rejected).mean(),
    }


def dpo_step(reference: torch.nn.Module, beta: float) -> StepFn:
    def step(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        inputs, targets = batch
        policy_chosen, policy_rejected = sequence_logprobs(model(inputs), targets).chunk(2)
        with torch.no_grad():
            reference_chosen, reference_rejected = sequence_logprobs(reference(inputs), targets).chunk(2)
        loss, margin = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)
        return loss, {"accuracy": (margin > 0).float().mean(), "margin": margin.mean()}

    return step


# --- held-out evaluation ------------------------------------------------------------------------


@torch.no_grad()
def evaluate_lm(model: torch.nn.Module, batches: list[Batch], sizes: torch.Tensor) -> dict[str, float]:
    """Mean loss per target token and bits per byte (tokenizer-independent) over the held-out batches."""
    nll = count = nbytes = 0.0
    device = next(model.parameters()).device
    sizes = sizes.to(device)  # once, not per batch
    for inputs, targets in batches:
        inputs, targets = inputs.to(device), targets.to(device)
        kept = targets != -100
        nll += token_nll(model(inputs), targets)[kept].sum().item()
        count += kept.sum().item()
        nbytes += sizes[targets[kept]].sum().item()
    return {"loss": nll / max(count, 1), "bpb": nll / (math.log(2) * nbytes) if nbytes else float("nan")}


def evaluate_pairs(step: StepFn) -> Callable[[torch.nn.Module, list[Batch]], dict[str, float]]:
    @torch.no_grad()
    def evaluate(model: torch.nn.Module, batches: list[Batch]) -> dict[str, float]:
        totals: dict[str, float] = {}
        pairs = 0
        device = next(model.parameters()).device
        for batch in batches:
            loss, extra = step(model, tuple(t.to(device) for t in batch))
            n = batch[0].shape[0] // 2
            for key, value in {"loss": loss, **extra}.items():
                totals[key] = totals.get(key, 0.0) + value.item() * n
            pairs += n
        return {key: value / pairs for key, value in totals.items()}

    return evaluate


# --- the four tasks -----------------------------------------------------------------------------


def token_manifest(lake: Lake, tokenizer: str, name: str) -> TokensManifest:
    manifest = read_tokens_manifest(lake, tokenizer, name)
    if manifest is None:
        raise DataError(
            f"no tokens for {name!r} with tokenizer {tokenizer!r}: "
            f"run `lmforge tokenize --tokenizer {tokenizer} --dataset {name}`"
        )
    return manifest


def pretrain_task(
    lake: Lake,
    tokenizer: str,
    mixture: str,
    seq_len: int,
    batch_size: int,
    eval_batches: int,
    seed: int,
    eval_data: str | None = None,
) -> Task:
    """Windows of the mixture's train splits by weight; the held-out evaluation reads the val splits of
    `eval_data` (default: the mixture's datasets), so arms of an ablation can share one held-out text."""
    weights = parse_mixture(mixture)
    manifests = {name: token_manifest(lake, tokenizer, name) for name in weights}
    sources = [PackedTokens(name, [tokens for tokens, _ in open_split(lake, tokenizer, name, "train")]) for name in weights]
    evaluated = list(parse_mixture(eval_data)) if eval_data else list(weights)
    eval_manifests = {name: token_manifest(lake, tokenizer, name) for name in evaluated}
    held_out = [PackedTokens(name, [tokens for tokens, _ in open_split(lake, tokenizer, name, "val")]) for name in evaluated]
    vocab = {m.vocab_size for m in manifests.values()}
    p = np.array(list(weights.values()))
    data = PretrainData(sources, p / p.sum(), seq_len, batch_size, seed)
    sizes = token_bytes(tokenizer_dir(lake, tokenizer))
    batches = eval_windows(held_out, seq_len, batch_size, eval_batches)
    if not batches:
        raise DataError(f"no held-out tokens in {', '.join(evaluated)}: tokenize with a larger --val-fraction")
    described = {"mixture": weights, "tokens": {n: m.run for n, m in manifests.items()}}
    if eval_data:
        described["eval_tokens"] = {n: m.run for n, m in eval_manifests.items()}
    return Task(
        train_batch=data.batch,
        step=lm_step,
        eval_batches=batches,
        evaluate=lambda model, b: evaluate_lm(model, b, sizes),
        vocab_size=vocab.pop(),
        data=described,
    )


def chat_tokenizer(folder: Path) -> Any:
    """The transformers tokenizer of `folder` with its chat template, padding with the end token when it names no pad."""
    from transformers import AutoTokenizer

    chat = AutoTokenizer.from_pretrained(str(folder))
    if not chat.chat_template:
        raise DataError(f"the tokenizer in {folder} has no chat template: SFT and preference pairs need one")
    if chat.pad_token_id is None:
        chat.pad_token = chat.eos_token
    return chat


def load_chat_tokenizer(lake: Lake, tokenizer: str) -> Any:
    return chat_tokenizer(tokenizer_dir(lake, tokenizer))


def _rendered(rows: list[tuple[str, dict]], render: Callable[[dict], Any]) -> tuple[list[tuple[str, Any]], list[SetAside]]:
    kept, aside = [], []
    for key, row in rows:
        result = render(row)
        if isinstance(result, str):
            aside.append(SetAside(key, result, json.dumps(row, default=str)[:500]))
        else:
            kept.append((key, result))
    return kept, aside


def described(source: str, rows: list[tuple[str, dict]], train: list, held: list) -> dict[str, Any]:
    """What a run read, for run.json: a resumed run must read the same rows."""
    fingerprinted = fingerprint([row for _, row in rows])
    return {"source": source, "rows": len(rows), "train": len(train), "held_out": len(held), "fingerprint": fingerprinted}


def sft_task(lake: Lake, tokenizer: str, source: str, seq_len: int, batch_size: int, val_fraction: float, seed: int) -> Task:
    chat = load_chat_tokenizer(lake, tokenizer)
    rows = read_sources(lake, source)
    kept, aside = _rendered(rows, lambda row: render_chat(chat, chat_messages(row), seq_len + 1))
    train, held = split_rows(kept, val_fraction)
    data = ExampleData(train, batch_size, seed, source, tuple(aside))
    pad = chat.pad_token_id
    sizes = token_bytes(tokenizer_dir(lake, tokenizer))
    return Task(
        train_batch=lambda index: lm_batch(data.batch(index), pad),
        step=lm_step,
        eval_batches=[lm_batch(held[i : i + batch_size], pad) for i in range(0, len(held), batch_size)],
        evaluate=lambda model, b: evaluate_lm(model, b, sizes),
        vocab_size=len(chat),
        data=described(source, rows, train, held),
        set_aside=aside,
    )


def render_pair(chat: Any, row: dict, max_tokens: int) -> tuple[Example, Example] | str:
    prompt, chosen, rejected = row.get("prompt"), row.get("chosen"), row.get("rejected")
    if not all(isinstance(x, str) and x.strip() for x in (prompt, chosen, rejected)):
        return "missing_prompt_or_response"
    if chosen.strip() == rejected.strip():
        return "chosen_equals_rejected"
    pair = [
        render_chat(chat, [{"role": "user", "content": prompt}, {"role": "assistant", "content": r}], max_tokens)
        for r in (chosen, rejected)
    ]
    reason = next((p for p in pair if isinstance(p, str)), None)
    return reason or (pair[0], pair[1])


def pairs_task(
    lake: Lake,
    tokenizer: str,
    source: str,
    seq_len: int,
    batch_size: int,
    val_fraction: float,
    seed: int,
    reference: torch.nn.Module | None = None,
    beta: float = 0.1,
) -> Task:
    """Preference pairs for a reward model (no `reference`) or for DPO (against `reference`)."""
    chat = load_chat_tokenizer(lake, tokenizer)
    rows = read_sources(lake, source)
    kept, aside = _rendered(rows, lambda row: render_pair(chat, row, seq_len))
    train, held = split_rows(kept, val_fraction)
    data = ExampleData(train, batch_size, seed, source, tuple(aside))
    pad = chat.pad_token_id

    def collate(pairs: list[tuple[Example, Example]]) -> Batch:
        examples = [c for c, _ in pairs] + [r for _, r in pairs]
        return value_batch(examples, pad) if reference is None else lm_batch(examples, pad)

    step = reward_step if reference is None else dpo_step(reference, beta)
    return Task(
        train_batch=lambda index: collate(data.batch(index)),
        step=step,
        eval_batches=[collate(held[i : i + batch_size]) for i in range(0, len(held), batch_size)],
        evaluate=evaluate_pairs(step),
        vocab_size=len(chat),
        data=described(source, rows, train, held),
        set_aside=aside,
    )
