"""The trainer's loops on a tiny real model: pretraining on tokenized lake data, SFT, reward model,
DPO; exact resume, refusals and faults. Every run is the real loop on CPU, a few dozen steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import tokenized_lake, write_jsonl
from safetensors.torch import load_file

from model.checkpoint import CheckpointError, checkpoints
from model.data import DataError, chat_messages, lm_batch, mismatched_pairs, read_sources, render_chat
from model.tasks import load_chat_tokenizer
from model.train import TrainConfig, TrainingError, read_metrics, train
from pipelines.lake import Lake

TOKENIZER = "tok"


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    return tokenized_lake(tmp_path_factory.mktemp("train") / "lake", TOKENIZER)


def chat(question: str, answer: str | None) -> dict:
    turns = [{"role": "user", "content": question}]
    return {"messages": turns + ([{"role": "assistant", "content": answer}] if answer is not None else [])}


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory) -> Path:
    rows = [{"id": f"q{i}", **chat(f"What is {i} plus {i}?", f"It is {2 * i}.")} for i in range(24)]
    rows.append({"id": "no-answer", **chat("Who is there?", None)})
    rows.append({"id": "broken", "messages": "not a conversation"})
    return write_jsonl(tmp_path_factory.mktemp("sft") / "chat.jsonl", rows)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    rows = [
        {"id": f"p{i}", "prompt": f"Name the number after {i}.", "chosen": f"{i + 1}.", "rejected": f"I will not say {i * 3}."}
        for i in range(24)
    ]
    rows.append({"id": "same", "prompt": "Say hi.", "chosen": "Hi.", "rejected": "Hi."})
    return write_jsonl(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", rows)


def pretrain(run: str, **changes) -> TrainConfig:
    values = dict(objective="pretrain", run=run, tokenizer=TOKENIZER, data="documents", seq_len=32, batch_size=4, steps=20)
    values |= dict(warmup=2, eval_every=10, checkpoint_every=5, eval_batches=2, export=False)
    return TrainConfig(**(values | changes))


def losses(lake: Lake, run: str) -> list[tuple[int, float]]:
    return [
        (m["step"], m["loss"]) for m in read_metrics(Path(lake.path("checkpoints", run, "metrics.jsonl"))) if m["kind"] == "train"
    ]


def test_pretraining_lowers_the_loss_and_reports_bits_per_byte_tokens_per_second_and_mfu(lake):
    result = train(pretrain("lm", steps=40, lr=1e-2), lake)
    curve = losses(lake, "lm")
    assert [s for s, _ in curve] == list(range(1, 41))
    assert curve[0][1] == pytest.approx(math.log(400), rel=0.1)  # a fresh model guesses uniformly
    assert np.mean([v for _, v in curve[-5:]]) < curve[0][1] - 0.8
    assert 0 < result.evaluation["bpb"] < 8 and result.evaluation["loss"] < curve[0][1]
    assert result.tokens_per_second > 0 and 0 < result.mfu < 1
    run = Path(result.path)
    assert (run / "loss.png").stat().st_size > 1000
    assert [c.step for c in checkpoints(run)] == [35, 40]  # every 5 steps, the newest two kept
    again = train(pretrain("lm", steps=40, lr=1e-2), lake)  # finished: a rerun is a no-op
    assert again.final == result.final and len(losses(lake, "lm")) == 40


def test_a_run_killed_after_a_checkpoint_resumes_with_the_same_losses_step_for_step(lake):
    train(pretrain("whole"), lake)
    with pytest.raises(TrainingError, match="stopped after step 13"):
        train(pretrain("cut"), lake, until=13)  # as if killed: steps 11-13 are lost with the process
    assert [c.step for c in checkpoints(Path(lake.path("checkpoints", "cut")))] == [5, 10]
    resumed = train(pretrain("cut"), lake)
    assert resumed.resumed_from == 10
    assert losses(lake, "cut") == losses(lake, "whole")  # exactly: same batches, states and RNG
    whole = load_file(lake.path("checkpoints", "whole", "step_000020", "model.safetensors"))
    cut = load_file(lake.path("checkpoints", "cut", "step_000020", "model.safetensors"))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)


def test_resuming_with_a_changed_configuration_is_refused_unless_forced(lake):
    with pytest.raises(TrainingError):
        train(pretrain("changed"), lake, until=6)
    with pytest.raises(TrainingError, match=r"lr changed.*--force"):
        train(pretrain("changed", lr=1e-4), lake)
    assert train(pretrain("changed", lr=1e-4), lake, force=True).resumed_from == 5


def test_a_corrupted_checkpoint_is_refused_and_named(lake):
    with pytest.raises(TrainingError):
        train(pretrain("corrupt"), lake, until=11)
    weights = Path(lake.path("checkpoints", "corrupt", "step_000010", "model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.raises(CheckpointError, match=str(weights)):
        train(pretrain("corrupt"), lake)


def test_an_exploding_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(lake):
    with pytest.raises(TrainingError, match=r"(exploded|not finite) at step (\d+).*last good checkpoint is .*step_0000\d\d") as e:
        train(pretrain("explode", lr=50.0, warmup=0, checkpoint_every=1, grad_clip=1e9, steps=30), lake)
    step = int(next(w for w in str(e.value).split() if w.isdigit()))
    assert [c.step for c in checkpoints(Path(lake.path("checkpoints", "explode")))][-1] == step - 1


def test_a_dataset_shorter_than_one_sequence_and_untokenized_data_are_refused(lake):
    with pytest.raises(DataError, match="fewer than one sequence"):
        train(pretrain("long", seq_len=10_000_000), lake)
    with pytest.raises(DataError, match="lmforge tokenize --tokenizer tok --dataset synthetic/wrap"):
        train(pretrain("wrap", data="documents:1,synthetic/wrap:1"), lake)


def test_sft_takes_loss_on_assistant_tokens_only_and_sets_aside_rows_without_an_answer(lake, sft_file):
    tokenizer = load_chat_tokenizer(lake, TOKENIZER)
    example = render_chat(tokenizer, chat("What is 2 plus 2?", "It is 4.")["messages"], 256)
    inputs, targets = lm_batch([example], tokenizer.pad_token_id)
    trained = targets[targets != -100].tolist()
    assert tokenizer.decode(trained) == "It is 4.<|im_end|>"
    assert render_chat(tokenizer, chat("Who?", None)["messages"], 256) == "no_assistant_turn"

    config = TrainConfig(objective="sft", run="sft", tokenizer=TOKENIZER, data=str(sft_file), seq_len=64, batch_size=4, steps=15)
    result = train(config.model_copy(update=dict(warmup=2, eval_every=5, export=False)), lake)
    assert result.set_aside == {"no_assistant_turn": 1, "malformed_messages": 1}
    aside = [json.loads(line) for line in Path(result.path, "set_aside.jsonl").read_text().splitlines()]
    assert {a["id"] for a in aside} == {f"{sft_file}:no-answer", f"{sft_file}:broken"}
    assert result.evaluation["loss"] < math.log(400) and result.evaluation["bpb"] > 0


def test_sft_sources_name_bundled_seed_tasks_and_pass_over_a_dataset_with_no_rows_yet(lake):
    rows = read_sources(lake, "synthetic/self_instruct, seed-tasks")  # no Self-Instruct run in this lake
    assert len(rows) == 38 and rows[0][0].startswith("seed-tasks:") and chat_messages(rows[0][1])[-1]["role"] == "assistant"
    with pytest.raises(DataError, match=r"synthetic/self_instruct: no rows"):
        read_sources(lake, "synthetic/self_instruct")
    with pytest.raises(DataError, match=r"synthetic/nope: neither a JSONL/parquet file, a lake dataset .* nor one of seed-tasks"):
        read_sources(lake, "synthetic/nope,seed-tasks")


def test_reward_model_and_dpo_train_on_pairs_from_an_sft_run(lake, sft_file, pairs_file):
    base = dict(tokenizer=TOKENIZER, seq_len=64, batch_size=4, warmup=2, eval_every=10, export=False)
    train(TrainConfig(objective="sft", run="sft-base", data=str(sft_file), steps=10, **base), lake)
    reward = train(
        TrainConfig(objective="reward", run="rm", data=str(pairs_file), init="sft-base", steps=30, lr=3e-3, **base), lake
    )
    assert reward.set_aside == {"chosen_equals_rejected": 1}
    assert set(reward.evaluation) == {"loss", "accuracy", "margin"}
    assert reward.evaluation["accuracy"] >= 0.5 and reward.evaluation["loss"] < math.log(2)  # the pairs are easy to tell apart

    dpo = TrainConfig(objective="dpo", run="dpo", data=str(pairs_file), init="sft-base", steps=10, lr=1e-3, **base)
    result = train(dpo, lake)
    first = losses(lake, "dpo")[0][1]
    assert first == pytest.approx(math.log(2), abs=1e-5)  # the policy starts as its reference
    assert result.final["loss"] < first and result.evaluation["margin"] > 0
    with pytest.raises(DataError, match="DPO needs --init"):
        train(dpo.model_copy(update={"init": None, "run": "dpo-alone"}), lake)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ddp_processes_on_gloo_train_what_one_process_accumulating_two_micro_batches_trains(lake):
    """Rank r's micro-batch is the global index (step·accum + micro)·world + r (model/data.py), so 2 ranks
    × accumulation 1 read the batches 1 rank × accumulation 2 reads; DDP's all-reduce averages the two
    gradients as accumulation does, so the weights agree to float rounding."""
    import os
    import subprocess
    import sys

    lmforge = Path(sys.executable).parent / "lmforge"
    options = ["--tokenizer", TOKENIZER, "--seq-len", "32", "--batch-size", "4", "--steps", "6", "--warmup", "2"]
    options += ["--checkpoint-every", "3", "--eval-every", "3", "--no-export", "--lake", lake.root]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    done = subprocess.run(
        [*command, str(lmforge), "train", "pretrain", "ddp", *options],
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pretrain ddp: 6 steps" in done.stdout  # rank 0 alone reports
    single = train(pretrain("single", steps=6, grad_accum=2, checkpoint_every=3, eval_every=3, warmup=2), lake)
    ddp = load_file(lake.path("checkpoints", "ddp", "step_000006", "model.safetensors"))
    one = load_file(str(Path(single.path, "step_000006", "model.safetensors")))
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-4, atol=1e-5)
    assert [round(v, 4) for _, v in losses(lake, "ddp")] == [round(v, 4) for _, v in losses(lake, "single")]


def test_rows_that_all_lack_an_answer_or_pairs_that_are_all_equal_are_one_error_with_the_reasons(lake, tmp_path):
    unanswered = write_jsonl(tmp_path / "q.jsonl", [{"id": f"q{i}", **chat(f"Why {i}?", None)} for i in range(3)])
    with pytest.raises(DataError, match=r"no row left to train on .*set aside: 3 no_assistant_turn"):
        train(TrainConfig(objective="sft", run="empty-sft", tokenizer=TOKENIZER, data=str(unanswered), export=False), lake)
    same = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi", "chosen": "Yo", "rejected": "Yo"}] * 3)
    with pytest.raises(DataError, match=r"set aside: 3 chosen_equals_rejected"):
        train(TrainConfig(objective="reward", run="empty-rm", tokenizer=TOKENIZER, data=str(same), export=False), lake)


def test_mismatched_pairs_keep_held_out_answers_out_of_training():
    rows = [(f"r{i}", {"instruction": f"Question {i}?", "output": f"Answer {i}."}) for i in range(30)]

    def held(pair_id: str) -> bool:
        return int(pair_id.rsplit("r", 1)[1]) % 5 == 0

    pairs = mismatched_pairs(rows, held)
    assert len(pairs) == 30 and all(p["chosen"] != p["rejected"] for p in pairs)
    answers = {side: {a for p in pairs if held(p["id"]) == side for a in (p["chosen"], p["rejected"])} for side in (True, False)}
    assert len(answers[True]) == 6 and not answers[True] & answers[False]
