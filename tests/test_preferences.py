"""pipelines.synthetic.preferences: prompts, the judge's verdict schema and parsing, and pair selection."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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


def test_response_messages_are_one_user_turn_with_instruction_and_input():
    assert response_messages("Name three rivers.") == [{"role": "user", "content": "Name three rivers."}]
    messages = response_messages("Translate to French.", "Good morning.")
    assert messages == [{"role": "user", "content": "Translate to French.\n\nGood morning."}]
    assert RESPONSE_PROMPT_VERSION == "response-v1" and JUDGE_PROMPT_VERSION == "judge-v1"


def test_judge_messages_hold_the_rubric_and_all_three_texts():
    content = judge_messages("Summarise the text.", "A long text about rivers.", "Rivers flow.")[-1]["content"]
    for needle in ("Summarise the text.", "A long text about rivers.", "Rivers flow.", '"score"', '"reason"'):
        assert needle in content
    for criterion in ("helpfulness", "correctness", "instruction", "clarity", "1 to 10"):
        assert criterion in content
    assert "### Input" not in judge_messages("Name three rivers.", "", "Nile, Amazon, Danube.")[-1]["content"]


def test_response_format_is_strict_json_schema_with_score_bounds():
    response_format = judge_response_format()
    assert response_format["type"] == "json_schema"
    spec = response_format["json_schema"]
    assert spec["name"] == "judge_verdict" and spec["strict"] is True
    schema = spec["schema"]
    assert schema["properties"]["score"] == {**schema["properties"]["score"], "type": "integer", "minimum": 1, "maximum": 10}
    assert schema["properties"]["reason"]["maxLength"] == 500
    assert sorted(schema["required"]) == ["reason", "score"]
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("score", [0, 11, -3])
def test_verdict_rejects_scores_out_of_range(score):
    with pytest.raises(ValidationError):
        JudgeVerdict(score=score, reason="fine")


def test_verdict_reason_must_be_short_and_non_empty():
    assert JudgeVerdict(score=1, reason="x" * 500).score == 1
    for reason in ("", "   ", "x" * 501):
        with pytest.raises(ValidationError):
            JudgeVerdict(score=5, reason=reason)


@pytest.mark.parametrize(
    "answer",
    [
        '{"score": 8, "reason": "Correct and clear."}',
        '```json\n{"score": 8, "reason": "Correct and clear."}\n```',
        'Here is my verdict: {"score": 8, "reason": "Correct and clear."} Thank you.',
        '{"reason": "Correct and clear.", "score": 8, "confidence": 0.9}',  # extra fields are ignored
        '```\n{\n  "score": 8,\n  "reason": "  Correct and clear.  "\n}\n```',
    ],
)
def test_parse_verdict_accepts_plain_fenced_and_surrounded_json(answer):
    assert parse_verdict(answer) == JudgeVerdict(score=8, reason="Correct and clear.")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("The response is great, 9/10.", "not JSON"),
        ('{"score": 9, "reason": "truncated', "not JSON"),
        ("[9, 'great']", "not JSON"),
        ('{"score": 11, "reason": "Too good."}', "out of range"),
        ('{"score": 0, "reason": "Bad."}', "out of range"),
        ('{"score": 7}', "missing field 'reason'"),
        ('{"reason": "No score."}', "missing field 'score'"),
        ('{"score": 6.5, "reason": "Half."}', "bad score"),
        ('{"score": true, "reason": "Yes."}', "bad score"),
        ('{"score": 5, "reason": ""}', "bad reason"),
    ],
)
def test_parse_verdict_rejects_bad_answers_with_a_short_reason(answer, message):
    with pytest.raises(ValueError, match=message):
        parse_verdict(answer)


def test_pick_pair_takes_best_and_worst_when_the_gap_reaches_the_margin():
    scored = [("ok answer", 6), ("great answer", 9), ("poor answer", 3)]
    assert pick_pair(scored, margin=6) == (1, 2)
    assert pick_pair(scored, margin=7) is None


def test_pick_pair_breaks_ties_by_lowest_index():
    scored = [("a", 5), ("b", 9), ("c", 2), ("d", 9), ("e", 2)]
    assert pick_pair(scored, margin=3) == (1, 2)


def test_pick_pair_needs_two_different_texts_and_a_positive_margin():
    assert pick_pair([(" same text ", 9), ("same text", 2)], margin=1) is None
    assert pick_pair([("only one", 9)], margin=1) is None
    assert pick_pair([], margin=1) is None
    with pytest.raises(ValueError, match="margin"):
        pick_pair([("a", 9), ("b", 1)], margin=0)
