"""The quality gates: real GX suites on small lakes with planted defects, the gate the stages ask,
the Data Docs and results left in the lake, and `lmforge validate`."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import document_rows, documents_lake, list_run, run_id, tokenized_lake

from pipelines.lake import (
    DOCUMENTS_DEDUP,
    DOCUMENTS_SCHEMA,
    PREFERENCES_SCHEMA,
    REJECTED,
    REJECTED_SCHEMA,
    SELF_INSTRUCT_SCHEMA,
    SYNTHETIC_PREFERENCES,
    SYNTHETIC_SELF_INSTRUCT,
    SYNTHETIC_WRAP,
    WRAP_SCHEMA,
    Lake,
    RunRecord,
    lmforge_version,
    refresh_manifest,
    utc_now,
    write_table,
)
from pipelines.lake.catalog import query, stats
from pipelines.lake.quality_record import current_quality_summary, dataset_version, read_quality_summary
from quality.config import ValidateConfig
from quality.gate import GateFailed, require_passed
from quality.reasons import known_reasons_pattern
from quality.suites import rouge_l_to_pool
from quality.validate import QualityError, resolve, validate


def failures(summary, shards: bool = False) -> dict[str, list[str]]:  # noqa: ANN001
    """`expectation(column)` → examples (`shard:id`, or only the ids), for every expectation that failed."""
    strip = (lambda e: e) if shards else (lambda e: e.split(".parquet:", 1)[-1])
    return {f"{f.expectation}({f.column or ''})": [strip(e) for e in f.examples] for f in summary.failed}


def write_rows(lake: Lake, dataset: str, rows: list[dict], schema: pa.Schema, label: str, parameters: dict | None = None) -> str:
    run = run_id(label)
    path = write_table(lake, dataset, f"{run}_00000.parquet", pa.Table.from_pylist(rows, schema=schema))
    now = utc_now()
    record = RunRecord(
        run=run,
        stage="test",
        parameters=parameters or {},
        inputs=[],
        started=now,
        finished=now,
        lmforge_version=lmforge_version(),
    )
    refresh_manifest(lake, dataset, [record])
    return path


def test_a_clean_dataset_passes_and_leaves_results_docs_and_a_summary(tmp_path):
    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 30, "fra_Latn": 20, "deu_Latn": 10})
    summary = validate(lake, DOCUMENTS_DEDUP)
    assert summary.success and not summary.failed, failures(summary)
    assert (summary.rows, summary.rows_validated, summary.shards) == (60, 60, 3)
    assert summary.expectations >= 12
    folder = tmp_path / "lake" / "quality" / "documents" / "dedup"
    assert (folder / "docs" / "index.html").read_text().count("<html") == 1
    assert list((folder / "docs" / "validations").rglob("*.html"))  # one page per validation run
    results = pq.read_table(folder / "results.parquet").to_pylist()
    assert {r["expectation"] for r in results} >= {"expect_column_values_to_be_unique", "expect_column_pair_values_to_be_equal"}
    assert all(r["success"] for r in results) and len(results) == summary.expectations
    assert json.loads((folder / "results" / "all-shards.json").read_text())["success"] is True
    assert read_quality_summary(lake, DOCUMENTS_DEDUP) == current_quality_summary(lake, DOCUMENTS_DEDUP) == summary
    assert require_passed(lake, DOCUMENTS_DEDUP) == summary


def test_planted_document_defects_each_fail_their_expectation_naming_shard_and_rows(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    good = document_rows("eng_Latn", 20)
    bad = [dict(r, id=f"bad-{i}") for i, r in enumerate(document_rows("fra_Latn", 8))]
    bad[0]["id"] = good[3]["id"]  # an id already in the other shard
    bad[1]["text"], bad[1]["n_chars"] = "", 0
    bad[2]["n_chars"] += 5
    bad[3]["lang"] = "french"
    bad[4]["lang_score"] = 1.5
    bad[5]["text"] = "Write to jane.doe@university.edu or visit 8.8.8.8 for help"
    bad[5]["n_chars"] = len(bad[5]["text"])
    bad[6]["text"] = "  " + good[7]["text"].upper() + " "  # the same text once normalised: an exact duplicate
    bad[6]["n_chars"] = len(bad[6]["text"])
    run = run_id("planted")
    write_table(lake, DOCUMENTS_DEDUP, f"{run}_00000.parquet", pa.Table.from_pylist(good, schema=DOCUMENTS_SCHEMA))
    write_table(lake, DOCUMENTS_DEDUP, f"{run}_00001.parquet", pa.Table.from_pylist(bad, schema=DOCUMENTS_SCHEMA))
    list_run(lake, run, DOCUMENTS_DEDUP)

    summary = validate(lake, DOCUMENTS_DEDUP)
    failed = failures(summary, shards=True)
    shard = f"{run}_00001.parquet"
    assert failed["expect_column_values_to_be_unique(id)"] == [f"{run}_00000.parquet:eng_Latn-3", f"{shard}:eng_Latn-3"]
    assert failed["expect_column_value_lengths_to_be_between(text)"] == [f"{shard}:bad-1"]
    assert failed["expect_column_pair_values_to_be_equal(n_chars,text_length)"] == [f"{shard}:bad-2"]
    assert failed["expect_column_values_to_match_regex(lang)"] == [f"{shard}:bad-3"]
    assert failed["expect_column_values_to_be_between(lang_score)"] == [f"{shard}:bad-4"]
    assert failed["expect_column_values_to_be_null(pii_left)"] == [f"{shard}:bad-5"]
    assert failed["expect_column_values_to_be_unique(text_key)"] == [f"{run}_00000.parquet:eng_Latn-7", f"{shard}:bad-6"]
    assert len(failed) == 7 and not summary.success and summary.blocks
    assert {f.shard for f in summary.failed} == {shard, f"{run}_00000.parquet, {shard}"}

    with pytest.raises(GateFailed) as raised:
        require_passed(lake, DOCUMENTS_DEDUP)
    message = str(raised.value)
    assert message.startswith("quality gate failed for documents/dedup (7 of")
    assert f"on {shard}: 1 rows, e.g. {shard}:bad-" in message and "quality/documents/dedup/docs/index.html" in message

    # the same results are rows of the catalog's quality_results view, and a line of `lmforge stats`
    sql = "SELECT expectation, column_name, unexpected, examples FROM quality_results WHERE NOT success ORDER BY ALL"
    found = query(lake, sql)
    assert len(found.rows) == 7
    assert ("expect_column_values_to_be_between", "lang_score", 1, [f"{shard}:bad-4"]) in found.rows
    (gate,) = stats(lake)["quality gates"].to_arrow().to_pylist()
    assert (gate["dataset"], gate["suite"], gate["passed"], gate["failed"]) == (DOCUMENTS_DEDUP, "documents", False, 7)


def test_pii_left_ignores_what_redaction_writes_and_private_addresses():
    from quality.suites import pii_left

    assert pii_left("mail email@example.com from 192.168.0.1 or 127.0.0.1 (22.214.171.124)") is None
    assert pii_left("mail bob@debian.org") == "bob@debian.org"
    assert pii_left("dns 1.1.1.1") == "1.1.1.1"


def test_a_foreign_shard_and_a_missing_shard_are_named(tmp_path):
    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 10, "fra_Latn": 10})
    run = run_id("foreign")
    foreign = pa.table({"id": ["x-1", "x-2"], "body": ["some text", "more text"]})
    write_table(lake, DOCUMENTS_DEDUP, f"{run}_00000.parquet", foreign)
    list_run(lake, run, DOCUMENTS_DEDUP)
    (tmp_path / "lake" / "documents" / "dedup" / "lang=fra_Latn").joinpath(f"{run_id('documents')}_00000.parquet").unlink()

    summary = validate(lake, DOCUMENTS_DEDUP)
    failed = {f.expectation: f for f in summary.failed}
    schema = failed["expect_table_columns_to_match_set"]
    assert schema.shard == f"{run}_00000.parquet" and "text" in " ".join(schema.examples)
    assert failed["expect_table_row_count_to_equal"].examples == ["observed 12"]  # 22 listed: the French shard is gone
    assert summary.shards == 2


def test_an_unreadable_shard_is_a_failure_not_a_crash(tmp_path):
    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 5})
    path = write_rows(lake, DOCUMENTS_DEDUP, document_rows("fra_Latn", 3), DOCUMENTS_SCHEMA, "broken")
    with open(path, "r+b") as f:  # damaged after it was listed
        f.truncate(40)
    run = run_id("broken")
    summary = validate(lake, DOCUMENTS_DEDUP)
    broken = [f for f in summary.failed if f.expectation == "shard_is_readable_parquet"]
    assert broken and broken[0].shard == f"{run}_00000.parquet" and broken[0].examples[0].startswith("Arrow")


def test_a_big_shard_is_sampled_but_ids_are_checked_across_every_row(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    rows = document_rows("eng_Latn", 200)
    rows[-1]["id"] = rows[0]["id"]
    rows[-1]["text"] = rows[-1]["text"] + " !"
    rows[-1]["n_chars"] = len(rows[-1]["text"])
    write_rows(lake, DOCUMENTS_DEDUP, rows, DOCUMENTS_SCHEMA, "big")
    summary = validate(lake, DOCUMENTS_DEDUP, ValidateConfig(sample_rows=50))
    assert (summary.rows, summary.rows_validated) == (200, 50)
    assert failures(summary) == {"expect_column_values_to_be_unique(id)": ["eng_Latn-0", "eng_Latn-0"]}


def test_rejections_need_a_known_stage_step_and_reason(tmp_path):
    lake = Lake.at(tmp_path / "lake")
    base = {"detail": None, "source": None, "url": None, "lang": None, "text": "", "n_chars": 0}
    rows = [
        {"id": "a", "stage": "ingest", "step": "gopher_repetition", "reason": "duplicated_5_n_grams", **base},
        {"id": "b", "stage": "dedup", "step": "near", "reason": "near_duplicate", **base},
        {"id": "c", "stage": "ingest", "step": "language", "reason": "felt_like_it", **base},
    ]
    write_rows(lake, REJECTED, rows, REJECTED_SCHEMA, "rejected")
    summary = validate(lake, REJECTED)
    assert failures(summary) == {"expect_column_values_to_match_regex(stage_step_reason)": ["c"]}


def test_the_known_reasons_cover_what_the_stages_write():
    from pipelines.dedup.steps import REASONS as DEDUP_REASONS
    from pipelines.dedup.steps import STEP_OF
    from pipelines.synthetic.wrap import REASONS as WRAP_REASONS

    known = re.compile(known_reasons_pattern())
    assert all(known.fullmatch(f"dedup/{STEP_OF[r]}/{r}") for r in DEDUP_REASONS)
    assert all(known.fullmatch(f"synthetic/wrap/{r}") for r in WRAP_REASONS)
    assert known.fullmatch("ingest/c4_quality/< 3 paragraphs") and not known.fullmatch("dedup/exact/near_duplicate")


def synthetic_provenance(i: int) -> dict:
    return {"model": "m", "prompt_version": "v1", "sampling": "{}", "run": "r"}


def test_rephrasings_are_checked_for_style_length_preamble_and_source(tmp_path):
    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 5})
    source = "The village library opens at nine and closes at six on weekdays."

    def row(i: int, **change) -> dict:  # noqa: ANN003
        text = "The library in the village is open from nine to six on weekdays."
        base = {"id": f"w{i}", "source_id": f"eng_Latn-{i}", "chunk": 0, "style": "easy", "lang": "eng_Latn", "text": text}
        base |= {"source_text": source, "n_chars": len(text), "n_tokens": 12, "finish_reason": "stop", **synthetic_provenance(i)}
        return base | change

    rows = [
        row(0),
        row(1, style="shouty"),
        row(2, text="Sure! Here is the rewritten passage: the library opens at nine."),
        row(3, text="Open."),
        row(4, source_id="eng_Latn-99"),
    ]
    write_rows(lake, SYNTHETIC_WRAP, rows, WRAP_SCHEMA, "wrap")
    assert failures(validate(lake, SYNTHETIC_WRAP)) == {
        "expect_column_values_to_be_in_set(style)": ["w1"],
        "expect_column_values_to_not_match_regex(text)": ["w2"],
        "expect_column_values_to_be_between(length_ratio)": ["w3"],
        "expect_column_values_to_be_in_set(source_in_documents)": ["w4"],
    }


def test_instructions_too_close_to_the_pool_fail_by_rouge_l(tmp_path):
    from rouge_score import rouge_scorer

    lake = Lake.at(tmp_path / "lake")
    texts = [
        "Write a haiku about the sea at night.",
        "Write a haiku about the sea at dawn.",
        "List three uses of baking soda in the kitchen.",
        "Explain why the sky looks blue to a child.",
    ]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    reference = [max(scorer.score(t, o)["rougeL"].fmeasure for o in texts if o is not t) for t in texts]
    assert rouge_l_to_pool(texts, 100, 0) == pytest.approx(reference)  # the gate's ROUGE-L is rouge-score's

    rows = [
        {"id": f"i{i}", "instruction": t, "input": "", "output": "ok", "is_classification": False, "rouge_l_max": 0.1}
        | {"messages": None, **synthetic_provenance(i)}
        for i, t in enumerate(texts)
    ]
    write_rows(lake, SYNTHETIC_SELF_INSTRUCT, rows, SELF_INSTRUCT_SCHEMA, "instructions")
    failed = failures(validate(lake, SYNTHETIC_SELF_INSTRUCT))
    assert sorted(failed["expect_column_values_to_be_between(rouge_l_to_pool)"]) == ["i0", "i1"]


def test_preference_pairs_need_different_texts_and_the_generating_margin(tmp_path):
    lake = Lake.at(tmp_path / "lake")

    def pair(i: int, chosen: str, score_chosen: int) -> dict:
        return {"id": f"p{i}", "source_id": f"i{i}", "prompt": "Name a fruit.", "chosen": chosen, "rejected": "A carrot."} | {
            "score_chosen": score_chosen,
            "score_rejected": 3,
            "judge": "j",
            "n_responses": 2,
            **synthetic_provenance(i),
        }

    rows = [pair(0, "An apple.", 8), pair(1, " A carrot. ", 9), pair(2, "A pear.", 4)]
    write_rows(lake, SYNTHETIC_PREFERENCES, rows, PREFERENCES_SCHEMA, "pairs", parameters={"margin": 2})
    assert failures(validate(lake, SYNTHETIC_PREFERENCES)) == {
        "expect_column_values_to_be_in_set(chosen_equals_rejected)": ["p1"],
        "expect_column_values_to_be_between(score_gap)": ["p2"],  # gap 1 < the run's margin 2
    }


def test_token_shards_are_checked_for_ids_offsets_and_document_count(tmp_path):
    lake = tokenized_lake(tmp_path / "lake")
    tokens = "tokens/tok/documents"
    assert validate(lake, tokens).success
    assert require_passed(lake, tokens, required=True).success  # current: a token dataset's version is its run

    shard = sorted((tmp_path / "lake" / tokens / "train").glob("*.bin"))[0]
    ids = np.fromfile(shard, dtype=np.uint16)
    ids[3] = 401  # the vocabulary has 400
    ids.tofile(shard)
    write_rows(
        lake, DOCUMENTS_DEDUP, document_rows("deu_Latn", 3)[:0] + [document_rows("jpn_Jpan", 1)[0]], DOCUMENTS_SCHEMA, "more"
    )
    failed = failures(validate(lake, tokens))
    assert failed["expect_column_values_to_be_between(max_id)"] == [f"train/{shard.name}"]
    assert set(failed) == {"expect_column_values_to_be_between(max_id)", "expect_column_sum_to_be_between(documents)"}
    with pytest.raises(GateFailed, match="expect_column_values_to_be_between"):
        require_passed(lake, tokens)


def test_a_stale_validation_counts_as_none_and_warn_only_does_not_block(tmp_path):
    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 5})
    rows = document_rows("fra_Latn", 2)
    rows[0]["lang_score"] = 2.0
    write_rows(lake, DOCUMENTS_DEDUP, rows, DOCUMENTS_SCHEMA, "extra")
    summary = validate(lake, DOCUMENTS_DEDUP, ValidateConfig(warn_only=True))
    assert not summary.success and not summary.blocks and require_passed(lake, DOCUMENTS_DEDUP) == summary
    write_rows(lake, DOCUMENTS_DEDUP, document_rows("deu_Latn", 2), DOCUMENTS_SCHEMA, "later")
    assert summary.version != dataset_version(lake, DOCUMENTS_DEDUP)
    assert current_quality_summary(lake, DOCUMENTS_DEDUP) is None and require_passed(lake, DOCUMENTS_DEDUP) is None
    with pytest.raises(GateFailed, match="no validation of its current version: run `lmforge validate documents/dedup`"):
        require_passed(lake, DOCUMENTS_DEDUP, required=True)


def test_an_unknown_expectation_or_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(
        ValueError,
        match="unknown GX expectation 'expect_column_values_to_be_uniq'; did you mean expect_column_values_to_be_unique",
    ):
        ValidateConfig(expectations=[{"kind": "documents", "type": "expect_column_values_to_be_uniq"}])
    with pytest.raises(ValueError, match="unknown dataset kind 'docs'"):
        ValidateConfig(expectations=[{"kind": "docs", "type": "expect_column_values_to_be_unique"}])
    lake = Lake.at(tmp_path / "lake")
    with pytest.raises(QualityError, match="unknown dataset 'nope': expected one of documents_clean, documents"):
        resolve(lake, "nope")
    with pytest.raises(QualityError, match="has no manifest"):
        validate(lake, DOCUMENTS_DEDUP)


def test_a_configured_expectation_is_added_to_its_kind(tmp_path):
    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 10})
    extra = {"kind": "documents", "type": "expect_column_values_to_be_between", "kwargs": {"column": "n_chars", "max_value": 60}}
    summary = validate(lake, DOCUMENTS_DEDUP, ValidateConfig(expectations=[extra]))
    failed = failures(summary)
    assert (
        list(failed) == ["expect_column_values_to_be_between(n_chars)"] and failed["expect_column_values_to_be_between(n_chars)"]
    )


def test_lmforge_validate_prints_the_gates_and_fails_on_a_broken_dataset(tmp_path, prefect_harness):
    from test_console import lmforge

    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 6, "fra_Latn": 4})
    done = lmforge("validate", "documents", "--lake", lake.root)
    assert done.returncode == 0, done.stdout
    assert "documents/dedup" in done.stdout and "passed" in done.stdout and "Traceback" not in done.stdout
    assert "quality/documents/dedup/docs/index.html" in done.stdout

    rows = document_rows("deu_Latn", 2)
    rows[1]["lang_score"] = 3.0
    write_rows(lake, DOCUMENTS_DEDUP, rows, DOCUMENTS_SCHEMA, "bad")
    failed = lmforge("validate", "--lake", lake.root)  # every dataset of the lake
    assert failed.returncode == 1 and "FAILED" in failed.stdout and "Traceback" not in failed.stdout
    assert "expect_column_values_to_be_between(lang_score) on " in failed.stdout and ":deu_Latn-1" in failed.stdout
    warned = lmforge("validate", "documents", "--warn-only", "--lake", lake.root)
    assert warned.returncode == 0 and "warning" in warned.stdout

    unknown = tmp_path / "more.json"
    unknown.write_text(json.dumps([{"kind": "documents", "type": "expect_column_values_to_be_uniq"}]))
    bad_config = lmforge("validate", "--expectations", str(unknown), "--lake", lake.root)
    assert bad_config.returncode == 1 and "did you mean expect_column_values_to_be_unique" in bad_config.stdout
    assert len(bad_config.stdout.strip().splitlines()) == 1


def test_a_failed_gate_stops_tokenize_naming_expectation_shard_and_rows(tmp_path, prefect_harness):
    from flows.tokens import tokenize_flow
    from flows.validate import validate_flow
    from model.tokens import TokenizeConfig
    from tokenizer_training.train import TokenizerConfig, train_tokenizer

    lake = documents_lake(tmp_path / "lake", {"eng_Latn": 20, "fra_Latn": 10})
    train_tokenizer(lake, TokenizerConfig(name="tok", vocab_size=300))
    rows = document_rows("deu_Latn", 3)
    rows[2]["text"] = rows[2]["text"] + " write to me at jo@example.net"
    rows[2]["n_chars"] = len(rows[2]["text"])
    path = write_rows(lake, DOCUMENTS_DEDUP, rows, DOCUMENTS_SCHEMA, "leak")

    state = validate_flow(["documents"], lake.root, return_state=True)
    assert state.is_failed()
    with pytest.raises(GateFailed) as raised:
        tokenize_flow(TokenizeConfig(tokenizer="tok"), ["documents"], lake.root)
    message = str(raised.value)
    shard = path.rsplit("/", 1)[-1]
    assert f"expect_column_values_to_be_null(pii_left) on {shard}: 1 rows, e.g. {shard}:deu_Latn-2" in message
    assert not (tmp_path / "lake" / "tokens" / "tok" / "documents").exists()


def test_the_default_jobs_training_leaves_out_synthetic_data_that_failed_its_gate(tmp_path, prefect_harness):
    from flows.sample_training import sample_training_flow

    lake = tokenized_lake(tmp_path / "lake")
    text = "The library in the village is open from nine to six on weekdays, and on Saturday mornings."
    rows = [
        {"id": f"w{i}", "source_id": f"eng_Latn-{i}", "chunk": 0, "style": "shouty" if i == 0 else "easy", "lang": "eng_Latn"}
        | {"text": text, "source_text": text, "n_chars": len(text), "n_tokens": 20, "finish_reason": "stop"}
        | synthetic_provenance(i)
        for i in range(40)
    ]
    write_rows(lake, SYNTHETIC_WRAP, rows, WRAP_SCHEMA, "wrap")
    assert validate(lake, SYNTHETIC_WRAP).blocks
    result = sample_training_flow(lake.root, "tok", synthetic=True, pretrain_steps=4, tune_steps=2)
    assert result.mixture == "documents:1"  # the failed rephrasings are not trained on
    assert [s.dataset for s in result.quality] == ["tokens/tok/documents"] and result.quality[0].success
