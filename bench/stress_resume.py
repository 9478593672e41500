"""Stress: kill ingest and dedup at random points, resume them, and compare with an uninterrupted run.

    python bench/stress_resume.py [--rounds 30] [--stages ingest,dedup] [--pages-per-folder 6] [--seed 0]
                                  [--workers 2] [--json bench/results/stress_resume.json]

DESIGN §7: "resume after a kill at any point with nothing lost and nothing doubled". Each stage runs
in a child process of its own session, exactly as `lmforge` runs it (datatrove's local executor,
`workers` processes). First an uninterrupted run gives the reference lake. Then, `--rounds` times,
on a fresh copy of the stage's input lake: the stage is started and its whole process group
SIGKILLed at a random moment of its reference duration (once, or twice in a row in a third of the
rounds; drawn again on a fresh copy when the run ended before the kill, so every round is
interrupted at least once), then run again to the end. Counted per stage:

- **aborts**: final runs that did not exit 0 (a resumed dedup used to die with SIGABRT at exit:
  pyarrow threads reading a Python file, see `pipelines.lake.contract.read_shard`);
- **differences**: rounds whose documents, rejections (every column, every row), shard names and
  manifests (rows, bytes, shards, runs) differ from the reference;
- **leftovers**: files the resumed lake holds that the reference does not (staging files,
  temporary names, shards of a killed attempt); datatrove's per-task logs are not compared.

Inputs are real HTML from Debian's documentation (installed by `make run`; `--pages-per-folder`
pages per language folder, packed into 4 WARCs) plus a JSONL and a parquet file of plain text taken
from some of those pages, so every reader path is killed somewhere. The exit code is non-zero when
any count is not zero.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

CHILD = textwrap.dedent(
    """
    import sys
    from pipelines.lake import Lake
    stage, root, workers, *inputs = sys.argv[1:]
    if stage == "ingest":
        from pipelines.ingest.run import IngestConfig, ingest_inputs, run_ingest
        run_ingest(ingest_inputs(inputs), Lake.at(root), IngestConfig(workers=int(workers)))
    else:
        from pipelines.dedup.run import DedupConfig, run_dedup
        run_dedup(Lake.at(root), DedupConfig(workers=int(workers), max_tasks=8))
    """
)
MAX_DRAWS = 5  # kill times drawn per round until one lands before the run ends
IGNORED_PARTS = ("/logs/",)  # datatrove's per-task logs: a killed attempt's are rewritten, not compared


@dataclass
class Round:
    kills: list[float]  # seconds after start of each killed attempt
    finished_before_kill: int  # of those kills, how many came after the attempt had ended
    exit_code: int
    resume_seconds: float
    differences: list[str]
    leftovers: list[str]
    log: str


@dataclass
class StageReport:
    stage: str
    reference_seconds: float
    rounds: list[Round] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "stage": self.stage,
            "rounds": len(self.rounds),
            "kills": sum(len(r.kills) for r in self.rounds),
            "kills_landed_mid_run": sum(len(r.kills) - r.finished_before_kill for r in self.rounds),
            "aborts": sum(r.exit_code != 0 for r in self.rounds),
            "rounds_with_differences": sum(bool(r.differences) for r in self.rounds),
            "leftover_files": sum(len(r.leftovers) for r in self.rounds),
            "reference_seconds": round(self.reference_seconds, 1),
            "median_resume_seconds": round(statistics.median(r.resume_seconds for r in self.rounds), 1) if self.rounds else None,
        }


# --- inputs --------------------------------------------------------------------------------------


def build_inputs(folder: Path, pages_per_folder: int) -> list[str]:
    """4 WARCs of real pages, and the plain text of some of them as JSONL and parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from resiliparse.extract.html2text import extract_plain_text

    from pipelines.ingest.sample import SampleSourceMissing, default_sources, pack_html

    try:
        sources = default_sources()
    except SampleSourceMissing as e:
        sys.exit(f"{e}\n(`make run` installs the Debian documentation packages this benchmark reads)")
    folder.mkdir(parents=True, exist_ok=True)
    warcs = []
    for i in range(4):
        path = folder / f"pages-{i}.warc.gz"
        pack_html(sources[i::4], path, max_pages_per_folder=pages_per_folder)
        warcs.append(str(path))
    texts = []
    for page in sorted(p for p in sources[-1].rglob("*.html"))[: 2 * pages_per_folder]:
        text = extract_plain_text(page.read_text(errors="replace"), main_content=True)
        texts.append({"id": f"text-{len(texts)}", "text": text, "url": page.as_uri()})
    jsonl, parquet = folder / "texts.jsonl.gz", folder / "texts.parquet"
    with gzip.open(jsonl, "wt") as f:
        f.writelines(json.dumps(t) + "\n" for t in texts[::2])
    pq.write_table(pa.Table.from_pylist(texts[1::2]), parquet)
    return [*warcs, str(jsonl), str(parquet)]


# --- running and killing -------------------------------------------------------------------------


def start(stage: str, lake: Path, workers: int, inputs: list[str], log: Path) -> subprocess.Popen:
    """The stage in a child process leading its own session, so a kill takes its workers too."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    with open(log, "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, stage, str(lake), str(workers), *inputs],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def run_to_end(stage: str, lake: Path, workers: int, inputs: list[str], log: Path) -> tuple[int, float]:
    began = time.monotonic()
    code = start(stage, lake, workers, inputs, log).wait()
    return code, time.monotonic() - began


def kill_after(stage: str, lake: Path, workers: int, inputs: list[str], log: Path, seconds: float) -> bool:
    """Start the stage and SIGKILL its process group after `seconds`; False if it finished first."""
    child = start(stage, lake, workers, inputs, log)
    try:
        child.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return True


# --- comparing -----------------------------------------------------------------------------------


def snapshot(lake: Path) -> dict[str, object]:
    """What a stage produced: every row of every dataset, shard names, manifests without timestamps."""
    import pyarrow.parquet as pq

    from pipelines.lake import DOCUMENTS_CLEAN, DOCUMENTS_DEDUP, REJECTED, Lake, read_manifest

    root = Lake.at(lake)
    state: dict[str, object] = {}
    for dataset in (DOCUMENTS_CLEAN, DOCUMENTS_DEDUP, REJECTED):
        # every shard on disk, listed by a manifest or not: a killed attempt's must not double anything
        shards = sorted(p for p in (lake / dataset).rglob("*.parquet") if "/_" not in str(p.relative_to(lake / dataset)))
        state[f"{dataset} shards"] = [str(s.relative_to(lake)) for s in shards]
        rows = [json.dumps(r, sort_keys=True, default=str) for s in shards for r in pq.read_table(s).to_pylist()]
        state[f"{dataset} rows"] = sorted(rows)
        manifest = read_manifest(root, dataset)
        state[f"{dataset} manifest"] = (
            None if manifest is None else (manifest.rows, manifest.bytes, manifest.shards, [r.run for r in manifest.runs])
        )
    return state


def files(lake: Path) -> set[str]:
    found = {os.path.relpath(p, lake) for p in lake.rglob("*") if p.is_file()}
    return {f for f in found if not any(part in f"/{f}" for part in IGNORED_PARTS)}


def compare(lake: Path, reference: Path, expected: dict[str, object]) -> tuple[list[str], list[str]]:
    got = snapshot(lake)
    differences = [key for key in expected if got[key] != expected[key]]
    return differences, sorted(files(lake) - files(reference))


# --- the stress ----------------------------------------------------------------------------------


def stress_stage(
    stage: str, base: Path, work: Path, inputs: list[str], rounds: int, workers: int, rng: random.Random, keep: bool
) -> StageReport:
    reference = work / f"{stage}-reference"
    shutil.copytree(base, reference)
    code, seconds = run_to_end(stage, reference, workers, inputs, work / f"{stage}-reference.log")
    if code != 0:
        sys.exit(f"the uninterrupted {stage} run failed (exit {code}); see {work / f'{stage}-reference.log'}")
    expected = snapshot(reference)
    report = StageReport(stage, seconds)
    for i in range(rounds):
        lake, log = work / f"{stage}-{i:02d}", work / f"{stage}-{i:02d}.log"
        for _ in range(MAX_DRAWS):  # a round counts once a kill has landed mid-run
            shutil.rmtree(lake, ignore_errors=True)
            shutil.copytree(base, lake)
            kills = [rng.uniform(0.05, 0.9) * seconds for _ in range(2 if rng.random() < 1 / 3 else 1)]
            landed = [kill_after(stage, lake, workers, inputs, log, at) for at in kills]
            if any(landed):
                break
        early = landed.count(False)
        code, resumed = run_to_end(stage, lake, workers, inputs, log)
        differences, leftovers = compare(lake, reference, expected)
        outcome = Round([round(k, 2) for k in kills], early, code, resumed, differences, leftovers, str(log))
        report.rounds.append(outcome)
        bad = code != 0 or differences or leftovers
        print(
            f"{stage} round {i + 1:2d}/{rounds}: killed at {', '.join(f'{k:.1f}s' for k in kills)} -> exit {code}, "
            f"{len(differences)} differences, {len(leftovers)} leftover files" + (f"  [{log}]" if bad else ""),
            flush=True,
        )
        if not (bad or keep):
            shutil.rmtree(lake)
            log.unlink(missing_ok=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--stages", default="ingest,dedup")
    parser.add_argument("--pages-per-folder", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep every round's lake, not only failing ones")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "stress_resume.json")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="lmforge-stress-"))
    rng = random.Random(args.seed)
    inputs = build_inputs(work / "inputs", args.pages_per_folder)
    stages = args.stages.split(",")
    empty = work / "empty-lake"
    empty.mkdir()
    reports = []
    if "ingest" in stages:
        reports.append(stress_stage("ingest", empty, work, inputs, args.rounds, args.workers, rng, args.keep))
    if "dedup" in stages:
        clean = work / "clean-lake"  # dedup's input: the uninterrupted ingest of the same inputs
        shutil.copytree(empty, clean)
        if run_to_end("ingest", clean, args.workers, inputs, work / "clean-lake.log")[0] != 0:
            sys.exit(f"ingest into {clean} failed; see {work / 'clean-lake.log'}")
        reports.append(stress_stage("dedup", clean, work, inputs, args.rounds, args.workers, rng, args.keep))

    summaries = [r.summary() for r in reports]
    print()
    header = f"{'stage':8} {'rounds':>6} {'kills':>5} {'aborts':>6} {'differ':>6} {'leftover files':>14} {'ref s':>6}"
    print(f"{header} {'resume s':>8}")
    for s in summaries:
        print(
            f"{s['stage']:8} {s['rounds']:>6} {s['kills']:>5} {s['aborts']:>6} {s['rounds_with_differences']:>6} "
            f"{s['leftover_files']:>14} {s['reference_seconds']:>6} {s['median_resume_seconds']:>8}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
                "parameters": {k: str(v) for k, v in vars(args).items()},
                "inputs": [os.path.basename(i) for i in inputs],
                "summary": summaries,
                "rounds": {r.stage: [asdict(x) for x in r.rounds] for r in reports},
            },
            indent=1,
        )
    )
    print(f"\nwork folder {work}; results in {args.json}")
    failed = any(s["aborts"] or s["rounds_with_differences"] or s["leftover_files"] for s in summaries)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
