"""Tokenize for training: lake text → `tokens/<tokenizer>/<dataset>/` (.bin ids + .idx.npy offsets + manifest),
read back as the trainer reads it; splits, resume, replacement, bad input, the CLI, the flow, stats and gc."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xxhash
from builders import document_rows, documents_lake, list_run, run_id
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from typer.testing import CliRunner

import model.tokens as tokens_module
from flows.cli import app
from model.token_shards import EOT, TokensNotFound, open_split, read_tokens_manifest
from model.tokens import TokenizeConfig, TokenizeError, tokenize_dataset
from pipelines.lake import (
    DOCUMENTS_CLEAN,
    DOCUMENTS_DEDUP,
    DOCUMENTS_SCHEMA,
    PREFERENCES_SCHEMA,
    SYNTHETIC_MIX,
    SYNTHETIC_PREFERENCES,
    TOKENIZERS,
    Lake,
    write_table,
)
from pipelines.lake.catalog import stats
from pipelines.lake.gc import apply_gc, plan_gc
from tokenizer_training.train import TokenizerConfig, train_tokenizer

COUNTS = {"eng_Latn": 60, "fra_Latn": 30, "deu_Latn": 20, "jpn_Jpan": 8}
VAL = 0.2


@pytest.fixture(scope="module")
def bpe(tmp_path_factory) -> dict[str, str]:
    """Two byte-level BPEs with `<|endoftext|>` trained on the test documents (tokenizer.json text, by name)."""
    lake = documents_lake(tmp_path_factory.mktemp("train") / "lake", COUNTS)
    return {
        name: Path(train_tokenizer(lake, TokenizerConfig(name=name, vocab_size=size)).path, "tokenizer.json").read_text()
        for name, size in (("small", 400), ("smaller", 300))
    }


def add_tokenizer(lake: Lake, name: str, text: str) -> None:
    folder = Path(lake.path(TOKENIZERS, name))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(text)


@pytest.fixture
def lake(tmp_path, bpe) -> Lake:
    lake = documents_lake(tmp_path / "lake", COUNTS)
    add_tokenizer(lake, "tok", bpe["small"])
    return lake


def config(**overrides) -> TokenizeConfig:
    return TokenizeConfig(**({"tokenizer": "tok", "val_fraction": VAL} | overrides))


def all_documents() -> dict[str, str]:
    return {row["id"]: row["text"] for lang, n in COUNTS.items() for row in document_rows(lang, n)}


def is_val(doc_id: str, fraction: float = VAL) -> bool:
    return xxhash.xxh64_intdigest(doc_id.encode()) % 1_000_000 < fraction * 1_000_000


def documents_of(lake: Lake, split: str, tokenizer: str = "tok", name: str = "documents") -> list[np.ndarray]:
    """Each document's ids (its `<|endoftext|>` included), in file order, cut by the offsets."""
    return [ids[a:b] for ids, offsets in open_split(lake, tokenizer, name, split) for a, b in zip(offsets[:-1], offsets[1:])]


def folder_files(lake: Lake, tokenizer: str = "tok", name: str = "documents") -> dict[str, bytes]:
    root = Path(lake.path("tokens", tokenizer, name))
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.suffix != ".lock"}


def test_each_document_decodes_to_its_text_then_one_end_of_text_and_offsets_cut_exactly(lake, bpe):
    result = tokenize_dataset(lake, config(), "documents")
    tok = Tokenizer.from_str(bpe["small"])
    eot = tok.token_to_id(EOT)
    m = result.manifest
    assert (m.dataset, m.source_dataset, m.dtype, m.eot_id, m.vocab_size) == ("documents", DOCUMENTS_DEDUP, "uint16", eot, 400)
    texts = all_documents()
    by_text = {t: i for i, t in texts.items()}
    seen: dict[str, set[str]] = {}
    for split in ("train", "val"):
        shards = open_split(lake, "tok", "documents", split)
        assert len(shards) == len(m.splits[split].shards) > 0
        for ids, offsets in shards:
            assert ids.dtype == np.dtype("<u2") and offsets.dtype == np.int64
            assert offsets[0] == 0 and offsets[-1] == len(ids) and (np.diff(offsets) > 1).all()
        docs = documents_of(lake, split)
        assert all(d[-1] == eot and eot not in d[:-1] for d in docs)
        decoded = [tok.decode(d[:-1].tolist(), skip_special_tokens=False) for d in docs]
        seen[split] = {by_text[t] for t in decoded}  # every decoded text is a document's text, exactly
        s = m.splits[split]
        assert s.documents == len(docs) == len(seen[split])
        assert s.tokens == sum(len(d) for d in docs)
        assert s.bytes == sum(len(texts[i].encode()) for i in seen[split])
    assert seen["train"] | seen["val"] == set(texts) and not seen["train"] & seen["val"]
    assert seen["val"] == {i for i in texts if is_val(i)}
    assert m.skipped == {} and m.source_runs == [run_id("documents")] and m.source_shards == 4


def test_the_split_follows_the_id_whatever_the_order_or_sharding(lake, tmp_path, bpe):
    tokenize_dataset(lake, config(), "documents")
    shuffled = Lake.at(tmp_path / "shuffled")
    rows = [r for lang, n in COUNTS.items() for r in document_rows(lang, n)]
    run = run_id("one shard")
    write_table(shuffled, DOCUMENTS_DEDUP, f"{run}_00000.parquet", pa.Table.from_pylist(rows[::-1], schema=DOCUMENTS_SCHEMA))
    list_run(shuffled, run, DOCUMENTS_DEDUP)
    add_tokenizer(shuffled, "tok", bpe["small"])
    tokenize_dataset(shuffled, config(), "documents")
    for split in ("train", "val"):
        assert Counter(map(bytes, documents_of(lake, split))) == Counter(map(bytes, documents_of(shuffled, split)))
    assert 0 < read_tokens_manifest(lake, "tok", "documents").splits["val"].documents < sum(COUNTS.values()) / 2


def test_batch_sizes_change_the_speed_never_the_output(lake, tmp_path, bpe):
    tokenize_dataset(lake, config(), "documents")
    small = documents_lake(tmp_path / "small batches", COUNTS)
    add_tokenizer(small, "tok", bpe["small"])
    tokenize_dataset(small, config(batch_rows=3, batch_bytes=700), "documents")  # many calls, shards cut in pieces
    ours, theirs = folder_files(lake), folder_files(small)
    assert ours.keys() == theirs.keys() and all(ours[k] == theirs[k] for k in ours if k != "_manifest.json")


def test_a_literal_end_of_text_in_a_document_is_encoded_as_text(tmp_path, bpe):
    lake = Lake.at(tmp_path / "lake")
    text = f"The first story ends here.{EOT}The second one starts here."
    row = {"id": "a", "text": text, "lang": "eng_Latn", "n_chars": len(text)}
    write_table(lake, DOCUMENTS_DEDUP, f"{run_id('x')}_00000.parquet", pa.Table.from_pylist([row], schema=DOCUMENTS_SCHEMA))
    list_run(lake, run_id("x"), DOCUMENTS_DEDUP)
    add_tokenizer(lake, "tok", bpe["small"])
    tokenize_dataset(lake, config(val_fraction=0.0), "documents")
    [doc] = documents_of(lake, "train")
    tok = Tokenizer.from_str(bpe["small"])
    assert list(doc).count(tok.token_to_id(EOT)) == 1 and tok.decode(doc[:-1].tolist(), skip_special_tokens=False) == text


def test_a_rerun_on_the_same_inputs_is_a_no_op(lake):
    first = tokenize_dataset(lake, config(), "documents")
    stamps = {p: p.stat().st_mtime_ns for p in Path(first.path).rglob("*")}
    again = tokenize_dataset(lake, config(batch_rows=7, batch_bytes=500), "documents")  # batch sizes are not the run
    assert again.up_to_date and again.manifest == first.manifest
    assert {p: p.stat().st_mtime_ns for p in Path(first.path).rglob("*")} == stamps
    assert not Path(lake.path("_work", "tokenize")).exists() or not any(Path(lake.path("_work", "tokenize")).iterdir())


def kill_at_second_shard(monkeypatch) -> None:
    """The process dies once the second input shard's files are published, before they are marked done."""
    real, calls = tokens_module._record_shard, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tokens_module, "_record_shard", killed)


def test_a_killed_run_resumes_keeping_its_finished_shards_and_ends_identical(lake, tmp_path, bpe, monkeypatch):
    reference = documents_lake(tmp_path / "reference", COUNTS)
    add_tokenizer(reference, "tok", bpe["small"])
    tokenize_dataset(reference, config(), "documents")

    kill_at_second_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tokenize_dataset(lake, config(), "documents")
    monkeypatch.undo()
    assert read_tokens_manifest(lake, "tok", "documents") is None  # not a dataset yet: nothing lists the run
    folder = Path(lake.path("tokens", "tok", "documents"))
    first = {p: p.stat().st_mtime_ns for p in folder.rglob("*_00000.*")}
    second = {p: p.stat().st_mtime_ns for p in folder.rglob("*_00001.*")}
    assert len(first) == len([n for n in folder_files(reference) if "_00000." in n]) >= 2  # whole: .bin and .idx.npy
    assert second and not list(folder.rglob("*_00002.*")) and not list(folder.rglob("*.tmp"))

    result = tokenize_dataset(lake, config(), "documents")
    assert result.resumed_shards == 1 and not result.up_to_date
    assert {p: p.stat().st_mtime_ns for p in first} == first  # kept
    assert all(p.stat().st_mtime_ns != t for p, t in second.items())  # published but never marked done: made again
    assert folder_files(lake).keys() == folder_files(reference).keys()
    for name, data in folder_files(reference).items():
        if name != "_manifest.json":
            assert folder_files(lake)[name] == data, name
    ours, theirs = result.manifest, read_tokens_manifest(reference, "tok", "documents")
    assert ours.model_dump(exclude={"created", "seconds"}) == theirs.model_dump(exclude={"created", "seconds"})
    assert not Path(lake.path("_work", "tokenize", ours.run)).exists()


def test_a_new_tokenizer_or_new_source_data_replaces_the_run_after_its_manifest_is_published(lake, bpe, monkeypatch):
    first = tokenize_dataset(lake, config(), "documents")
    old_files = [Path(first.path, split, name) for split, s in first.manifest.splits.items() for name in s.shards]
    add_tokenizer(lake, "tok", bpe["smaller"])
    real_remove = tokens_module._remove_others
    seen = {}

    def remove_others(lake_, plan):
        seen["manifest run"] = read_tokens_manifest(lake_, "tok", "documents").run
        seen["old files there"] = all(p.exists() for p in old_files)
        real_remove(lake_, plan)

    monkeypatch.setattr(tokens_module, "_remove_others", remove_others)
    second = tokenize_dataset(lake, config(), "documents")
    assert seen == {"manifest run": second.manifest.run, "old files there": True}
    assert second.replaced_run == first.manifest.run != second.manifest.run
    assert second.manifest.vocab_size == 300 and not any(p.exists() for p in old_files)
    assert all(Path(name).name.startswith(second.manifest.run) for name in folder_files(lake) if "/" in name)

    extra = run_id("more documents")
    write_table(lake, DOCUMENTS_DEDUP, f"lang=eng_Latn/{extra}_00000.parquet",
                pa.Table.from_pylist(document_rows("eng_Latn", 70)[60:], schema=DOCUMENTS_SCHEMA))
    list_run(lake, extra, DOCUMENTS_DEDUP)
    third = tokenize_dataset(lake, config(), "documents")
    assert third.replaced_run == second.manifest.run and third.manifest.documents == sum(COUNTS.values()) + 10
    assert sorted(third.manifest.source_runs) == sorted([run_id("documents"), extra])


def test_a_vocabulary_over_65536_ids_is_written_as_uint32_and_uint16_is_refused(lake, bpe):
    big = Tokenizer.from_str(bpe["small"])
    big.add_tokens([f"<filler{i}>" for i in range(65_536)] + ["library"])  # "library": an id above 65535 that occurs
    add_tokenizer(lake, "big", big.to_str())
    with pytest.raises(TokenizeError, match="uint16 cannot hold a vocabulary of 65937"):
        tokenize_dataset(lake, config(tokenizer="big", dtype="uint16"), "documents")
    assert not Path(lake.path("tokens")).exists()
    result = tokenize_dataset(lake, config(tokenizer="big"), "documents")
    assert result.manifest.dtype == "uint32" and result.manifest.vocab_size == 65_937
    docs = documents_of(lake, "train", "big")
    assert docs[0].dtype == np.dtype("<u4") and max(int(d.max()) for d in docs) == big.token_to_id("library")
    assert {big.decode(d[:-1].tolist(), skip_special_tokens=False) for d in docs} <= set(all_documents().values())
    small_as_uint32 = tokenize_dataset(lake, config(dtype="uint32"), "documents")
    assert small_as_uint32.manifest.dtype == "uint32"


def test_rows_without_text_are_counted_and_skipped_and_no_text_at_all_is_an_error(tmp_path, bpe):
    lake = Lake.at(tmp_path / "lake")
    add_tokenizer(lake, "tok", bpe["small"])
    schema = pa.schema([pa.field("id", pa.string()), pa.field("text", pa.string())])
    rows = [{"id": "a", "text": "Some text."}, {"id": "b", "text": None}, {"id": "c", "text": ""}, {"id": None, "text": "x"}]
    write_table(lake, DOCUMENTS_CLEAN, f"{run_id('a')}_00000.parquet", pa.Table.from_pylist(rows, schema=schema))
    list_run(lake, run_id("a"), DOCUMENTS_CLEAN)
    result = tokenize_dataset(lake, config(val_fraction=0.0), DOCUMENTS_CLEAN)
    assert result.manifest.skipped == {"empty text": 1, "null id": 1, "null text": 1}
    assert result.manifest.splits["train"].documents == 1 and Path(lake.path("tokens", "tok", DOCUMENTS_CLEAN)).is_dir()

    write_table(lake, SYNTHETIC_MIX, f"{run_id('b')}_00000.parquet", pa.Table.from_pylist(rows[1:3], schema=schema))
    list_run(lake, run_id("b"), SYNTHETIC_MIX)
    with pytest.raises(TokenizeError, match="empty token shards.*1 empty text, 1 null text"):
        tokenize_dataset(lake, config(), SYNTHETIC_MIX)
    assert not Path(lake.path("tokens", "tok", "synthetic")).exists()
    assert not any(Path(lake.path("_work", "tokenize")).iterdir())


def tokenizer_without_end_of_text() -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["some text"], trainer)
    return tok.to_str()


@pytest.mark.parametrize(
    "tokenizer, dataset, message",
    [
        ("nope", "documents", "unknown tokenizer 'nope'.*the lake has noeot, tok"),
        ("noeot", "documents", "tokenizer 'noeot' has no <\\|endoftext\\|> token"),
        ("tok", "synthetic/nothing", "unknown dataset 'synthetic/nothing'.*datasets with text: documents"),
        ("tok", "synthetic/wrap", "dataset 'synthetic/wrap' is empty"),
        ("tok", SYNTHETIC_PREFERENCES, "has no text column"),
        ("tok", "../documents", "bad dataset name"),
        ("tok", "documents/train", "bad dataset name"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(lake, tokenizer, dataset, message):
    add_tokenizer(lake, "noeot", tokenizer_without_end_of_text())
    Path(lake.path("synthetic", "wrap")).mkdir(parents=True)  # a folder, but no listed shard
    prefs = [{"id": "p", "prompt": "q", "chosen": "a", "rejected": "b", "model": "m", "prompt_version": "1"}]
    prefs_table = pa.Table.from_pylist(prefs, schema=PREFERENCES_SCHEMA)
    write_table(lake, SYNTHETIC_PREFERENCES, f"{run_id('p')}_00000.parquet", prefs_table)
    list_run(lake, run_id("p"), SYNTHETIC_PREFERENCES)
    with pytest.raises(TokenizeError, match=message):
        tokenize_dataset(lake, config(tokenizer=tokenizer), dataset)
    assert not Path(lake.path("tokens")).exists() and not Path(lake.path("_work")).exists()


def test_reading_tokens_that_were_never_made_names_the_folder(lake):
    with pytest.raises(TokensNotFound, match=r"no tokens in .*/tokens/tok/synthetic/wrap .*lmforge tokenize --tokenizer tok"):
        open_split(lake, "tok", "synthetic/wrap", "train")
    assert read_tokens_manifest(lake, "tok", "synthetic/wrap") is None


def test_stats_list_training_tokens_per_tokenizer_dataset_and_split(lake):
    m = tokenize_dataset(lake, config(), "documents").manifest
    rows = stats(lake)["training tokens"].rows
    assert rows == [("tok", "documents", s, m.splits[s].documents, m.splits[s].tokens) for s in ("train", "val")]


def test_gc_removes_only_token_shards_their_manifest_does_not_list(lake, bpe, monkeypatch):
    first = tokenize_dataset(lake, config(), "documents")
    add_tokenizer(lake, "tok", bpe["smaller"])  # a replacing run, killed after its first shard
    kill_at_second_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        tokenize_dataset(lake, config(), "documents")
    monkeypatch.undo()
    listed = folder_files(lake)
    killed = {name for name in listed if "/" in name and first.manifest.run not in name}
    plan = plan_gc(lake, grace_minutes=0)
    stale = [o for o in plan.orphans if o.kind == "tokens"]
    assert killed and {str(Path(o.path).relative_to(first.path)) for o in stale} == killed
    assert {o.where for o in stale} == {"tokens/tok/documents"}
    assert {o.kind for o in plan.orphans} == {"tokens", "work", "lock"}  # the killed run's markers and lock go too
    apply_gc(lake, plan)
    kept = folder_files(lake)
    assert {k for k in listed if first.manifest.run in k or "/" not in k} == set(kept)
    assert len(documents_of(lake, "train")) == first.manifest.splits["train"].documents
    assert not [o for o in plan_gc(lake, grace_minutes=0).orphans if o.kind == "tokens"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tokenizer", "nope"], "unknown tokenizer 'nope'"),
        (["--tokenizer", "tok", "--dataset", "documents", "--dataset", "synthetic/none"], "unknown dataset 'synthetic/none'"),
        (["--tokenizer", "tok", "--dtype", "uint8"], "dtype"),
        (["--tokenizer", "tok", "--val-fraction", "2"], "val_fraction"),
    ],
)
def test_cli_errors_are_one_line_before_prefect_starts_and_write_nothing(lake, extra, message):
    result = CliRunner().invoke(app, ["tokenize", "--lake", lake.root, *extra])
    assert result.exit_code == 1 and message in " ".join(result.stderr.split()) and "Traceback" not in result.output
    assert not Path(lake.path("tokens")).exists()


def test_the_flow_tokenizes_each_dataset_and_publishes_its_summary_then_the_cli_reports_up_to_date(lake, prefect_harness):
    """One Prefect test (its server takes a while to start): the flow, its artifacts, then the CLI on the same inputs."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.tokens import tokenize_flow

    documents_lake(Path(lake.root), COUNTS, dataset=DOCUMENTS_CLEAN)  # the same documents, before dedup
    state = tokenize_flow(config(), ["documents", DOCUMENTS_CLEAN, "documents"], lake.root, return_state=True)
    results = state.result()
    assert [r.dataset for r in results] == ["documents", DOCUMENTS_CLEAN]
    for split in ("train", "val"):  # the same documents, the same tokens
        a, b = (r.manifest.splits[split] for r in results)
        assert (a.documents, a.tokens, a.bytes) == (b.documents, b.tokens, b.bytes)

    async def artifacts() -> dict:
        async with get_client() as client:
            of_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
            return {a.key: a for a in await client.read_artifacts(artifact_filter=of_this_run)}

    published = asyncio.run(artifacts())
    assert {"tokens-by-split", "tokens-summary"} <= set(published)
    assert DOCUMENTS_CLEAN in published["tokens-summary"].data and "val" in published["tokens-by-split"].data

    args = ["tokenize", "--tokenizer", "tok", "--lake", lake.root, "--val-fraction", str(VAL), "--dataset", "documents"]
    again = CliRunner().invoke(app, [*args, "--dataset", DOCUMENTS_CLEAN])
    assert again.exit_code == 0, again.output
    out = " ".join(again.stdout.split())
    assert "tokens/tok" in out and f"{results[0].manifest.splits['val'].tokens}" in out and "up to date" in out
