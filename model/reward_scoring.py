"""A trained reward model as best-of-n's scorer: (prompt, response) pairs → one reward each, as training computes it.

Each pair is rendered as the ChatML conversation [user: prompt, assistant: response] with the model's own
tokenizer and chat template (`model.data.render_chat`, as `model.tasks.render_pair` renders each side of
a preference pair), cut to the sequence length the model was trained at, right-padded into a batch
(`value_batch`) and read at each sequence's last real token (`last_values`), as `reward_step` reads it.
Attention is causal, so the padding after a sequence never changes its reward: pairs are batched in
order of length, which pads little, and the scores come back in the order asked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import xxhash

from model.data import DataError, Example, render_chat, value_batch
from model.loading import LoadedModel, load_model
from model.objectives import last_values
from model.tasks import chat_tokenizer
from model.transformer import Transformer
from pipelines.lake import Lake

# transformers' own test for a template that marks the assistant's tokens (`return_assistant_tokens_mask`)
_GENERATION_BLOCK = re.compile(r"\{%-?\s*generation\s*-?%\}")


class NotARewardModel(DataError):
    """The checkpoint has no value head, or no way to render a conversation as its reward loop did."""


@dataclass
class RewardScorer:
    """Rewards of (prompt, response) pairs from one reward model; NaN for a pair whose prompt alone fills
    the model's window (no response token left to read a reward at)."""

    name: str  # the checkpoint as `load_model` names it: run@step, or the folder
    label: str  # the name and a digest of the weights: what best-of-n rows record as their scorer
    model: Transformer
    chat: Any  # the transformers tokenizer with the model's chat template
    max_tokens: int
    batch_size: int

    def __call__(self, pairs: list[tuple[str, str]]) -> list[float]:
        rendered = [render_chat(self.chat, conversation(prompt, response), self.max_tokens) for prompt, response in pairs]
        ready = sorted((i for i, r in enumerate(rendered) if isinstance(r, Example)), key=lambda i: len(rendered[i].ids))
        scores = [math.nan] * len(pairs)
        for start in range(0, len(ready), self.batch_size):
            batch = ready[start : start + self.batch_size]
            for i, value in zip(batch, self.rewards([rendered[i] for i in batch])):
                scores[i] = value
        return scores

    @torch.inference_mode()
    def rewards(self, examples: list[Example]) -> list[float]:
        inputs, lengths = value_batch(examples, self.chat.pad_token_id)
        device = next(self.model.parameters()).device
        return last_values(self.model(inputs.to(device)), lengths.to(device)).float().tolist()


def conversation(prompt: str, response: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def reward_scorer(spec: str, lake: Lake, batch_size: int = 16) -> RewardScorer:
    """The reward model `spec` names (a run, one of its step_N folders, or an HF folder) as a scorer.

    Raises DataError for a name that is no checkpoint (`load_model`), NotARewardModel for a model with a
    language-model head or a tokenizer whose chat template cannot render the reward loop's conversations,
    ValueError for a batch size under 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    loaded = load_model(spec, lake)
    if loaded.head != "value":
        raise NotARewardModel(
            f"{loaded.name} is not a reward model: it has a language-model head, not a value head; "
            "score with a run of `lmforge train reward`, or with the LLM judge (--judge)"
        )
    return RewardScorer(
        name=loaded.name,
        label=f"{loaded.name} (weights {weights_digest(loaded.model)})",
        model=loaded.model,
        chat=reward_chat_tokenizer(loaded.name, loaded.tokenizer),
        max_tokens=trained_length(loaded),
        batch_size=batch_size,
    )


def reward_chat_tokenizer(name: str, folder: Path) -> Any:
    """The model's chat tokenizer as the training loops load it, refused when its template does not mark
    the assistant's turn (the reward loop reads the reward at the end of that turn)."""
    chat = chat_tokenizer(folder)
    if not _GENERATION_BLOCK.search(chat.chat_template):
        raise NotARewardModel(
            f"{name}: the chat template in {folder} does not mark the assistant's turn ({{% generation %}}), "
            "so conversations cannot be rendered as the reward loop rendered them; use a tokenizer from `lmforge tokenizer train`"
        )
    return chat


def trained_length(loaded: LoadedModel) -> int:
    """Where conversations are cut: the run's training length for a run of ours (its rewards were learnt
    on sequences no longer), else the model's window."""
    window = loaded.model.config.max_seq_len
    return min(loaded.record["config"]["seq_len"], window) if loaded.record else window


def weights_digest(model: torch.nn.Module) -> str:
    """A short hash of every parameter's bytes, in name order: which weights scored, whatever their path."""
    digest = xxhash.xxh3_64()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
