"""Preference pairs by an LLM judge: prompts to answer and to judge, the verdict's schema, and pair selection.

Several responses to one instruction are each scored 1..10 by a judge model; the best and the worst make a
(chosen, rejected) pair for the reward model when their scores are far enough apart that the judge's noise
is unlikely to have ordered them. The HTTP side sends these messages and calls `parse_verdict` and `pick_pair`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

# Bump when the matching prompt text changes: rows record the version and resume checkpoints hash it.
JUDGE_PROMPT_VERSION = "judge-v1"
RESPONSE_PROMPT_VERSION = "response-v1"

SCORE_MIN, SCORE_MAX = 1, 10
REASON_MAX_CHARS = 500


class JudgeVerdict(BaseModel):
    """The judge's answer: an integer score in 1..10 and a short, non-empty reason.

    Extra fields are forbidden so that the JSON schema says `additionalProperties: false`, which strict
    structured output requires; `parse_verdict` drops extras before validating, to stay tolerant.
    """

    model_config = ConfigDict(extra="forbid")

    score: int = Field(ge=SCORE_MIN, le=SCORE_MAX)
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=REASON_MAX_CHARS)]

    @field_validator("score", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        # pydantic's lax mode reads true as 1; a judge answering true has not given a score.
        if isinstance(value, bool):
            raise ValueError("score is a boolean, not an integer")
        return value


def response_messages(instruction: str, input: str = "") -> list[dict]:
    """Chat messages asking the model to carry out `instruction` on `input` (if any): one plain user turn, so
    the pairs show how the model answers a user, with no system prompt steering it."""
    content = instruction.strip() if not input.strip() else f"{instruction.strip()}\n\n{input.strip()}"
    return [{"role": "user", "content": content}]


_JUDGE_SYSTEM = "You are a careful, impartial judge of answers written by an AI assistant. You reply with JSON only."

_RUBRIC = """Rate the response to the instruction below on a scale from 1 to 10. Consider:
- helpfulness: does it give the user what they need?
- correctness: are its facts, reasoning and any code or numbers right?
- following the instruction: does it do what was asked, in the form asked, using the input if one is given?
- clarity: is it well organised and easy to read, without needless length?
1 means useless or wrong, 5 means acceptable with clear flaws, 10 means excellent with nothing to improve.
Judge the response on its merits; do not reward length for its own sake."""


def judge_messages(instruction: str, input: str, response: str) -> list[dict]:
    """Chat messages asking the judge for `{"score": int, "reason": str}` about one response, with our rubric
    (helpfulness, correctness, following the instruction, clarity)."""
    parts = [_RUBRIC, f"### Instruction\n{instruction.strip()}"]
    if input.strip():
        parts.append(f"### Input\n{input.strip()}")
    parts.append(f"### Response\n{response.strip()}")
    parts.append(
        'Reply with one JSON object and nothing else: {"score": <integer from 1 to 10>, '
        '"reason": "<one or two sentences explaining the score>"}'
    )
    return [{"role": "system", "content": _JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def judge_response_format() -> dict:
    """The OpenAI/vLLM `response_format` that constrains the judge's answer to a JudgeVerdict."""
    return {
        "type": "json_schema",
        "json_schema": {"name": "judge_verdict", "schema": JudgeVerdict.model_json_schema(), "strict": True},
    }


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


def _find_object(text: str) -> dict | None:
    """The first JSON object in `text`: the whole text, inside ``` fences, or starting at any '{'."""
    candidates = [text.strip(), *(match.group(1).strip() for match in _FENCE.finditer(text))]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for start in (i for i, char in enumerate(candidate) if char == "{"):
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _short(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "verdict"
    if first["type"] == "missing":
        return f"missing field {field!r}"
    if first["type"] in ("greater_than_equal", "less_than_equal"):
        return f"{field} out of range {SCORE_MIN}..{SCORE_MAX}: {first['input']!r}"
    return f"bad {field}: {first['msg']}"


def parse_verdict(text: str) -> JudgeVerdict:
    """The judge's verdict from its answer: a JSON object, bare, in ```json fences, or amid a little text.

    Unknown fields are ignored. Raises ValueError with a short reason: not JSON, a missing field, a score
    out of range or not an integer, an empty or too long reason.
    """
    value = _find_object(text)
    if value is None:
        raise ValueError("not JSON: no JSON object in the judge's answer")
    try:
        return JudgeVerdict.model_validate({key: value[key] for key in JudgeVerdict.model_fields if key in value})
    except ValidationError as error:
        raise ValueError(_short(error)) from None


def pick_pair(scored: Sequence[tuple[str, int]], margin: int) -> tuple[int, int] | None:
    """Indices (chosen, rejected) of the best- and worst-scored of (response, score) pairs, or None.

    None when the gap between their scores is under `margin` or their texts are the same once stripped
    (nothing to prefer). Ties go to the lowest index, so the pair is deterministic. `margin` must be at
    least 1: a pair of equal scores states no preference. Raises ValueError otherwise.
    """
    if margin < 1:
        raise ValueError(f"margin must be at least 1, got {margin}")
    if len(scored) < 2:
        return None
    best = min(range(len(scored)), key=lambda i: (-scored[i][1], i))
    worst = min(range(len(scored)), key=lambda i: (scored[i][1], i))
    if scored[best][1] - scored[worst][1] < margin or scored[best][0].strip() == scored[worst][0].strip():
        return None
    return best, worst
