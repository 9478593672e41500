"""Dedup on real datatrove executors: what is removed, what is kept, and what bad input gets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from builders import PROSE, list_run, run_id
from planted import DEFAULT_LANGS, flores_available, planted_corpus, score, write_clean_shards

from pipelines.dedup.run import DedupConfig, run_dedup
from pipelines.dedup.steps import EXACT, NEAR, URL, normalised_url
from pipelines.lake import DOCUMENTS_CLEAN, DOCUMENTS_DEDUP, DOCUMENTS_SCHEMA, REJECTED, Lake, read_manifest, write_table
from pipelines.lake.catalog import query
from pipelines.lake.executors import ExecutorConfig
from pipelines.lake.text_keys import normalised_text

ROOT = Path(__file__).resolve().parents[1]
FLORES = ROOT.parent / "shared" / "data" / "flores200-dev"
ENGLISH = " ".join(PROSE["en"])
LOCAL = DedupConfig(executor=ExecutorConfig(workers=1))


def doc(id: str, text: str, lang: str = "eng_Latn", url: str | None = None) -> dict:
    return {"id": id, "text": text, "url": url, "source": "test", "lang": lang, "lang_score": 0.9,
            "n_chars": len(text), "n_words": len(text.split()), "date": None, "content_type": "text/plain",
            "minhash_cluster_size": None}  # fmt: skip


def put_clean(lake: Lake, docs: list[dict], name: str = "part") -> None:
    """Write documents as the clean shards of one listed run named after `name`, one per language, in the order given."""
    by_lang: dict[str, list[dict]] = {}
    for d in docs:
        by_lang.setdefault(d["lang"], []).append(d)
    run = run_id(name)
    for lang, rows in by_lang.items():
        write_table(lake, DOCUMENTS_CLEAN, f"lang={lang}/{run}_00000.parquet", pa.Table.from_pylist(rows, DOCUMENTS_SCHEMA))
    list_run(lake, run, DOCUMENTS_CLEAN)


def rows(lake: Lake, dataset: str, prefix: str = "") -> list[dict]:
    return [r for s in lake.shards(dataset) if prefix in s for r in pq.read_table(s).to_pylist()]


def kept(lake: Lake) -> dict[str, dict]:
    return {r["id"]: r for r in rows(lake, DOCUMENTS_DEDUP)}


def removed(lake: Lake) -> dict[str, dict]:
    return {r["id"]: r for r in rows(lake, REJECTED, "/dedup/")}


def edit(text: str, every: int) -> str:
    """Replace every `every`-th word: a near-duplicate."""
    return " ".join("changed" if i % every == every - 1 else w for i, w in enumerate(text.split()))


def test_keys_normalise_what_should_not_count():
    assert normalised_text("Ｈello\u00a0  World\n") == normalised_text("hello world")
    assert normalised_url("HTTPS://www.Example.org:443/a/?b=2&a=1#top") == normalised_url("http://example.org/a?a=1&b=2")
    assert normalised_url("http://example.org/a") != normalised_url("http://example.org/b")


def test_exact_url_and_near_duplicates_are_removed_with_the_id_they_duplicate(tmp_path):
    lake = Lake.at(tmp_path)
    french, german = " ".join(PROSE["fr"]), " ".join(PROSE["de"])
    put_clean(
        lake,
        [
            doc("original", ENGLISH, url="https://example.org/library"),
            doc("shouted", ENGLISH.upper().replace(" ", "  "), url="https://example.org/copy"),
            doc("near", edit(ENGLISH, 40), url="https://example.org/near"),
            doc("same-url-short", ENGLISH[:200], url="http://www.example.org/library/"),
            doc("fr", french, "fra_Latn", url="https://example.org/fr"),
            doc("de", german, "deu_Latn", url="https://example.org/de"),
            doc("de-near", edit(german, 50), "deu_Latn", url="https://example.org/de-2"),
        ],
    )
    result = run_dedup(lake, LOCAL)

    assert set(kept(lake)) == {"original", "fr", "de"}
    gone = removed(lake)
    assert {k: (v["reason"], v["duplicate_of"]) for k, v in gone.items()} == {
        "shouted": (EXACT, "original"),
        "same-url-short": (URL, "original"),
        "near": (NEAR, "original"),
        "de-near": (NEAR, "de"),
    }
    assert kept(lake)["original"]["minhash_cluster_size"] == 4
    assert kept(lake)["de"]["minhash_cluster_size"] == 2
    assert kept(lake)["fr"]["minhash_cluster_size"] == 1
    assert (result.documents, result.kept, result.removed) == (7, 3, {EXACT: 1, URL: 1, NEAR: 2})
    assert result.by_language["deu_Latn"] == {"in": 2, "kept": 1, NEAR: 1}
    # the catalog's `documents` view is the dedup output; rejections say what they duplicate
    assert query(lake, "SELECT count(*) FROM documents").rows == [(3,)]
    assert query(lake, "SELECT duplicate_of FROM rejected WHERE id = 'near'").rows == [("original",)]


def test_url_dedup_keeps_the_longest_page(tmp_path):
    lake = Lake.at(tmp_path)
    put_clean(
        lake,
        [
            doc("short", " ".join(PROSE["en"][:2]), url="https://example.org/page"),
            doc("long", " ".join(PROSE["fr"]), "fra_Latn", url="https://example.org/page#section"),
        ],
    )
    run_dedup(lake, LOCAL)
    assert set(kept(lake)) == {"long"}
    assert removed(lake)["short"]["duplicate_of"] == "long"


def test_each_kind_can_be_switched_off(tmp_path):
    lake = Lake.at(tmp_path)
    put_clean(lake, [doc("a", ENGLISH, url="https://e.org/x"), doc("b", ENGLISH, url="https://e.org/x")])
    run_dedup(lake, DedupConfig(exact=False, url=False, minhash=False, executor=ExecutorConfig(workers=1)))
    assert set(kept(lake)) == {"a", "b"}
    run_dedup(lake, DedupConfig(exact=False, url=True, minhash=False, executor=ExecutorConfig(workers=1)))
    assert set(kept(lake)) == {"a"} and removed(lake)["b"]["reason"] == URL


def test_an_empty_lake_gives_an_empty_dedup(tmp_path):
    lake = Lake.at(tmp_path)
    result = run_dedup(lake, LOCAL)
    assert (result.documents, result.kept, result.duplicates) == (0, 0, 0)
    assert query(lake, "SELECT count(*) FROM documents").rows == [(0,)]
    assert read_manifest(lake, DOCUMENTS_DEDUP).rows == 0


def test_a_single_document_is_kept(tmp_path):
    lake = Lake.at(tmp_path)
    put_clean(lake, [doc("only", ENGLISH)])
    result = run_dedup(lake, LOCAL)
    assert (result.documents, result.kept) == (1, 1)
    assert kept(lake)["only"]["minhash_cluster_size"] == 1


def test_documents_shorter_than_a_shingle_are_deduplicated_exactly_and_otherwise_kept(tmp_path):
    lake = Lake.at(tmp_path)
    put_clean(lake, [doc("a", "Hello there"), doc("b", "hello   THERE"), doc("c", "Goodbye now"), doc("d", "one")])
    run_dedup(lake, LOCAL)
    assert set(kept(lake)) == {"a", "c", "d"}
    assert removed(lake)["b"]["reason"] == EXACT


def test_all_duplicate_input_keeps_exactly_one(tmp_path):
    lake = Lake.at(tmp_path)
    put_clean(lake, [doc(f"copy-{i}", ENGLISH, url=f"https://mirror{i}.org/") for i in range(50)])
    result = run_dedup(lake, LOCAL)
    assert set(kept(lake)) == {"copy-0"}
    assert kept(lake)["copy-0"]["minhash_cluster_size"] == 50
    assert result.removed == {EXACT: 49}


def flores_document(lang: str, start: int, sentences: int = 12) -> str:
    lines = (FLORES / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
    return " ".join(lines[start : start + sentences])


@pytest.mark.skipif(not FLORES.is_dir(), reason=f"needs the shared test data folder {FLORES}")
@pytest.mark.parametrize("lang", ["zho_Hans", "jpn_Jpan", "tha_Thai"])
def test_scripts_without_spaces_find_their_near_duplicates(tmp_path, lang):
    lake = Lake.at(tmp_path)
    text = flores_document(lang, 0)
    variant = text[: len(text) * 97 // 100]  # the last 3% cut off
    put_clean(lake, [doc("a", text, lang), doc("b", variant, lang), doc("c", flores_document(lang, 100), lang)])
    run_dedup(lake, LOCAL)
    assert set(kept(lake)) == {"a", "c"}
    assert removed(lake)["b"]["reason"] == NEAR


def test_a_second_run_on_an_unchanged_lake_does_nothing_and_new_data_replaces_the_old_run(tmp_path):
    lake = Lake.at(tmp_path)
    put_clean(lake, [doc("a", ENGLISH), doc("b", ENGLISH)], name="first")
    first = run_dedup(lake, LOCAL)
    again = run_dedup(lake, LOCAL)
    assert again.skipped and again.run == first.run and (again.kept, again.removed) == (1, {EXACT: 1})

    put_clean(lake, [doc("c", " ".join(PROSE["fr"]), "fra_Latn"), doc("d", ENGLISH)], name="second")
    second = run_dedup(lake, LOCAL)
    assert second.run != first.run
    assert set(kept(lake)) == {"a", "c"} and set(removed(lake)) == {"b", "d"}
    assert all(second.run in s for s in lake.shards(DOCUMENTS_DEDUP))  # nothing of the first run is left
    assert [r.run for r in read_manifest(lake, DOCUMENTS_DEDUP).runs] == [second.run]


@pytest.mark.skipif(not flores_available(), reason=f"needs the shared test data folder {FLORES}")
def test_planted_near_duplicates_are_found_and_nothing_unrelated_is_removed(tmp_path):
    """Every planted kind, seven languages (three without spaces), through the whole dedup."""
    corpus = planted_corpus(n_originals=140, langs=DEFAULT_LANGS, planted_fraction=0.5, variants_per_group=3, seed=7)
    lake = Lake.at(tmp_path)
    write_clean_shards(lake, corpus)
    config = DedupConfig(executor=ExecutorConfig(workers=1), url=False)
    run_dedup(lake, config)
    result = score(corpus, set(removed(lake)), config.threshold)
    assert result.fp == 0 and result.originals_removed == 0, result  # precision: nothing unrelated goes
    assert result.f1 >= 0.95, result
    assert result.per_kind["exact"]["recall"] == 1.0 and result.per_kind["edit_1"]["recall"] == 1.0


KILLABLE = textwrap.dedent(
    """
    import sys
    from pipelines.dedup.run import DedupConfig, run_dedup
    from pipelines.lake.executors import ExecutorConfig
    from pipelines.lake import Lake
    run_dedup(Lake.at(sys.argv[1]), DedupConfig(max_tasks=8, executor=ExecutorConfig(workers=1)))
    """
)


def dedup_in_subprocess(lake: Lake) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    log = open(f"{lake.root}.{time.monotonic_ns()}.log", "wb")  # the child writes it
    return subprocess.Popen([sys.executable, "-c", KILLABLE, lake.root], env=env, stdout=subprocess.DEVNULL, stderr=log)


def dedup_contents(lake: Lake) -> tuple[list, list, list[str]]:
    docs = sorted((d["id"], d["text"], d["minhash_cluster_size"]) for d in rows(lake, DOCUMENTS_DEDUP))
    gone = sorted((r["id"], r["reason"], r["duplicate_of"]) for r in rows(lake, REJECTED, "/dedup/"))
    names = [s[len(lake.root) :] for s in lake.shards(DOCUMENTS_DEDUP) + lake.shards(REJECTED)]
    return docs, gone, names


@pytest.mark.slow
def test_a_killed_dedup_resumes_to_exactly_the_uninterrupted_result(tmp_path):
    corpus = []
    for part in range(8):
        for i, lang in enumerate(("en", "fr", "de")):
            text = " ".join(PROSE[lang])
            corpus.append(
                doc(f"{part}-{lang}", edit(text, 100 + part) if part else text, f"{lang}_Latn", f"https://e.org/{part}/{i}")
            )
    lakes = {name: Lake.at(tmp_path / name) for name in ("reference", "killed")}
    for lake in lakes.values():
        for part in range(8):
            put_clean(lake, corpus[part * 3 : part * 3 + 3], name=f"part{part}")

    assert dedup_in_subprocess(lakes["reference"]).wait(timeout=300) == 0
    killed = lakes["killed"]
    proc = dedup_in_subprocess(killed)
    completions = Path(killed.root) / DOCUMENTS_DEDUP / "_datatrove"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(completions.glob("*/buckets/completions/*")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(completions.glob("*/filter/completions/*")), "the kill must land midway"

    assert dedup_in_subprocess(killed).wait(timeout=300) == 0
    assert dedup_contents(killed) == dedup_contents(lakes["reference"])
    assert len(dedup_contents(killed)[0]) == 3


def test_flow_publishes_the_per_language_table_and_summary(tmp_path, prefect_harness):
    import asyncio
    import json

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.dedup import dedup_flow

    lake = Lake.at(tmp_path)
    put_clean(lake, [doc("a", ENGLISH), doc("b", ENGLISH), doc("c", " ".join(PROSE["de"]), "deu_Latn")])
    state = dedup_flow(lake.root, LOCAL, return_state=True)

    async def artifacts() -> dict:
        async with get_client() as client:
            of_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
            return {a.key: a.data for a in await client.read_artifacts(artifact_filter=of_this_run)}

    published = asyncio.run(artifacts())
    table = published["dedup-by-language"]
    table = json.loads(table) if isinstance(table, str) else table
    assert {r["language"]: (r["in"], r["kept"], r[EXACT]) for r in table} == {"eng_Latn": (2, 1, 1), "deu_Latn": (1, 1, 0)}
    assert "duplicates removed: **1**" in published["dedup-summary"] and "MinHash stage" in published["dedup-summary"]


def test_cli_dedup_prints_what_it_removed_and_rejects_an_unknown_executor(tmp_path, prefect_harness):
    from typer.testing import CliRunner

    from flows.cli import app

    lake = Lake.at(tmp_path)
    put_clean(lake, [doc("a", ENGLISH), doc("b", ENGLISH)])
    result = CliRunner().invoke(app, ["dedup", "--lake", lake.root, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "2 in, 1 kept, 1 duplicates removed" in " ".join(result.stdout.split())
    again = CliRunner().invoke(app, ["dedup", "--lake", lake.root, "--workers", "1"])
    assert again.exit_code == 0 and "already done" in again.stdout
    wrong = CliRunner().invoke(app, ["dedup", "--lake", lake.root, "--executor", "spark"])
    assert wrong.exit_code == 1 and "unknown --executor 'spark'" in wrong.stderr and "Traceback" not in wrong.output
    zero = CliRunner().invoke(app, ["dedup", "--lake", lake.root, "--ngrams", "0"])
    assert zero.exit_code == 1 and "n_grams: Input should be greater than or equal to 1" in zero.stderr
