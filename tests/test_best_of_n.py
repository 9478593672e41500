"""Best-of-n against the real vLLM server (CPU build, SmolLM2-135M), scored by a tiny reward model trained here
or by the LLM judge: every instruction ends as a row (the best as SFT data, best and worst as a pair, every
candidate and score recorded) or as a reason; the reward scorer reads a reward exactly as training does."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from builders import chat_tokenizer_folder, flow_run_artifacts, write_jsonl
from test_console import lmforge
from typer.testing import CliRunner

from flows.cli import app
from model.data import Example, chat_messages, render_chat
from model.reward_scoring import NotARewardModel, reward_scorer
from model.tasks import load_chat_tokenizer, render_pair
from model.train import TrainConfig, train
from pipelines.common.errors import UserError
from pipelines.lake import SYNTHETIC_BEST_OF_N, SYNTHETIC_REJECTED, TOKENIZERS, Lake, listed_shards
from pipelines.lake.catalog import query, stats
from pipelines.synthetic.best_of_n import RewardScoring, pick
from pipelines.synthetic.best_of_n_run import BestOfNConfig, run_best_of_n
from pipelines.synthetic.generation import Sampling
from pipelines.synthetic.inference import RequestPolicy
from pipelines.synthetic.preferences_run import load_prompts
from pipelines.synthetic.serving import Endpoint

TOKENIZER = "tok"
SEQ_LEN = 128
POLICY = RequestPolicy(concurrency=8, timeout_s=120)
NOWHERE = Endpoint("http://127.0.0.1:9", "none", "endpoint", source="none")  # for runs refused before any request


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    """A lake with a chat tokenizer, a tiny reward model `rm` (the right number beats a refusal) and a tiny
    SFT model `lm`, each trained here in a few seconds."""
    root = tmp_path_factory.mktemp("best-of-n")
    lake = Lake.at(root / "lake")
    folder = Path(lake.path(TOKENIZERS, TOKENIZER))
    folder.mkdir(parents=True)
    chat_tokenizer_folder(folder)
    pairs = [
        {"id": f"p{i}", "prompt": f"Name the number after {i}.", "chosen": f"{i + 1}.", "rejected": f"I will not say {i * 3}."}
        for i in range(16)
    ]
    chats = [
        {"id": f"c{i}", "messages": [{"role": "user", "content": f"{i}?"}, {"role": "assistant", "content": f"{i}"}]}
        for i in range(8)
    ]
    base = dict(tokenizer=TOKENIZER, seq_len=SEQ_LEN, batch_size=4, warmup=2, eval_every=100, export=False)
    train(TrainConfig(objective="reward", run="rm", data=str(write_jsonl(root / "pairs.jsonl", pairs)), steps=24, **base), lake)
    train(TrainConfig(objective="sft", run="lm", data=str(write_jsonl(root / "chats.jsonl", chats)), steps=2, **base), lake)
    return lake


def rows(lake: Lake, dataset: str) -> list[dict]:
    return [r for s in listed_shards(lake, dataset) for r in pq.read_table(s).to_pylist()]


def instructions_file(path: Path, rows: list[dict]) -> str:
    return str(write_jsonl(path, rows))


def scoring(spec: str, lake: Lake) -> RewardScoring:
    scorer = reward_scorer(spec, lake)
    return RewardScoring(scorer.label, scorer)


def test_pick_takes_the_best_and_worst_scored_or_says_why_not():
    assert pick(["a", "b", "c", "d"], [0.5, None, 2.0, -1.0]) == (2, 3)
    assert pick(["a", "b", "c"], [1.0, 1.0, 0.0]) == (0, 2)  # ties to the lowest index
    assert pick(["a", "b"], [1.0, None]) == "too_few_usable"
    assert pick(["a", "b"], [0.3, 0.3]) == "scores_tied"
    assert pick([" same ", "same"], [2.0, 1.0]) == "identical_texts"


def test_the_reward_scorer_reads_each_reward_as_training_does(lake):
    """Rendered with the trainer's chat tokenizer and read at the last token by a plain forward pass, one
    pair at a time: the batched, length-sorted scorer gives the same rewards, in the order asked."""
    scorer = reward_scorer("rm", lake, batch_size=2)
    pairs = [
        ("Name the number after 3.", "4."),
        ("Say hello to the village library.", "Hello, library! " * 12),
        ("Name the number after 3.", "I will not say 9."),
        ("Why? " * 200, "Because."),  # the prompt alone fills the 128-token window: no reward to read
    ]
    scores = scorer(pairs)
    chat, model = load_chat_tokenizer(lake, TOKENIZER), scorer.model
    for (prompt, response), score in zip(pairs[:3], scores):
        example = render_chat(chat, [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], SEQ_LEN)
        with torch.no_grad():
            direct = model(torch.from_numpy(example.ids)[None])[0, -1].item()
        assert score == pytest.approx(direct, abs=1e-5)
    assert math.isnan(scores[3])
    assert scores[0] > scores[2]  # what it was trained on: the right number over a refusal
    assert scorer.name == "rm@24" and scorer.label.startswith("rm@24 (weights ")


def test_a_checkpoint_without_a_value_head_is_not_a_reward_model(lake):
    with pytest.raises(NotARewardModel, match=r"lm@2 is not a reward model: it has a language-model head"):
        reward_scorer("lm", lake)
    with pytest.raises(UserError, match=r"no checkpoint 'nope'.*there are: lm, rm"):
        reward_scorer("nope", lake)


def test_best_of_n_keeps_the_best_as_sft_data_and_best_and_worst_as_a_pair(lake, tmp_path, generation_server):
    source = instructions_file(
        tmp_path / "instructions.jsonl",
        [
            {"id": "sky", "instruction": "What color is the sky on a clear day? Answer in one sentence."},
            {"id": "french", "instruction": "Translate to French.", "input": "Good morning"},
            {"id": "tip", "messages": [{"role": "user", "content": "Give one short tip for sleeping better."}]},
            {"id": "long", "instruction": "Summarise this. " + "The quick brown fox jumps over the lazy dog. " * 400},
        ],
    )
    reward = scoring("rm", lake)
    config = BestOfNConfig(instructions=source, n=3, reward="rm", sampling=Sampling(temperature=1.0, max_tokens=96))
    result = run_best_of_n(lake, generation_server, config, POLICY, reward)

    kept, rejected = rows(lake, SYNTHETIC_BEST_OF_N), rows(lake, SYNTHETIC_REJECTED)
    assert len(kept) + len(rejected) == 4 == result.rows + result.rejected
    assert {r["source"]: r["reason"] for r in rejected}["long"] == "bad_request"  # over the server's 2048 tokens
    assert {r["reason"] for r in rejected} <= {"bad_request", "too_few_usable", "scores_tied", "identical_texts"}
    assert all(r["step"] == "best_of_n" and r["detail"] for r in rejected)
    assert kept, f"no instruction kept a pair: {[(r['reason'], r['detail']) for r in rejected]}"
    chat = load_chat_tokenizer(lake, TOKENIZER)
    for r in kept:
        assert r["n"] == 3 and len(r["candidates"]) == len(r["scores"]) == len(r["finish_reasons"]) == 3  # every candidate
        scored = [(text, score) for text, score in zip(r["candidates"], r["scores"]) if score is not None]
        assert all(score is None for score, why in zip(r["scores"], r["finish_reasons"]) if why == "length")
        assert r["score_chosen"] == max(s for _, s in scored) > r["score_rejected"] == min(s for _, s in scored)
        assert (r["chosen"], r["score_chosen"]) in scored and (r["rejected"], r["score_rejected"]) in scored
        assert reward.score([(r["prompt"], text) for text, _ in scored]) == pytest.approx([s for _, s in scored], abs=1e-5)
        assert r["scorer"] == reward.label and r["prompt_version"] == "response-v1"
        assert r["model"].startswith("SmolLM2-135M-Instruct") and json.loads(r["sampling"])["max_tokens"] == 96
        # what the trainer reads: the best answer as SFT, (chosen, rejected) as a preference pair
        assert chat_messages(r) == [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["chosen"]}]
        assert isinstance(render_chat(chat, chat_messages(r), SEQ_LEN), Example)
        assert isinstance(render_pair(chat, r, SEQ_LEN), tuple)
    prompts = {r["source_id"]: r["prompt"] for r in kept} | {r["source"]: r["text"] for r in rejected}
    assert prompts["french"] == "Translate to French.\n\nGood morning"  # the user turn as sent: instruction, then input
    assert prompts["tip"] == "Give one short tip for sleeping better."  # a chat row's first user message
    assert query(lake, "SELECT count(*) FROM best_of_n").rows[0][0] == len(kept)
    assert ("best_of_n", "best of 3", len(kept)) in [r[:3] for r in stats(lake)["synthetic data"].rows]

    again = run_best_of_n(lake, generation_server, config, POLICY, reward)
    assert again.skipped and again.run == result.run and rows(lake, SYNTHETIC_BEST_OF_N) == kept


def test_a_run_that_dies_while_scoring_resumes_without_asking_again(lake, tmp_path, generation_server):
    source = instructions_file(tmp_path / "two.jsonl", [{"instruction": "Name a fruit."}, {"instruction": "Name a river."}])
    reward = scoring("rm", lake)
    config = BestOfNConfig(instructions=source, n=2, reward="rm", sampling=Sampling(max_tokens=64))

    def dies(pairs: list[tuple[str, str]]) -> list[float]:
        raise MemoryError("killed while scoring")

    before = listed_shards(lake, SYNTHETIC_BEST_OF_N)
    with pytest.raises(MemoryError):
        run_best_of_n(lake, generation_server, config, POLICY, RewardScoring(reward.label, dies))
    assert listed_shards(lake, SYNTHETIC_BEST_OF_N) == before  # nothing published
    resumed = run_best_of_n(lake, generation_server, config, POLICY, reward)
    assert resumed.requests == 0  # every response replayed from the pass's checkpoint
    assert resumed.rows + resumed.rejected == 2


def test_the_judge_scores_each_candidate_one_to_ten(tmp_path, generation_server):
    """SmolLM2-135M mostly gives every answer the same score, so the prompt may well be set aside as tied:
    the plumbing is what is tested here (README: a bigger judge gives the signal)."""
    lake = Lake.at(tmp_path / "lake")
    source = instructions_file(tmp_path / "i.jsonl", [{"instruction": "Name a fruit."}])
    config = BestOfNConfig(instructions=source, n=2, judge_retries=0, sampling=Sampling(temperature=1.0, max_tokens=64))
    result = run_best_of_n(lake, generation_server, config, POLICY)

    kept, rejected = rows(lake, SYNTHETIC_BEST_OF_N), rows(lake, SYNTHETIC_REJECTED)
    assert len(kept) + len(rejected) == 1 == result.rows + result.rejected
    assert result.requests >= 2  # two responses, and a verdict for each one that was not cut short
    for r in kept:
        assert all(s is None or (1 <= s <= 10 and s == int(s)) for s in r["scores"])
        assert r["score_chosen"] > r["score_rejected"] and r["scorer"].endswith("(judge-v1)")
        assert r["prompt_version"] == "response-v1+judge-v1"
    for r in rejected:
        assert r["reason"] in ("too_few_usable", "scores_tied", "identical_texts") and r["detail"].startswith("2 asked: ")


def test_unreadable_instructions_are_one_clear_error(lake, tmp_path):
    known = r"synthetic/nope is neither a lake dataset \(.*synthetic/self_instruct.*\), a file, nor one of seed-tasks"
    with pytest.raises(UserError, match=known):
        run_best_of_n(lake, NOWHERE, BestOfNConfig(instructions="synthetic/nope"), POLICY)
    texts = instructions_file(tmp_path / "texts.jsonl", [{"text": "Just a document, no task."}])
    with pytest.raises(UserError, match=r"row 1 has no instruction"):
        run_best_of_n(lake, NOWHERE, BestOfNConfig(instructions=texts), POLICY)
    with pytest.raises(UserError, match=r"synthetic/self_instruct holds no instructions"):
        run_best_of_n(lake, NOWHERE, BestOfNConfig(), POLICY)
    prompts, identity = load_prompts(lake, "synthetic/self_instruct,seed-tasks")  # the bundled seeds when it has none
    assert len(prompts) == 38 and len(identity) == 1 and identity[0].startswith("file:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--judge", "--n", "1"], "n: Input should be greater than or equal to 2"),
        ([], "score with a reward model (--reward CHECKPOINT) or with the LLM judge (--judge)"),
        (["--judge", "--reward", "rm"], "one of the two"),
    ],
)
def test_bad_options_are_one_line(tmp_path, args, message):
    result = CliRunner().invoke(app, ["synth", "best-of-n", "--lake", str(tmp_path / "lake"), *args])
    assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output


def test_a_language_model_as_reward_is_one_line_before_any_request(lake, generation_server, prefect_harness):
    endpoint = ["--server", "endpoint", "--url", generation_server.url]
    result = lmforge("synth", "best-of-n", "--lake", lake.root, "--reward", "lm", *endpoint)
    assert result.returncode == 1 and "Traceback" not in result.stdout
    assert "lm@2 is not a reward model" in " ".join(result.stdout.split()), result.stdout


def test_the_flow_publishes_progress_and_a_summary(lake, tmp_path, generation_server, prefect_harness):
    from flows.synthetic import synthesize_flow
    from pipelines.synthetic.serving import ServerConfig

    source = instructions_file(tmp_path / "i.jsonl", [{"instruction": "Name a color."}])
    config = BestOfNConfig(instructions=source, n=2, reward="rm", sampling=Sampling(max_tokens=32))
    server = ServerConfig(kind="endpoint", url=generation_server.url)
    state = synthesize_flow(lake.root, server, POLICY, best_of_n=config, return_state=True)
    result = state.result().results["best_of_n"]
    assert result.rows + result.rejected == 1
    published = flow_run_artifacts(state)
    progress = [a for a in published if a.type == "progress"]
    assert progress and float(progress[0].data) == 100.0 and progress[0].description == "synth best-of-n"
    (summary,) = [a for a in published if a.key == "synthetic-summary"]
    table = json.loads(summary.data) if isinstance(summary.data, str) else summary.data
    assert table[0]["generator"] == "best_of_n" and table[0]["rows"] == result.rows
