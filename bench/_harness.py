"""What every benchmark needs: run a function in a fresh interpreter and read its peak memory.

(bench/ingest.py, filters.py, extract.py and dedup.py predate this module and carry their own
copies; they move here the next time their figures are rerun.)
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import tempfile
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


def _call(fn: Callable[..., Any], args: tuple, log: str, results: Any) -> None:
    # the child's own output (library progress, warnings) goes to a log, not over the bench's tables
    handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(handle, 1)
    os.dup2(handle, 2)
    results.put(fn(*args))


def in_fresh_process(fn: Callable[..., Any], *args: Any, log: str | None = None) -> Any:
    """`fn(*args)` in a new spawned interpreter, so nothing one run loaded or cached helps another
    and its peak RSS is its own. `fn` must be importable (module level) and return a picklable value."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    log = log or os.path.join(tempfile.gettempdir(), "lmforge-bench.log")
    child = context.Process(target=_call, args=(fn, args, log, results))
    child.start()
    try:
        return results.get()
    finally:
        child.join()
