"""Benchmark: the fixed cost of an `lmforge` command, with a Prefect server per command and with the kept one.

    python bench/cli_overhead.py [--repeats 5] [--json bench/results/cli_overhead.json]

fixed cost = wall time of the command in a fresh process − wall time of the stage's own work in a
fresh process (a Python script calling the data plane directly: no Prefect, no CLI), paired run by
run, median over `--repeats`. Tiny inputs, so the fixed cost is most of the time:

- **flow**: a bare `@flow` returning 1 (own work: a function returning 1);
- **ingest**: `lmforge ingest page.html --lake <fresh lake>` (own work: `run_ingest` of the page into a
  fresh lake, what the flow's task calls);
- **stats**: `lmforge stats` on that lake (own work: `pipelines.lake.catalog.stats`). It runs no flow:
  it shows that a command which runs none pays nothing for the server.

Sides, alternating in each repeat:

- **before**: `lmforge` with `LMFORGE_LOCAL_SERVER=0`, as commands were before `flows.prefect_api`:
  Prefect starts a temporary server in every command;
- **after**: `lmforge` as it is by default, the kept local server (`flows.local_server`) already running;
- **after, first command**: the same with no server running yet (it starts one; the first command
  of a session pays this once).

Nothing is configured (no PREFECT_API_URL, no profile URL); each side has its own Prefect home
(database) and the cache folder is under a temporary directory; one untimed run per side first
migrates its database (and starts the kept server); the server is stopped at the end. Target: after ≤ 3 s of fixed cost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

PY = sys.executable
LMFORGE = str(Path(sys.executable).with_name("lmforge"))
BARE = "from prefect import flow\n@flow(name='bare')\ndef bare():\n    return 1\n"
BARE_FLOW = {  # what `main()` did and does around a command, here around a bare flow
    "before": "from flows.env import quiet_offline_defaults\nquiet_offline_defaults()\n" + BARE + "assert bare() == 1\n",
    "after": "from flows.env import quiet_offline_defaults\nfrom flows.prefect_api import flow_runs_recorded\n"
    "quiet_offline_defaults()\n" + BARE + "with flow_runs_recorded():\n    assert bare() == 1\n",
}
OWN_INGEST = (
    "import sys\n"
    "from pipelines.ingest.run import IngestConfig, ingest_inputs, run_ingest\n"
    "from pipelines.lake import Lake\n"
    "run_ingest(ingest_inputs([sys.argv[1]]), Lake.at(sys.argv[2]), IngestConfig())\n"
)
OWN_STATS = "import sys\nfrom pipelines.lake import Lake\nfrom pipelines.lake.catalog import stats\nstats(Lake.at(sys.argv[1]))\n"


def timed(argv: list[str], env: dict, log: Path) -> float:
    """Wall seconds of one command in a fresh process; its output goes to `log`. A failure stops the benchmark."""
    with open(log, "ab") as out:
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, stdout=out, stderr=out, cwd=ROOT)
        elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}): see {log}")
    return elapsed


def stop_server(env: dict, log: Path) -> None:
    subprocess.run([LMFORGE, "server", "stop"], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, check=True)


def runs(work: Path, page: Path) -> dict[str, dict[str, list[str]]]:
    """argv per command and side; `{lake}` is replaced by a fresh lake per run."""
    lake = str(work / "stats-lake")
    return {
        "flow": {
            "before": [PY, "-c", BARE_FLOW["before"]],
            "after": [PY, "-c", BARE_FLOW["after"]],
            "own": [PY, "-c", "def one():\n    return 1\nassert one() == 1\n"],
        },
        "ingest": {
            "before": [LMFORGE, "ingest", str(page), "--lake", "{lake}"],
            "after": [LMFORGE, "ingest", str(page), "--lake", "{lake}"],
            "own": [PY, "-c", OWN_INGEST, str(page), "{lake}"],
        },
        "stats": {
            "before": [LMFORGE, "stats", "--lake", lake],
            "after": [LMFORGE, "stats", "--lake", lake],
            "own": [PY, "-c", OWN_STATS, lake],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from builders import page as html_page

    with tempfile.TemporaryDirectory(prefix="lmforge-bench-cli-") as tmp:
        work = Path(tmp)
        log = work / "commands.log"
        page = work / "page.html"
        page.write_text(html_page("en"))
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
        env |= {
            "HF_HUB_OFFLINE": "1",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "TOKENIZERS_PARALLELISM": "false",
            "XDG_CACHE_HOME": str(work / "cache"),
        }
        # each side its own Prefect database, as if alone on the machine
        envs = {side: env | {"PREFECT_HOME": str(work / f"prefect-{side}")} for side in ("before", "after", "own")}
        envs["before"]["LMFORGE_LOCAL_SERVER"] = "0"
        envs["first"] = envs["after"]
        commands = runs(work, page)
        fresh = iter(range(10**6))

        def argv(command: str, side: str) -> list[str]:
            lake = str(work / f"lake-{next(fresh)}")
            return [a.replace("{lake}", lake) for a in commands[command][side]]

        try:
            # untimed: create and migrate the database, build the stats lake, start the kept server
            timed(argv("flow", "before"), envs["before"], log)
            timed([LMFORGE, "ingest", str(page), "--lake", str(work / "stats-lake")], envs["after"], log)
            times: dict[str, dict[str, list[float]]] = {c: {s: [] for s in ("before", "after", "first", "own")} for c in commands}
            for i in range(args.repeats):
                for command in commands:
                    for side in ("before", "after", "own"):
                        times[command][side].append(timed(argv(command, side), envs[side], log))
                    if command != "stats":  # the first command of a session: no server yet
                        stop_server(envs["after"], log)
                        times[command]["first"].append(timed(argv(command, "after"), envs["first"], log))
                    row = "  ".join(f"{s} {times[command][s][-1]:5.1f} s" for s in times[command] if times[command][s])
                    print(f"run {i + 1} {command:>6}: {row}", flush=True)
        finally:
            stop_server(envs["after"], log)

    med = {c: {s: statistics.median(v) for s, v in sides.items() if v} for c, sides in times.items()}
    fixed = {
        c: {s: statistics.median(w - o for w, o in zip(v, sides["own"])) for s, v in sides.items() if v and s != "own"}
        for c, sides in times.items()
    }
    print(f"\nmedians of {args.repeats} runs, wall seconds; fixed cost = command - own work, paired per run")
    header = ("command", "own work", "before", "after", "1st after", "fixed: before", "after", "1st", "before/after")
    print(f"{header[0]:>8} {header[1]:>9} {header[2]:>8} {header[3]:>8} {header[4]:>9}  " + " ".join(header[5:]))
    for c in commands:
        m, f = med[c], fixed[c]
        first = f"{m['first']:9.2f}" if "first" in m else f"{'-':>9}"
        first_fixed = f"{f['first']:6.2f}" if "first" in f else f"{'-':>6}"
        ratio = f["before"] / f["after"] if f["after"] > 0 else float("inf")
        print(
            f"{c:>8} {m['own']:9.2f} {m['before']:8.2f} {m['after']:8.2f} {first}          {f['before']:7.2f} "
            f"{f['after']:7.2f} {first_fixed}  {ratio:6.1f}x"
        )
    print("target: after ≤ 3 s of fixed cost per command")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "repeats": args.repeats,
            "times_s": times,
            "median_s": med,
            "fixed_cost_s": fixed,
            "ratio_before_after": {c: fixed[c]["before"] / fixed[c]["after"] for c in commands if fixed[c]["after"] > 0},
            "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        }
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
