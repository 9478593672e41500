"""`lmforge eval`: bits per byte equal an independent computation with plain transformers, per
language and per held-out split; the report; bad checkpoints and bad aligned text get one clear line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from builders import chat_tokenizer_folder, tokenized_lake
from test_console import lmforge

from model.data import DataError
from model.evaluate import EvalConfig, evaluate_model, gather_texts
from model.export import export_hf
from model.loading import load_model
from model.text_scoring import encode_texts, score_texts
from model.train import TrainConfig, train
from model.transformer import Transformer, preset
from pipelines.common.parallel_text import ParallelTextError
from pipelines.lake import Lake

LINES = {
    "eng_Latn": ["The river runs past the old mill.", "Children read in the village library every evening."],
    "fra_Latn": ["La rivière passe devant le vieux moulin.", "Les enfants lisent à la bibliothèque du village chaque soir."],
    "rus_Cyrl": ["Река течёт мимо старой мельницы.", "Дети читают в деревенской библиотеке каждый вечер."],
}


def aligned_folder(root: Path, lines: dict[str, list[str]] = LINES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for lang, rows in lines.items():
        (root / f"{lang}.txt").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A randomly initialised tiny model exported with a real tokenizer: its numbers are as exact as a trained one's."""
    root = tmp_path_factory.mktemp("export")
    tokenizer = chat_tokenizer_folder(root)
    vocab = len(json.loads((tokenizer / "tokenizer.json").read_text())["model"]["vocab"])
    torch.manual_seed(0)
    return Path(export_hf(Transformer(preset("tiny", vocab, max_seq_len=64)), tokenizer, root / "hf"))


def plain_transformers_bits(folder: Path, texts: list[str], window: int) -> float:
    """-sum(log p)/ln 2/bytes with AutoModelForCausalLM, transformers' strided-perplexity recipe (stride = window/2)."""
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    start = tokenizer.token_to_id("<|endoftext|>")
    nats = 0.0
    for text in texts:
        ids = torch.tensor([start, *tokenizer.encode(text, add_special_tokens=False).ids])
        previous_end = 0
        for begin in range(0, len(ids), window // 2):
            end = min(begin + window, len(ids))
            target_len = end - previous_end
            inputs = ids[begin:end][None]
            labels = inputs.clone()
            labels[:, :-target_len] = -100
            with torch.no_grad():
                loss = model(inputs, labels=labels).loss  # mean over the labels it scores (shifted by one)
            nats += loss.item() * (labels[:, 1:] != -100).sum().item()
            previous_end = end
            if end == len(ids):
                break
    return nats / math.log(2) / sum(len(t.encode()) for t in texts)


@pytest.mark.parametrize("window", [64, 8], ids=["one-window", "strided"])
def test_bits_per_byte_equal_plain_transformers(export, tmp_path, window):
    from tokenizers import Tokenizer

    texts = [line for rows in LINES.values() for line in rows]
    model = load_model(str(export), Lake.at(tmp_path)).model
    ours = score_texts(model, Tokenizer.from_file(str(export / "tokenizer.json")), texts, window)
    assert ours.bits_per_byte() == pytest.approx(plain_transformers_bits(export, texts, window), rel=1e-5)
    assert int(ours.bytes.sum()) == sum(len(t.encode()) for t in texts)


def test_every_token_is_scored_once(export):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(export / "tokenizer.json"))
    texts = [" ".join(LINES["rus_Cyrl"] * 4)]
    model = load_model(str(export), Lake.at(export.parent)).model
    ids = encode_texts(tokenizer, texts)
    for window in (8, 13, 64):
        assert score_texts(model, tokenizer, texts, window).tokens.tolist() == [len(ids[0]) - 1]


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    """A lake with documents, a tokenizer and its tokens, and a short pretraining run on them."""
    lake = tokenized_lake(tmp_path_factory.mktemp("lake"))
    train(
        TrainConfig(objective="pretrain", run="pre", tokenizer="tok", data="documents", seq_len=32, steps=6, eval_every=3), lake
    )
    return lake


def test_a_run_is_evaluated_per_language_on_aligned_text_and_held_out_documents(lake, tmp_path):
    config = EvalConfig(parallel=str(aligned_folder(tmp_path / "flores")))
    texts = gather_texts(lake, config, "tok")
    assert sorted(texts.aligned) == sorted(LINES) and texts.heldout
    assert texts.sources["heldout"]["val_fraction"] == pytest.approx(0.1)  # the fraction the token shards used
    run = load_model("pre", lake)
    report = evaluate_model(lake, run, texts, config)
    exported = evaluate_model(lake, load_model(str(Path(lake.path("checkpoints", "pre", "hf"))), lake), texts, config)
    for part in ("aligned", "heldout"):
        ours, theirs = getattr(report, part), getattr(exported, part)
        assert set(ours) == set(theirs)
        for lang in ours:  # the run's checkpoint and its HF export are the same model
            assert ours[lang].bits_per_byte == pytest.approx(theirs[lang].bits_per_byte, rel=1e-5)
            assert 0 < ours[lang].bits_per_byte < 20
    assert report.aligned["eng_Latn"].bytes == sum(len(line.encode()) for line in LINES["eng_Latn"])
    assert report.premium["eng_Latn"] == 1.0 and report.premium_source
    bits = {lang: s.bits_per_byte * s.bytes for lang, s in report.aligned.items()}
    assert report.content_bits == pytest.approx({lang: b / bits["eng_Latn"] for lang, b in bits.items()})
    assert exported.name == "pre/hf" and report.name == "pre@6"


def test_the_cli_writes_the_report(lake, tmp_path, prefect_harness):
    flores = aligned_folder(tmp_path / "flores")
    done = lmforge("eval", "pre", "--parallel", str(flores), "--lake", lake.root, "--name", "t")
    assert done.returncode == 0, done.stdout + done.stderr
    out = Path(lake.path("reports", "eval", "t"))
    report = json.loads((out / "report.json").read_text())
    [model] = report["models"]
    assert set(model["aligned"]) == set(LINES) and model["heldout"]
    assert {p.name for p in out.glob("*.png")} >= {"premium_and_bpb.png", "aligned_bpb.png", "heldout_bpb.png"}
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="http' not in html
    assert "eng_Latn" in (out / "report.md").read_text()
    assert "pre@6" in done.stdout


def test_a_checkpoint_without_a_tokenizer_is_named(export, tmp_path):
    bare = shutil.copytree(export, tmp_path / "bare")
    (bare / "tokenizer.json").unlink()
    with pytest.raises(DataError, match=r"checkpoint bare has no tokenizer .*tokenizer\.json"):
        load_model(str(bare), Lake.at(tmp_path))


def test_an_unknown_checkpoint_lists_the_runs(lake):
    with pytest.raises(DataError, match=r"no checkpoint 'nope'.*there are: pre"):
        load_model("nope", lake)


def test_bad_aligned_text_is_named(lake, tmp_path):
    misaligned = aligned_folder(tmp_path / "misaligned", {**LINES, "fra_Latn": LINES["fra_Latn"] + ["Une ligne de trop."]})
    with pytest.raises(ParallelTextError, match=r"fra_Latn\.txt has 3"):
        gather_texts(lake, EvalConfig(parallel=str(misaligned), heldout=None))
    flores = aligned_folder(tmp_path / "flores")
    with pytest.raises(ParallelTextError, match=r"no aligned text for deu_Latn .*deu_Latn\.txt"):
        gather_texts(lake, EvalConfig(parallel=str(flores), languages=["eng_Latn", "deu_Latn"], heldout=None))
    english_missing = aligned_folder(tmp_path / "no-english", {k: v for k, v in LINES.items() if k != "eng_Latn"})
    with pytest.raises(DataError, match=r"no eng_Latn\.txt"):
        gather_texts(lake, EvalConfig(parallel=str(english_missing), heldout=None))


def test_sft_and_reward_runs_report_their_own_held_out_data(lake, tmp_path):
    from builders import write_jsonl

    chats = [
        {
            "id": f"c{i}",
            "messages": [{"role": "user", "content": f"Name river {i}."}, {"role": "assistant", "content": f"River {i}."}],
        }
        for i in range(40)
    ]
    pairs = [{"id": f"p{i}", "prompt": f"Name river {i}.", "chosen": f"River {i}.", "rejected": "No."} for i in range(40)]
    shape = dict(tokenizer="tok", seq_len=32, steps=3, eval_every=3, val_fraction=0.25, init="pre")
    train(TrainConfig(objective="sft", run="sft", data=str(write_jsonl(tmp_path / "chats.jsonl", chats)), **shape), lake)
    train(TrainConfig(objective="reward", run="rm", data=str(write_jsonl(tmp_path / "pairs.jsonl", pairs)), **shape), lake)
    config = EvalConfig(heldout=None, parallel=str(aligned_folder(tmp_path / "flores")))
    texts = gather_texts(lake, config)
    sft = evaluate_model(lake, load_model("sft", lake), texts, config)
    assert set(sft.held_out_task) == {"loss", "bpb"} and sft.aligned
    reward = evaluate_model(lake, load_model("rm", lake), texts, config)
    assert set(reward.held_out_task) >= {"accuracy", "margin"} and 0 <= reward.held_out_task["accuracy"] <= 1
    assert not reward.aligned and reward.notes  # no LM head: no bits per byte, and the report says why


def test_an_empty_lake_is_evaluated_on_aligned_text_alone(export, tmp_path):
    empty = Lake.at(tmp_path / "empty")
    config = EvalConfig(parallel=str(aligned_folder(tmp_path / "flores")))
    texts = gather_texts(empty, config)
    assert texts.aligned and not texts.heldout
    with pytest.raises(DataError, match=r"nothing to evaluate on: documents has no held-out documents"):
        gather_texts(empty, EvalConfig())


def test_the_premium_comes_from_the_tokenizer_report_when_it_measured_this_tokenizer(export, tmp_path):
    """A report also holds tiktoken rank files (no tokenizer.json beside them): they never match."""
    lake = Lake.at(tmp_path / "lake")
    rank_file = tmp_path / "tokenizers" / "r50k_base.tiktoken"
    rank_file.parent.mkdir()
    rank_file.write_text("")
    copy = shutil.copytree(export, tmp_path / "elsewhere")  # the same tokenizer.json at another path
    languages = {lang: {"premium": 1.0 + i, "source": "parallel"} for i, lang in enumerate(LINES)}
    report = {
        "tokenizers": {
            "r50k": {"path": str(rank_file), "languages": {}},
            "ours": {"path": str(copy / "tokenizer.json"), "languages": languages},
        }
    }
    folder = Path(lake.path("reports", "tokenizer"))
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report))
    config = EvalConfig(parallel=str(aligned_folder(tmp_path / "flores")), heldout=None)
    evaluated = evaluate_model(lake, load_model(str(export), lake), gather_texts(lake, config), config)
    assert evaluated.premium == {lang: 1.0 + i for i, lang in enumerate(LINES)}
    assert evaluated.premium_source == "tokenizer report"
