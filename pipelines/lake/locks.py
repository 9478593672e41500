"""Run locks: a run holds `<lake>/_locks/<run>.lock` while it executes, so `lmforge lake gc` can tell
a run in progress from one that died.

The lock is the operating system's (fasteners: `fcntl` on POSIX), so it goes when its process goes,
however that ends: a killed run leaves the file behind but not the lock. Only a local lake has locks
(an object store has none); there gc relies on its grace period alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import fasteners

from pipelines.common.errors import UserError
from pipelines.lake.contract import LOCKS, Lake

# Lock files this process holds. POSIX record locks never exclude their own process, and closing
# any descriptor of the file drops them, so this process must not ask the OS about its own locks.
_HELD: set[str] = set()
PROBE_S = 2.0  # seconds a run waits for its lock (see `run_lock`)


class RunInProgress(UserError):
    """Another process is executing the same run."""


def lock_path(lake: Lake, run: str) -> str:
    return lake.path(LOCKS, f"{run}.lock")


@contextmanager
def run_lock(lake: Lake, run: str, remove: bool = False) -> Iterator[None]:
    """Hold the run's lock for the duration (a no-op on a remote lake).

    Raises RunInProgress if another process (or this one) holds it: two copies of a run would clear
    each other's staging files. It waits up to `PROBE_S` first: `lmforge lake gc` takes a free lock
    for an instant to learn that no one holds it. `remove` deletes the lock file before letting go (gc,
    once the run's files are gone): a run starting meanwhile either finds the lock held and stops,
    or creates a new file after the old one is gone and finds nothing of the old run left.
    """
    if not lake.is_local:
        yield
        return
    path = lock_path(lake, run)
    lock = None if path in _HELD else _acquire(path)
    if lock is None:
        raise RunInProgress(f"run {run} is already running, or `lmforge lake gc` is removing it (lock {path}); wait, then rerun")
    _HELD.add(path)
    try:
        yield
    finally:
        if remove and os.path.exists(path):
            os.remove(path)
        _HELD.discard(path)
        lock.release()


def _acquire(path: str) -> fasteners.InterProcessLock | None:
    """The lock of the file now at `path`, or None if another process holds it for `PROBE_S`.

    A lock won on a file that gc unlinked while we waited locks nothing anyone else can see: it is
    let go and taken again on the file now at `path`.
    """
    deadline = time.monotonic() + PROBE_S
    while True:
        lock = fasteners.InterProcessLock(path)
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return None
        try:
            if os.path.samestat(os.fstat(lock.lockfile.fileno()), os.stat(path)):
                return lock
        except FileNotFoundError:
            pass
        lock.release()


def is_running(lake: Lake, run: str) -> bool:
    """Whether a live process holds the run's lock; always False on a remote lake."""
    if not lake.is_local:
        return False
    path = lock_path(lake, run)
    if path in _HELD:
        return True
    if not os.path.exists(path):
        return False
    lock = fasteners.InterProcessLock(path)
    if not lock.acquire(blocking=False):
        return True
    lock.release()
    return False
