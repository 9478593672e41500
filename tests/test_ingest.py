"""Ingest end to end: real datatrove executors, real Prefect flow runs, real DuckDB over the output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from builders import PROSE, page, plain, response, write_jsonl, write_warc
from typer.testing import CliRunner

from flows.cli import app
from pipelines.ingest.inputs import resolve_inputs
from pipelines.ingest.run import IngestConfig, run_ingest
from pipelines.lake import DOCUMENTS_CLEAN, REJECTED, Lake, read_manifest
from pipelines.lake.catalog import query

ROOT = Path(__file__).resolve().parents[1]

XHTML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en"><head><title>XHTML page</title></head>'
    "<body><div>" + "".join(f"<p>{p}</p>" for p in PROSE["en"]) + "</div></body></html>"
)


def table(lake: Lake, dataset: str) -> list[dict]:
    shards = lake.shards(dataset)
    return ds.dataset(shards, format="parquet").to_table().to_pylist() if shards else []


@pytest.fixture
def mixed_inputs(tmp_path) -> list[str]:
    """A WARC with pages in four languages plus planted bad records, and a JSONL with bad lines."""
    warc = write_warc(
        tmp_path / "crawl one.warc.gz",
        [
            response("https://example.org/en", page("en").encode()),
            response(
                "https://example.org/fr", page("fr").encode("latin-1", "xmlcharrefreplace"), "text/html; charset=iso-8859-1"
            ),
            response("https://example.org/de", page("de").encode()),
            response("https://example.org/ja", page("ja").encode("shift_jis"), "text/html", None),
            response("https://example.org/xhtml", XHTML.encode(), "application/xhtml+xml", None),
            response(
                "https://example.org/pii",
                page("en", "Contact page", "<p>Write to jane.doe@example.net or ping 8.8.8.8 for more news.</p>").encode(),
            ),
            response("https://example.org/short", b"<html><body><p>Too short to keep.</p></body></html>"),
            response("https://example.org/binary", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8),
            response("https://example.org/empty", b"   \n "),
        ],
    )
    jsonl = write_jsonl(
        tmp_path / "notes.jsonl",
        [
            {"id": "n1", "text": plain("de"), "url": "https://example.org/n1"},
            "{not json",
            {"id": "n2"},
            {"id": "n3", "text": None},
            {"id": "n1", "text": plain("fr")},
        ],
    )
    return [str(warc), str(jsonl)]


def test_ingest_flow_keeps_every_language_and_sets_aside_bad_records(mixed_inputs, tmp_path, prefect_harness):
    from flows.ingest import ingest_flow

    lake = Lake.at(tmp_path / "lake")
    result = ingest_flow(mixed_inputs, lake.root, IngestConfig(workers=1))

    docs = {d["url"]: d for d in table(lake, DOCUMENTS_CLEAN)}
    assert {d["lang"] for d in docs.values()} == {"eng_Latn", "fra_Latn", "deu_Latn", "jpn_Jpan"}
    assert "bibliothèque" in docs["https://example.org/fr"]["text"]  # Latin-1 decoded right
    assert "図書館" in docs["https://example.org/ja"]["text"]  # undeclared Shift-JIS decoded right
    assert "https://example.org/xhtml" in docs  # XHTML is not lost
    assert "jane.doe@example.net" not in docs["https://example.org/pii"]["text"]
    assert "8.8.8.8" not in docs["https://example.org/pii"]["text"]
    assert docs["https://example.org/n1"]["source"] == mixed_inputs[1]

    rejected = {(r["id"] if r["url"] is None else r["url"], r["reason"]) for r in table(lake, REJECTED)}
    reasons = {reason for _, reason in rejected}
    assert {"binary_body", "empty_body", "invalid_json", "missing_text", "null_text", "duplicate_id"} <= reasons
    short = [r["step"] for r in table(lake, REJECTED) if r["url"] == "https://example.org/short"]
    assert short in (["gopher_repetition"], ["gopher_quality"], ["language"])  # a thin page fails on quality
    # nothing lost: every WARC response is either kept or set aside
    warc_urls = {u for u in docs if u.startswith("https://example.org/") and not u.endswith("/n1")}
    warc_rejects = {url for url, _ in rejected if str(url).startswith("https://example.org/")}
    assert len(warc_urls | warc_rejects) == 9
    assert result.documents == len(docs) and result.rejected == len(table(lake, REJECTED))
    assert len(result.step_stats) == 10  # reader, set-aside, extraction, LID, 4 filters, PII, writer

    catalog = query(lake, "SELECT lang, count(*) FROM documents_clean GROUP BY lang ORDER BY lang")
    assert dict(catalog.rows) == {"deu_Latn": 2, "eng_Latn": 3, "fra_Latn": 1, "jpn_Jpan": 1}
    manifest = read_manifest(lake, DOCUMENTS_CLEAN)
    assert manifest.rows == len(docs) and manifest.runs[0].inputs[0].sha256


def test_flow_publishes_step_stats_and_summary_artifacts(mixed_inputs, tmp_path, prefect_harness):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.ingest import ingest_flow

    state = ingest_flow(mixed_inputs, str(tmp_path / "lake"), IngestConfig(workers=1), return_state=True)
    flow_run = state.state_details.flow_run_id

    async def artifacts() -> dict:
        async with get_client() as client:
            of_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run]))
            found = await client.read_artifacts(artifact_filter=of_this_run)
        return {a.key: a.data for a in found}

    published = asyncio.run(artifacts())
    steps = published["ingest-step-stats"]
    steps = json.loads(steps) if isinstance(steps, str) else steps
    by_step = {row["step"]: row for row in steps}
    assert any("gopher_quality" in name for name in by_step) and all("ms/doc" in row for row in steps)
    assert "Kept, by language" in published["ingest-summary"] and "jpn_Jpan" in published["ingest-summary"]


def test_reingesting_the_same_input_changes_nothing(mixed_inputs, tmp_path):
    lake = Lake.at(tmp_path / "lake")
    items = resolve_inputs(mixed_inputs)
    first = run_ingest(items, lake, IngestConfig(workers=1))
    shards = lake.shards(DOCUMENTS_CLEAN)
    second = run_ingest(items, lake, IngestConfig(workers=1))
    assert (second.run, second.documents, second.rejected) == (first.run, first.documents, first.rejected)
    assert lake.shards(DOCUMENTS_CLEAN) == shards
    assert len(read_manifest(lake, DOCUMENTS_CLEAN).runs) == 1


def test_cli_exits_non_zero_naming_each_unusable_input(mixed_inputs, tmp_path, prefect_harness):
    not_gzip = tmp_path / "fake.warc.gz"
    not_gzip.write_bytes(b"this is not gzip at all")
    empty = tmp_path / "zero byte.jsonl"
    empty.write_bytes(b"")
    result = CliRunner().invoke(
        app, ["ingest", *mixed_inputs, str(not_gzip), str(empty), "--lake", str(tmp_path / "lake"), "--workers", "1"]
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any(str(not_gzip) in e for e in errors) and any(str(empty) in e for e in errors)
    kept = query(Lake.at(tmp_path / "lake"), "SELECT count(*) FROM documents_clean").rows[0][0]
    assert kept == 7  # the good inputs were still ingested


def test_cli_missing_input_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "nope.warc.gz"), "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 1
    assert "nope.warc.gz" in result.stderr and "Traceback" not in result.output


KILLABLE = textwrap.dedent(
    """
    import sys
    from pipelines.ingest.run import IngestConfig, run_ingest
    from pipelines.ingest.inputs import resolve_inputs
    from pipelines.lake import Lake
    run_ingest(resolve_inputs(sys.argv[2:]), Lake.at(sys.argv[1]), IngestConfig(workers=1, max_tasks=8))
    """
)


def ingest_in_subprocess(lake: Path, inputs: list[str]) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(lake), *inputs], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def lake_contents(lake: Lake) -> tuple[list, list, list[str]]:
    docs = sorted((d["id"], d["lang"], d["text"]) for d in table(lake, DOCUMENTS_CLEAN))
    rejected = sorted((r["id"], r["step"], r["reason"]) for r in table(lake, REJECTED))
    names = [s[len(lake.root) :] for s in lake.shards(DOCUMENTS_CLEAN) + lake.shards(REJECTED)]
    return docs, rejected, names


@pytest.mark.slow
def test_a_killed_ingest_resumes_to_exactly_the_uninterrupted_result(tmp_path):
    inputs = []
    for i in range(8):
        records = [response(f"https://example.org/{i}/{lang}", page(lang, f"Page {i}").encode()) for lang in PROSE]
        records.append(response(f"https://example.org/{i}/bad", b"\x00\x01\x02" * 100))
        inputs.append(str(write_warc(tmp_path / f"part-{i}.warc.gz", records)))

    reference = Lake.at(tmp_path / "reference")
    assert ingest_in_subprocess(Path(reference.root), inputs).wait(timeout=300) == 0

    killed = Lake.at(tmp_path / "killed")
    proc = ingest_in_subprocess(Path(killed.root), inputs)
    completions = Path(killed.root) / DOCUMENTS_CLEAN / "_datatrove"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        done = list(completions.glob("*/completions/*"))
        if len(done) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= len(list(completions.glob("*/completions/*"))) < 8, "the kill must land midway"

    assert ingest_in_subprocess(Path(killed.root), inputs).wait(timeout=300) == 0
    assert lake_contents(killed) == lake_contents(reference)
    assert len(lake_contents(reference)[0]) == 8 * len(PROSE)


def test_huge_and_deeply_nested_pages_are_set_aside_or_kept_never_lost(tmp_path):
    huge = ("<html><body>" + "<p>" + "word " * 6_000_000 + "</p></body></html>").encode()  # 30 MB
    nested = ("<html><body>" + "<div>" * 10_000 + plain("en") + "</div>" * 10_000 + "</body></html>").encode()
    warc = write_warc(
        tmp_path / "big.warc.gz",
        [
            response("https://example.org/huge", huge),
            response("https://example.org/nested", nested),
            response("https://example.org/good", page("en").encode()),
        ],
    )
    lake = Lake.at(tmp_path / "lake")
    result = run_ingest(resolve_inputs([str(warc)]), lake, IngestConfig(workers=1))
    kept = {d["url"] for d in table(lake, DOCUMENTS_CLEAN)}
    set_aside = {r["url"]: r["reason"] for r in table(lake, REJECTED)}
    assert "https://example.org/good" in kept
    assert kept | set(set_aside) == {"https://example.org/huge", "https://example.org/nested", "https://example.org/good"}
    assert not kept & set(set_aside)
    steps = {r["url"]: r["step"] for r in table(lake, REJECTED)}
    # no text, a timeout, a text no language claims, or repetition: set aside with its reason either way
    assert steps["https://example.org/huge"] in {"extract", "language", "gopher_repetition"}
    assert result.documents + result.rejected == 3


DEBIAN_REFERENCE = Path("/usr/share/debian-reference")


@pytest.mark.skipif(not DEBIAN_REFERENCE.is_dir(), reason="needs Debian's documentation packages (make installs them)")
def test_debian_sample_loses_no_page_and_finds_many_languages(tmp_path):
    from pipelines.ingest.sample import default_sources, pack_html

    report = pack_html(default_sources(), tmp_path / "sample.warc.gz", max_pages_per_folder=4)
    lake = Lake.at(tmp_path / "lake")
    result = run_ingest(resolve_inputs([report.warc_path]), lake, IngestConfig(workers=2))
    assert result.documents + result.rejected == report.pages  # every page kept or set aside with a reason
    assert not result.unusable
    langs = query(lake, "SELECT DISTINCT lang FROM documents_clean").rows
    assert len(langs) >= 10 and ("jpn_Jpan",) in langs and ("fra_Latn",) in langs
    reasons = dict(query(lake, "SELECT step, count(*) FROM rejected GROUP BY step").rows)
    assert "read" not in reasons  # real, well-formed pages: nothing lost at the reader


def test_cli_folder_without_inputs_is_one_clear_line(tmp_path, prefect_harness):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an input kind")
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "empty"), "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 1
    assert "nothing to ingest" in result.stderr and "Traceback" not in result.output


def test_documents_do_not_depend_on_how_inputs_are_split_into_tasks(tmp_path):
    boilerplate = (
        "<p>Shared navigation help text that appears on every single page of this small site, "
        "long enough for trafilatura to remember it between documents.</p>"
    )
    inputs = []
    for i in range(3):
        pages = [response(f"https://example.org/{i}/{lang}", page(lang, f"P{i}", boilerplate).encode()) for lang in PROSE]
        inputs.append(str(write_warc(tmp_path / f"p{i}.warc.gz", pages)))
    items = resolve_inputs(inputs)
    one, many = Lake.at(tmp_path / "one"), Lake.at(tmp_path / "many")
    run_ingest(items, one, IngestConfig(workers=1, max_tasks=1))
    run_ingest(items, many, IngestConfig(workers=1, max_tasks=3))
    assert lake_contents(one)[:2] == lake_contents(many)[:2]
    assert all("Shared navigation" in text for _, _, text in lake_contents(one)[0])
