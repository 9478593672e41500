"""What a user sees on the console: the main job reads like a short report, logs go to files, `-v` shows them.

Each command runs as a real `lmforge` process (datatrove's pool processes write to the same
terminal, which an in-process CLI runner cannot see), recording its flow runs on the test session's
Prefect server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from builders import page

from pipelines.lake import DOCUMENTS_CLEAN, DOCUMENTS_DEDUP, Lake, read_manifest
from pipelines.lake.catalog import query

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_REFERENCE = Path("/usr/share/debian-reference")
MAX_LINES = 150
DATATROVE_TASK_LOG = "Launching pipeline for rank="


def lmforge(*args: str) -> subprocess.CompletedProcess:
    """`lmforge ARGS` in its own process, stdout and stderr together as a terminal shows them."""
    from prefect.settings import PREFECT_API_URL

    env = os.environ | {"PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value(), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-c", "from flows.cli import main; main()", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )


def logs_file(output: str) -> Path:
    found = re.search(r"^logs: (\S+)", output, re.MULTILINE)
    assert found, output
    return Path(found[1])


@pytest.mark.skipif(not DEBIAN_REFERENCE.is_dir(), reason="needs Debian's documentation packages (make installs them)")
def test_lmforge_run_is_a_short_report_without_tracebacks_and_a_rerun_changes_nothing(tmp_path, prefect_harness):
    args = ["run", "--lake", str(tmp_path / "lake"), "--sample", str(tmp_path / "s" / "docs.warc.gz"), "--pages-per-folder", "2"]
    # the synthetic and training stages have their own tests (test_synth_cli.py on the shared server, test_train_cli.py)
    args += ["--no-synthetic", "--no-train"]
    first = lmforge(*args)
    assert first.returncode == 0, first.stdout
    output = first.stdout
    assert len(output.splitlines()) <= MAX_LINES, output
    assert "Traceback" not in output and "TerminationSignal" not in output
    assert DATATROVE_TASK_LOG not in output and "Stats: All" not in output  # datatrove's INFO stays in the files
    flat = " ".join(output.split())
    assert "documents in:" in flat and "removed, by reason" in flat and "duplicates removed" in flat
    assert "tokenizer sample-8k" in flat and "report.html" in flat
    assert re.search(r"sample corpus: \d+ pages, [\d.]+ MB in 4 WARCs \(.*docs-0\.warc\.gz … docs-3\.warc\.gz\)", output)
    for stage in ("ingest", "dedup", "tokenizer sample-8k", "tokenizer report"):
        assert re.search(rf"^{stage}\s.*━", output, re.MULTILINE), f"no progress bar for {stage}:\n{output}"
    log = logs_file(output).read_text()
    assert "Beginning flow run" in log and "Stats: All" in log  # Prefect's and datatrove's INFO lines went there
    assert len(list((tmp_path / "s").glob("docs-*.warc.gz"))) == 4

    lake = Lake.at(tmp_path / "lake")
    counts = "SELECT (SELECT count(*) FROM documents_clean), (SELECT count(*) FROM documents)"
    clean, deduped = query(lake, counts).rows[0]
    assert clean >= deduped > 0
    second = lmforge(*args)
    assert second.returncode == 0, second.stdout
    assert query(lake, counts).rows[0] == (clean, deduped)
    assert "already trained" in second.stdout and "Traceback" not in second.stdout
    assert len(read_manifest(lake, DOCUMENTS_CLEAN).runs) == 1 and len(read_manifest(lake, DOCUMENTS_DEDUP).runs) == 1


def test_verbose_shows_datatrove_task_logs_which_are_otherwise_only_in_files(tmp_path, prefect_harness):
    pages = tmp_path / "pages"
    pages.mkdir()
    for lang in ("en", "fr"):
        (pages / f"{lang}.html").write_text(page(lang))
    quiet = lmforge("ingest", str(pages), "--lake", str(tmp_path / "quiet"))
    loud = lmforge("ingest", str(pages), "--lake", str(tmp_path / "loud"), "-v")
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stdout + loud.stdout
    assert DATATROVE_TASK_LOG not in quiet.stdout and DATATROVE_TASK_LOG in loud.stdout
    assert "Traceback" not in quiet.stdout + loud.stdout
    task_logs = list((tmp_path / "quiet" / DOCUMENTS_CLEAN / "_datatrove").glob("*/logs/task_*.log"))
    assert task_logs and all(DATATROVE_TASK_LOG in f.read_text() for f in task_logs)
    assert logs_file(quiet.stdout).is_file() and "ingest run" in quiet.stdout
