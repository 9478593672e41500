"""`lmforge tokenizer train|report` and their Prefect flows: real flows, real files, artifacts, one-line errors."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from builders import documents_lake
from typer.testing import CliRunner

from flows.cli import app
from pipelines.lake import TOKENIZERS

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (FLORES and the reference rank files)")
COUNTS = {"eng_Latn": 60, "fra_Latn": 30, "deu_Latn": 20, "jpn_Jpan": 8}


def words(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture
def lake(tmp_path):
    return documents_lake(tmp_path / "lake", COUNTS)


def test_cli_trains_a_tokenizer_then_reports_a_noop_on_the_same_data(lake, prefect_harness):
    args = ["tokenizer", "train", "--name", "t1", "--vocab-size", "400", "--lake", lake.root]
    first = CliRunner().invoke(app, [*args, "--languages", "eng_Latn", "--languages", "jpn_Jpan", "--alpha", "0"])
    assert first.exit_code == 0, first.output
    assert "tokenizer t1: 400 tokens" in words(first.stdout) and "jpn_Jpan" in first.stdout and "fra_Latn" not in first.stdout
    manifest = json.loads(Path(lake.path(TOKENIZERS, "t1", "_manifest.json")).read_text())
    assert set(manifest["languages"]) == {"eng_Latn", "jpn_Jpan"} and manifest["parameters"]["alpha"] == 0.0
    again = CliRunner().invoke(app, [*args, "--languages", "eng_Latn", "--languages", "jpn_Jpan", "--alpha", "0"])
    assert again.exit_code == 0 and "already trained" in again.stdout


def test_cli_training_errors_are_one_line(tmp_path, lake, prefect_harness):
    small = CliRunner().invoke(app, ["tokenizer", "train", "--name", "t", "--vocab-size", "100", "--lake", lake.root])
    assert small.exit_code == 1 and "at least 260" in small.stderr and "Traceback" not in small.output
    nowhere = str(tmp_path / "none")
    empty = CliRunner().invoke(app, ["tokenizer", "train", "--name", "t", "--vocab-size", "300", "--lake", nowhere])
    assert empty.exit_code == 1 and "lmforge ingest" in words(empty.stderr) and "Traceback" not in empty.output
    CliRunner().invoke(app, ["tokenizer", "train", "--name", "t", "--vocab-size", "300", "--lake", lake.root])
    taken = CliRunner().invoke(app, ["tokenizer", "train", "--name", "t", "--vocab-size", "320", "--lake", lake.root])
    assert taken.exit_code == 1 and "--overwrite" in words(taken.stderr)


@needs_shared
def test_report_flow_writes_every_file_and_publishes_artifacts(lake, tmp_path, prefect_harness):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.tokenizer import tokenizer_report_flow, train_tokenizer_flow
    from tokenizer_training.train import TokenizerConfig

    trained = train_tokenizer_flow(TokenizerConfig(name="ours", vocab_size=500), lake.root)
    parallel = tmp_path / "parallel"
    parallel.mkdir()
    for lang in ("eng_Latn", "fra_Latn", "tha_Thai"):
        shutil.copy(SHARED / "flores200-dev" / f"{lang}.txt", parallel)
    out = tmp_path / "report"
    tokenizers = [trained.path, str(SHARED / "tokenizers" / "r50k_base.tiktoken")]
    state = tokenizer_report_flow(tokenizers, lake.root, str(parallel), 2.5, str(out), return_state=True)
    result = state.result()
    report = json.loads((out / "report.json").read_text())
    assert set(report["tokenizers"]) == {"ours", "r50k_base"}
    for name, entry in report["tokenizers"].items():
        assert set(entry["languages"]) == {"eng_Latn", "fra_Latn", "tha_Thai"}
        assert entry["languages"]["eng_Latn"]["premium"] == 1.0
        assert {"tokens", "bytes", "chars", "words", "premium"} <= set(entry["languages"]["tha_Thai"])
    # languages the lake has and the parallel folder lacks are measured on held-out documents, ours only
    assert set(report["tokenizers"]["ours"]["heldout"]) == {"deu_Latn", "jpn_Jpan"}
    assert report["price_per_1m_tokens"] == 2.5 and result.files.html.is_file()
    assert all(Path(p).is_file() for p in result.files.charts.values())

    async def artifacts() -> dict:
        async with get_client() as client:
            of_this_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
            return {a.key: a for a in await client.read_artifacts(artifact_filter=of_this_run)}

    published = asyncio.run(artifacts())
    assert {"tokenizer-report", "tokenizer-premium", "tokenizer-report-html"} <= set(published)
    assert "tha_Thai" in published["tokenizer-report"].data


@needs_shared
def test_cli_report_refuses_unaligned_files_and_unknown_tokenizers_without_writing(lake, tmp_path, prefect_harness):
    parallel = tmp_path / "parallel"
    parallel.mkdir()
    shutil.copy(SHARED / "flores200-dev" / "eng_Latn.txt", parallel)
    lines = (SHARED / "flores200-dev" / "fra_Latn.txt").read_text().splitlines(keepends=True)
    (parallel / "fra_Latn.txt").write_text("".join(lines[:-1]))
    out = tmp_path / "report"
    r50k = str(SHARED / "tokenizers" / "r50k_base.tiktoken")
    base = ["tokenizer", "report", "--lake", lake.root, "--out", str(out)]
    unaligned = CliRunner().invoke(app, [*base, "--tokenizer", r50k, "--parallel", str(parallel)])
    assert unaligned.exit_code == 1 and "Traceback" not in unaligned.output
    assert "eng_Latn.txt" in unaligned.stderr and "fra_Latn.txt" in unaligned.stderr
    model = tmp_path / "spm.model"
    model.write_bytes(b"\x00\x01")
    unknown = CliRunner().invoke(app, [*base, "--tokenizer", str(model), "--parallel", str(SHARED / "flores200-dev")])
    assert unknown.exit_code == 1 and "tiktoken" in unknown.stderr and "Traceback" not in unknown.output
    nothing = CliRunner().invoke(app, [*base, "--tokenizer", r50k])  # no aligned text, no lake tokenizer
    assert nothing.exit_code == 1 and "--parallel" in nothing.stderr
    assert not out.exists()


@needs_shared
def test_cli_report_by_lake_name_prints_the_premium_table(lake, tmp_path, prefect_harness):
    CliRunner().invoke(app, ["tokenizer", "train", "--name", "small", "--vocab-size", "400", "--lake", lake.root])
    result = CliRunner().invoke(
        app,
        ["tokenizer", "report", "--tokenizer", "small", "--tokenizer", str(SHARED / "tokenizers" / "o200k_base.tiktoken"),
         "--parallel", str(SHARED / "flores200-dev"), "--lake", lake.root, "--price-per-1m-tokens", "3"],
    )
    assert result.exit_code == 0, result.output
    assert "premium" in result.stdout and "Shan" in result.stdout and "o200k_base" in result.stdout
    assert Path(lake.path("reports", "tokenizer", "report.html")).is_file()
