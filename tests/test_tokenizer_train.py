"""Tokenizer training: streaming from the lake, temperature sampling, determinism, the saved folder, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from builders import LANGS, PROSE, document_rows, documents_lake
from pydantic import ValidationError
from tokenizers import Tokenizer

from pipelines.lake import DOCUMENTS_CLEAN, DOCUMENTS_DEDUP, TOKENIZERS, Lake
from tokenizer_training.sampling import TrainingDataError, plan_sample, survey
from tokenizer_training.train import (
    CHATML_TEMPLATE,
    MIN_VOCAB,
    SPECIAL_TOKENS,
    TokenizerConfig,
    TokenizerExistsError,
    train_tokenizer,
)

FLORES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "flores200-dev"
needs_flores = pytest.mark.skipif(not FLORES.is_dir(), reason="needs ../shared/data/flores200-dev (the team's test data)")


@pytest.fixture
def lake(tmp_path) -> Lake:
    return documents_lake(tmp_path / "lake", {"eng_Latn": 120, "fra_Latn": 60, "deu_Latn": 30, "jpn_Jpan": 12})


def train(lake: Lake, name: str = "tok", **settings) -> object:
    return train_tokenizer(lake, TokenizerConfig(name=name, **({"vocab_size": 400} | settings)))


def test_alpha_one_keeps_the_natural_mix_and_alpha_zero_gives_each_language_the_same_share(lake):
    natural = train(lake, "natural", alpha=1.0).manifest
    uniform = train(lake, "uniform", alpha=0.0).manifest
    budget = natural["sample"]["budget_bytes"]
    assert uniform["sample"]["budget_bytes"] == budget  # same total: the training text's size
    sizes = {d["id"]: len(d["text"].encode()) for lang in LANGS for d in document_rows(lang, 120)}
    largest = max(sizes.values())
    for lang, s in natural["languages"].items():
        train_bytes = s["bytes"] - s["heldout_bytes"]
        assert (s["repeats"], s["sampled_bytes"]) == (1, train_bytes)  # every training document, once
        assert s["weight"] == pytest.approx(train_bytes / budget, abs=1e-6)
    for lang, s in uniform["languages"].items():
        assert s["weight"] == pytest.approx(0.25)
        assert budget / 4 <= s["sampled_bytes"] < budget / 4 + largest  # a share, to within one document
    assert uniform["languages"]["eng_Latn"]["sampled_bytes"] < natural["languages"]["eng_Latn"]["sampled_bytes"]
    assert uniform["languages"]["jpn_Jpan"]["repeats"] >= 2  # the small language is repeated up to its share


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_held_out_documents_are_the_smallest_id_hashes_and_never_sampled(lake, alpha):
    found = survey(lake, lake.shards(DOCUMENTS_DEDUP))
    plan = plan_sample(found, None, alpha, heldout_fraction=0.05)
    for lang, s in plan.languages.items():
        mine = found.lang == found.languages.index(lang)
        held = mine & (found.hashes < np.uint64(int(s.heldout_below, 16)))
        assert held.sum() == s.heldout_documents == max(1, round(0.05 * mine.sum()))
        assert found.hashes[held].max() < found.hashes[mine & ~held].min()
        assert not plan.copies[held].any() and plan.copies[mine & ~held].sum() == s.sampled_documents
        if alpha == 1.0:
            assert (plan.copies[mine & ~held] == 1).all()


def test_same_data_and_parameters_give_a_byte_identical_tokenizer(lake, tmp_path):
    first = Path(train(lake, "a").path, "tokenizer.json").read_bytes()
    twin = documents_lake(tmp_path / "twin", {"eng_Latn": 120, "fra_Latn": 60, "deu_Latn": 30, "jpn_Jpan": 12})
    assert Path(train(twin, "a").path, "tokenizer.json").read_bytes() == first
    assert Path(train(lake, "b", alpha=0.0).path, "tokenizer.json").read_bytes() != first


def test_training_again_on_unchanged_data_is_a_no_op(lake):
    first = train(lake)
    path = Path(first.path, "tokenizer.json")
    stamp = path.stat().st_mtime_ns
    again = train(lake)
    assert again.already_trained and not first.already_trained
    assert path.stat().st_mtime_ns == stamp


def test_the_folder_holds_a_byte_level_bpe_with_atomic_specials_and_a_manifest(lake):
    result = train(lake, vocab_size=500)
    folder = Path(result.path)
    assert sorted(os.listdir(folder)) == ["_manifest.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json"]
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert tok.get_vocab_size() == result.vocab_size == 500
    assert [tok.token_to_id(s) for s in SPECIAL_TOKENS] == [0, 1, 2, 3]
    ids = tok.encode("<|im_start|>user\nhello<|im_end|><|endoftext|>", add_special_tokens=False).ids
    assert ids[0] == 1 and ids[-2:] == [2, 0]
    assert all(len(tok.encode(chr(c), add_special_tokens=False).ids) == 1 for c in range(128))  # every byte is a token
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["parameters"]["alpha"] == 0.3 and manifest["parameters"]["special_tokens"] == list(SPECIAL_TOKENS)
    assert manifest["data"]["documents"] == 222 and len(manifest["data"]["fingerprint"]) == 16
    assert set(manifest["languages"]) == set(LANGS) and manifest["training_seconds"] > 0
    assert manifest["files"]["tokenizer.json"]  # sha256 of what was published


def test_transformers_loads_the_folder_with_a_chatml_template_and_the_same_ids(lake):
    from transformers import AutoTokenizer

    folder = train(lake, vocab_size=500).path
    auto = AutoTokenizer.from_pretrained(folder)
    raw = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    text = PROSE["fr"][0] + " 12345 ¿Qué? 東京"
    assert auto(text)["input_ids"] == raw.encode(text, add_special_tokens=False).ids
    assert auto.decode(auto(text)["input_ids"]) == text
    assert (auto.eos_token, auto.pad_token, auto.bos_token) == ("<|endoftext|>", "<|pad|>", None)
    assert set(auto.all_special_tokens) == set(SPECIAL_TOKENS)
    assert auto.chat_template == CHATML_TEMPLATE
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    rendered = auto.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert rendered == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
    out = auto.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert auto.decode(masked) == "Hello!<|im_end|>"  # the SFT loss mask covers the answer and its end token


def test_digits_are_split_one_by_one(lake):
    tok = Tokenizer.from_file(os.path.join(train(lake, vocab_size=500).path, "tokenizer.json"))
    assert tok.encode("2024", add_special_tokens=False).tokens == ["2", "0", "2", "4"]


@needs_flores
def test_every_flores_language_round_trips_and_counts_equal_raw_tokenizers(lake):
    from pipelines.common.parallel_text import read_parallel
    from tokenizer_training.evaluate import count_languages
    from tokenizer_training.loading import load_tokenizer

    folder = train(lake, vocab_size=600).path
    raw = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    texts = read_parallel(FLORES)
    counts = count_languages(load_tokenizer(folder), {lang: [text] for lang, text in texts.items()})
    for lang, text in texts.items():
        ids = raw.encode(text, add_special_tokens=False).ids
        assert raw.decode(ids) == text, lang
        assert counts[lang].tokens == len(ids), lang


def test_an_empty_lake_is_a_clear_error_and_writes_nothing(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    with pytest.raises(TrainingDataError, match="lmforge ingest"):
        train(lake)
    clean_only = documents_lake(tmp_path / "clean", {"eng_Latn": 5}, dataset=DOCUMENTS_CLEAN)
    with pytest.raises(TrainingDataError, match="lmforge dedup"):
        train(clean_only)
    assert not lake.exists(TOKENIZERS) and not clean_only.exists(TOKENIZERS)


def test_a_language_with_one_document_is_refused_when_asked_for_and_skipped_otherwise(tmp_path):
    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 20, "fra_Latn": 1})
    with pytest.raises(TrainingDataError, match="fra_Latn has 1"):
        train(lake, languages=["eng_Latn", "fra_Latn"])
    assert not lake.exists(TOKENIZERS)
    manifest = train(lake).manifest
    assert set(manifest["languages"]) == {"eng_Latn"} and "fra_Latn" in manifest["skipped_languages"]
    with pytest.raises(TrainingDataError, match="no documents in language xho_Latn.*eng_Latn \\(20\\)"):
        train(lake, "other", languages=["xho_Latn"])


def test_a_vocabulary_without_room_for_the_bytes_and_specials_is_refused():
    with pytest.raises(ValidationError, match=f"at least {MIN_VOCAB}"):
        TokenizerConfig(name="tiny", vocab_size=MIN_VOCAB - 1)
    assert TokenizerConfig(name="tiny", vocab_size=MIN_VOCAB).vocab_size == 260


def test_a_taken_name_is_refused_unless_overwritten_and_a_failed_write_leaves_the_old_folder(lake, monkeypatch):
    first = train(lake)
    before = Path(first.path, "tokenizer.json").read_bytes()
    with pytest.raises(TokenizerExistsError, match="--overwrite"):
        train(lake, vocab_size=450)
    import tokenizer_training.train as module

    def broken(tokenizer, folder):
        Path(folder, "tokenizer.json").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(module, "save_transformers_folder", broken)
    with pytest.raises(OSError, match="disk full"):
        train_tokenizer(lake, TokenizerConfig(name="tok", vocab_size=450), overwrite=True)
    assert Path(first.path, "tokenizer.json").read_bytes() == before
    assert sorted(os.listdir(lake.path(TOKENIZERS))) == ["tok"]  # no temporary folder left behind
    monkeypatch.undo()
    replaced = train_tokenizer(lake, TokenizerConfig(name="tok", vocab_size=450), overwrite=True)
    assert replaced.vocab_size == 450 and sorted(os.listdir(lake.path(TOKENIZERS))) == ["tok"]


def test_the_text_stream_reports_a_lake_that_changed_and_stops_its_reader_when_abandoned(lake):
    import threading

    from tokenizer_training.sampling import stream_texts

    found = survey(lake, lake.shards(DOCUMENTS_DEDUP))
    plan = plan_sample(found, None, 1.0, heldout_fraction=0.05)
    assert len(list(stream_texts(lake, found, plan.copies))) == plan.sampled_documents
    with pytest.raises(TrainingDataError, match="changed while the tokenizer was training"):
        list(stream_texts(lake, found, plan.copies[:-1]))  # one document fewer than the shards hold
    stream = stream_texts(lake, found, plan.copies, batch_rows=8)
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "lmforge-text-prefetch"]
