"""What every benchmark needs: run a function in a fresh interpreter, read its peak memory and CPU
time, compare paired runs, and check the sample corpus is there."""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time this process has used, all threads (user + system): unlike wall time, not inflated
    when the machine's host takes the CPU away (this VM's runs vary ±10% in wall time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def paired_ratio(anchor: list[float], ours: list[float]) -> float:
    """Median over runs of anchor time / our time, each pair measured back to back (drift cancels)."""
    return statistics.median(a / o for a, o in zip(anchor, ours))


SAMPLE_SHARDS = "data/sample/debian-docs-*.warc.gz"  # what `make run` (`lmforge run`) packs
SAMPLE_WARC = Path("data/sample/debian-docs.warc.gz")  # what `lmforge sample` writes by default


def sample_warc(given: Path | None) -> Path:
    """The benchmark's input: the WARC given, else the sample shards `make run` leaves, as one WARC
    (else the single file `lmforge sample` writes).

    A gzipped WARC is a series of gzip members, so the shards concatenated are one valid WARC (in
    the system's temp folder), with the same pages as the single file `lmforge sample` writes.
    """
    if given is not None:
        if not given.is_file():
            sys.exit(f"{given} not found")
        return given
    shards = sorted(Path().glob(SAMPLE_SHARDS))
    if not shards and SAMPLE_WARC.is_file():
        return SAMPLE_WARC
    if not shards:
        sys.exit(f"no {SAMPLE_SHARDS}: build them with `make run` (or `lmforge sample --shards 4`), or pass --warc")
    joined = Path(tempfile.gettempdir()) / f"lmforge-bench-debian-docs-{len(shards)}-shards.warc.gz"
    with open(joined, "wb") as out:
        for shard in shards:
            out.write(shard.read_bytes())
    return joined


def quiet_loguru(level: str = "WARNING") -> None:
    """datatrove logs every task to stderr; a benchmark shows only what matters."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=level)


def bench_log(name: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"lmforge-bench-{name}.log")


def _call(fn: Callable[..., Any], args: tuple, log: str | None, results: Any) -> None:
    if log:  # the child's own output (library progress, warnings) goes to a log, not over the bench's tables
        handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(handle, 1)
        os.dup2(handle, 2)
    results.put(fn(*args))


def in_fresh_process(fn: Callable[..., Any], *args: Any, log: str | None = None) -> Any:
    """`fn(*args)` in a new spawned interpreter, so nothing one run loaded or cached helps another
    and its peak RSS is its own; its output goes to `log` when given. A plain (non-daemon) process,
    so that what it runs may start processes of its own. `fn` must be importable (module level)
    and return a picklable value."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_call, args=(fn, args, log, results))
    child.start()
    try:
        return results.get()
    finally:
        child.join()
