"""Best-of-n: the scorer's contract, which two of a prompt's candidates it keeps, and why a prompt is set aside.

n responses are sampled for one instruction and each is scored, by a reward model of ours or by the LLM
judge. The best-scored one becomes an SFT example and, with the worst, a preference pair: one row that
both trainers read (`model.data.chat_messages` takes its `messages`, `model.tasks.render_pair` its
`prompt`, `chosen`, `rejected`), which closes the loop from a trained reward model back to data. The
scorer is injected as a plain function, so this layer never imports the model layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# (prompt, response) pairs → one score each, higher is better; NaN where a pair cannot be scored
Scorer = Callable[[list[tuple[str, str]]], list[float]]


@dataclass(frozen=True)
class RewardScoring:
    """A reward model's scorer as the flow hands it in (`model.reward_scoring`). `label` names the weights
    (checkpoint and digest): every row records it, and it is part of the run's identity, so retrained
    weights make a new run instead of passing for the old one."""

    label: str
    score: Scorer


def unusable(text: str, finish_reason: str) -> str | None:
    """Why a response is not scored at all: cut by max_tokens (half an answer is no best answer), or empty."""
    if finish_reason == "length":
        return "truncated"
    if not text.strip():
        return "empty"
    return None


def pick(texts: Sequence[str], scores: Sequence[float | None]) -> tuple[int, int] | str:
    """Indices (best, worst) among the scored candidates (score not None), or why there is no pair.

    Ties go to the lowest index, so the choice is deterministic. The reasons: `too_few_usable` (under two
    scored), `scores_tied` (best and worst equal: the scorer prefers nothing), `identical_texts` (best
    and worst say the same thing once stripped).
    """
    scored = [i for i, score in enumerate(scores) if score is not None]
    if len(scored) < 2:
        return "too_few_usable"
    best = min(scored, key=lambda i: (-scores[i], i))
    worst = min(scored, key=lambda i: (scores[i], i))
    if scores[best] == scores[worst]:
        return "scores_tied"
    if texts[best].strip() == texts[worst].strip():
        return "identical_texts"
    return best, worst


def sft_messages(prompt: str, answer: str) -> list[dict]:
    """The SFT conversation of a kept row: the prompt as the user turn, the best answer as the assistant's."""
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
