"""The manifest is the source of truth, and `lmforge lake gc` removes what runs no manifest lists left behind.

The scene: an ingest killed midway (its first tasks' shards already published), then the same inputs
ingested with another language threshold: another run, which finishes and is listed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest
from builders import PROSE, list_run, page, response, run_id, write_warc
from test_ingest import ingest_in_subprocess
from typer.testing import CliRunner

from flows.cli import app
from pipelines.dedup.run import DedupConfig, input_shards
from pipelines.dedup.run import plan_run as plan_dedup
from pipelines.ingest.inputs import resolve_inputs
from pipelines.ingest.run import IngestConfig, plan_run, run_ingest
from pipelines.lake import DOCUMENTS_CLEAN, DOCUMENTS_SCHEMA, MANIFEST, REJECTED, Lake, listed_shards, run_shards, write_table
from pipelines.lake.catalog import CATALOG_FILE, query
from pipelines.lake.gc import GcPlan, apply_gc, plan_gc
from pipelines.lake.locks import RunInProgress, run_lock

ROOT = Path(__file__).resolve().parents[1]
KILLED = IngestConfig(workers=1, max_tasks=8)  # what `ingest_in_subprocess` runs
SECOND = IngestConfig(workers=1, max_tasks=8, language_threshold=0.5)
COUNTS = {
    "documents": "SELECT count(*) FROM documents_clean",
    "by language": "SELECT lang, count(*) FROM documents_clean GROUP BY lang ORDER BY lang",
    "rejected": "SELECT step, reason, count(*) FROM rejected GROUP BY ALL ORDER BY ALL",
    "manifests": "SELECT dataset, rows, shards FROM manifests ORDER BY dataset",
}


@dataclass(frozen=True)
class Scene:
    lake: Lake  # killed run, then the second run
    reference: Lake  # the second run alone
    killed: str
    second: str
    while_running: GcPlan  # planned (grace 0) while the killed run was still executing


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Scene:
    tmp = tmp_path_factory.mktemp("gc")
    inputs = []
    for i in range(8):
        records = [response(f"https://example.org/{i}/{lang}", page(lang, f"Page {i}").encode()) for lang in PROSE]
        records.append(response(f"https://example.org/{i}/bad", b"\x00\x01\x02" * 100))
        inputs.append(str(write_warc(tmp / f"part-{i}.warc.gz", records)))
    items = resolve_inputs(inputs)
    killed, second = plan_run(items, KILLED)[0], plan_run(items, SECOND)[0]

    lake = Lake.at(tmp / "lake")
    proc = ingest_in_subprocess(Path(lake.root), inputs)
    completions = Path(lake.root, DOCUMENTS_CLEAN, "_datatrove", killed, "completions")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(completions.glob("*")):
        time.sleep(0.01)
    while_running = plan_gc(lake, grace_minutes=0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(list(completions.glob("*"))) < 8, "the kill must land midway"

    run_ingest(items, lake, SECOND)
    reference = Lake.at(tmp / "reference")
    run_ingest(items, reference, SECOND)
    return Scene(lake, reference, killed, second, while_running)


def copy_of(lake: Lake, dest: Path) -> Lake:
    """A copy a test may change (file times kept)."""
    shutil.copytree(lake.root, dest)
    return Lake.at(dest)


def backdate(lake: Lake, hours: float) -> None:
    """Every file and folder of the lake last changed `hours` ago."""
    when = time.time() - hours * 3600
    for folder, dirs, files in os.walk(lake.root):
        for name in dirs + files:
            os.utime(os.path.join(folder, name), (when, when))


def everything(lake: Lake) -> set[str]:
    """Every file and folder under the lake, but the catalog (rebuilt by each query)."""
    return {str(p) for p in Path(lake.root).rglob("*") if CATALOG_FILE not in p.name}


def files_of(lake: Lake, run: str) -> set[str]:
    """What a run leaves behind, found by name: its shards, staging, datatrove logs and lock."""
    root = Path(lake.root)
    shards = {str(p) for p in root.glob(f"documents/**/*{run}_*.parquet") if "/_" not in str(p.relative_to(root))}
    folders = [root / "_staging" / run, root / DOCUMENTS_CLEAN / "_datatrove" / run, root / "_locks" / f"{run}.lock"]
    return shards | {str(p) for p in folders if p.exists()}


def counts(lake: Lake) -> dict[str, list]:
    return {name: query(lake, sql).rows for name, sql in COUNTS.items()}


def under(path: str, roots: set[str]) -> bool:
    return any(path == r or path.startswith(r + "/") for r in roots)


def test_every_reader_sees_only_the_runs_the_manifest_lists(scene):
    lake, reference = scene.lake, scene.reference
    assert run_shards(lake, DOCUMENTS_CLEAN, scene.killed) and run_shards(lake, REJECTED, scene.killed)  # still on disk
    assert counts(lake) == counts(reference)  # the catalog: nothing counted twice
    assert query(lake, COUNTS["documents"]).rows == [(8 * len(PROSE),)]

    def relative(shards: list[str], of: Lake) -> list[str]:
        return [s[len(of.root) :] for s in shards]

    for dataset in (DOCUMENTS_CLEAN, REJECTED):  # what the tokenizer and every other reader reads
        assert relative(listed_shards(lake, dataset), lake) == relative(listed_shards(reference, dataset), reference)
    assert input_shards(lake) == input_shards(reference)  # dedup's input: no orphan deduplicated into the output
    assert plan_dedup(lake, DedupConfig())[0] == plan_dedup(reference, DedupConfig())[0]


def test_a_running_ingest_is_left_alone(scene):
    assert scene.killed not in {o.run for o in scene.while_running.orphans}
    assert [(s.run, s.reason) for s in scene.while_running.skipped] == [(scene.killed, "running: a live process holds its lock")]


def test_dry_run_names_exactly_the_orphans_and_removes_nothing(scene, tmp_path):
    lake = copy_of(scene.lake, tmp_path / "lake")
    backdate(lake, hours=2)
    before = everything(lake)

    plan = plan_gc(lake)
    assert plan.runs == [scene.killed] and not plan.skipped and not plan.unrecognised
    assert {o.path for o in plan.orphans} == files_of(lake, scene.killed)
    assert not {o.path for o in plan.orphans} & files_of(lake, scene.second)
    assert {o.kind for o in plan.orphans} == {"shard", "logs", "staging", "lock"}
    assert plan.bytes > 0

    result = CliRunner().invoke(app, ["lake", "gc", "--dry-run", "--lake", lake.root])
    assert result.exit_code == 0, result.output
    assert scene.killed in result.stdout and "would be removed" in result.stdout
    assert f"{len(plan.orphans)} paths (1 run," in result.stdout
    assert everything(lake) == before


def test_gc_removes_exactly_the_orphans_and_changes_no_view(scene, tmp_path):
    lake = copy_of(scene.lake, tmp_path / "lake")
    backdate(lake, hours=2)
    views = counts(lake)
    manifests = {d: Path(lake.path(d, MANIFEST)).read_bytes() for d in (DOCUMENTS_CLEAN, REJECTED)}
    before, orphans = everything(lake), files_of(lake, scene.killed)

    result = CliRunner().invoke(app, ["lake", "gc", "--lake", lake.root])
    assert result.exit_code == 0, result.output
    assert "removed" in result.stdout and scene.killed in result.stdout
    after = everything(lake)
    assert after <= before
    assert before - after == {p for p in before if under(p, orphans)}
    assert counts(lake) == views
    assert {d: Path(lake.path(d, MANIFEST)).read_bytes() for d in manifests} == manifests
    again = CliRunner().invoke(app, ["lake", "gc", "--dry-run", "--lake", lake.root])
    assert "nothing to remove" in again.stdout


HOLD = textwrap.dedent(
    """
    import sys
    from pipelines.lake import Lake
    from pipelines.lake.locks import run_lock
    with run_lock(Lake.at(sys.argv[1]), sys.argv[2]):
        print("held", flush=True)
        sys.stdin.read()
    """
)


def test_a_run_holding_its_lock_is_skipped_even_by_a_plan_made_before(scene, tmp_path):
    lake = copy_of(scene.lake, tmp_path / "lake")
    backdate(lake, hours=2)
    stale = plan_gc(lake)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, lake.root, scene.killed], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"held\n"
        plan = plan_gc(lake)
        assert not plan.orphans and plan.skipped[0].run == scene.killed and "lock" in plan.skipped[0].reason
        with pytest.raises(RunInProgress, match=scene.killed):
            with run_lock(lake, scene.killed):
                pass
        before = everything(lake)
        assert apply_gc(lake, stale) == [] and everything(lake) == before
    finally:
        holder.stdin.close()
        holder.wait()
    assert {o.run for o in apply_gc(lake, plan_gc(lake))} == {scene.killed}


def test_a_run_whose_files_changed_within_the_grace_period_is_skipped(scene, tmp_path):
    lake = copy_of(scene.lake, tmp_path / "lake")
    backdate(lake, hours=2)
    marker = next(Path(lake.root, DOCUMENTS_CLEAN, "_datatrove", scene.killed, "completions").iterdir())
    marker.touch()  # a task of the run finished a moment ago: it may still be running elsewhere

    plan = plan_gc(lake, grace_minutes=60)
    assert not plan.orphans
    assert [s.run for s in plan.skipped] == [scene.killed] and "60-minute grace period" in plan.skipped[0].reason
    result = CliRunner().invoke(app, ["lake", "gc", "--lake", lake.root])
    assert result.exit_code == 0 and "left alone" in result.stdout and "nothing to remove" in result.stdout
    assert marker.exists()
    assert plan_gc(lake, grace_minutes=0).runs == [scene.killed]


def test_files_no_run_wrote_are_listed_but_never_removed(tmp_path):
    lake = Lake.at(tmp_path)
    table = pa.Table.from_pylist([], schema=DOCUMENTS_SCHEMA)
    mine = write_table(lake, DOCUMENTS_CLEAN, "lang=eng_Latn/mine.parquet", table)
    orphan = write_table(lake, DOCUMENTS_CLEAN, f"lang=eng_Latn/{run_id('killed')}_00000.parquet", table)
    listed = write_table(lake, DOCUMENTS_CLEAN, f"lang=eng_Latn/{run_id('listed')}_00000.parquet", table)
    list_run(lake, run_id("listed"), DOCUMENTS_CLEAN)
    (tmp_path / "_staging" / "notes").mkdir(parents=True)
    backdate(lake, hours=2)

    plan = plan_gc(lake)
    assert set(plan.unrecognised) == {mine, str(tmp_path / "_staging" / "notes")}
    assert [o.path for o in plan.orphans] == [orphan]
    assert apply_gc(lake, plan) and os.path.exists(mine) and os.path.exists(listed) and not os.path.exists(orphan)
    assert (tmp_path / "_staging" / "notes").is_dir()
    assert listed_shards(lake, DOCUMENTS_CLEAN) == [listed]


def test_cli_rejects_a_negative_grace_period(tmp_path):
    result = CliRunner().invoke(app, ["lake", "gc", "--lake", str(tmp_path), "--grace-minutes", "-1"])
    assert result.exit_code == 1 and "--grace-minutes must not be negative" in result.stderr
