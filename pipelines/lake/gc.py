"""`lmforge lake gc`: remove what runs no manifest lists left in the lake.

A run that was killed, then rerun with other parameters (another run), or a dedup run that a newer
one replaced, may have left shards in the dataset folders, staging files, datatrove's logs and work
folders. No reader sees them (a dataset is the shards of the runs its manifest lists), but they
take space. `plan_gc` says what would go, `apply_gc` removes it:

- per dataset, the shards named `[NNN_]<run>_<rank>.parquet` of a run that no dataset's manifest
  lists, and the run's `<dataset>/_datatrove/<run>/` logs;
- the run's `_staging/<run>/`, `_work/<stage>/<run>/` and `_locks/<run>.lock`;
- in `tokens/<tokenizer>/<dataset>/`, the token shards (`<split>/<run>_<NNNNN>.bin`, `.idx.npy`) of a run
  other than the one its manifest names (a tokenize run killed, or replaced by a newer one).

A run listed by any manifest is never touched, nor is a file whose name no run wrote (it is only
reported as unrecognised). A run that may still be executing is left alone and reported with the
reason: its lock is held (local lakes), or one of its files changed within the grace period (every
lake: the only guard on an object store, where there are no locks, and the guard for Slurm jobs,
whose submitting process does not stay to hold the lock; raise the grace period above the time a
job may wait in the queue).
"""

from __future__ import annotations

import posixpath
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import fsspec

from pipelines.lake.contract import (
    LOCKS,
    RUN_ID,
    RUN_LOGS,
    SCHEMAS,
    STAGING,
    WORK_ROOT,
    Lake,
    listed_runs,
    shard_run,
)
from pipelines.lake.locks import RunInProgress, is_running, run_lock
from pipelines.lake.token_layout import token_shard_run, token_shards, tokens_folder, tokens_manifests, tokens_run

DATASETS = tuple(SCHEMAS)  # the datasets whose shards are named by run
DEFAULT_GRACE_MINUTES = 60.0
LOCK_SUFFIX = ".lock"


@dataclass(frozen=True)
class Orphan:
    """A file or folder of a run no manifest lists."""

    run: str
    where: str  # the dataset it belongs to, or the lake folder (`_staging`, `_work/dedup`, `_locks`)
    kind: str  # shard | tokens | logs | staging | work | lock
    path: str
    bytes: int


@dataclass(frozen=True)
class Skipped:
    """A run no manifest lists that may still be executing, so gc leaves it alone."""

    run: str
    reason: str


@dataclass(frozen=True)
class GcPlan:
    lake: str
    orphans: list[Orphan]
    skipped: list[Skipped]
    unrecognised: list[str]  # files in a run dataset or run folder that no run wrote: never removed

    @property
    def runs(self) -> list[str]:
        return sorted({o.run for o in self.orphans})

    @property
    def bytes(self) -> int:
        return sum(o.bytes for o in self.orphans)


def _children(lake: Lake, folder: str) -> list[str]:
    """The entries of a folder, as paths in the lake's own form (URLs on a remote lake, like `Lake.shards`)."""
    fs = lake.fs
    if not fs.isdir(folder):
        return []
    return sorted(p if lake.is_local else fs.unstrip_protocol(p) for p in fs.ls(folder, detail=False))


def _run_folders(lake: Lake) -> list[tuple[str, str, str]]:
    """(where, kind, path) of every entry of the per-run folders: staging, logs, work, locks."""
    found = [(STAGING, "staging", p) for p in _children(lake, lake.path(STAGING))]
    for dataset in DATASETS:
        found += [(dataset, "logs", p) for p in _children(lake, lake.path(dataset, RUN_LOGS))]
    for stage in _children(lake, lake.path(WORK_ROOT)):
        where = f"{WORK_ROOT}/{stage.rstrip('/').rsplit('/', 1)[-1]}"
        found += [(where, "work", p) for p in _children(lake, stage)]
    found += [(LOCKS, "lock", p) for p in _children(lake, lake.path(LOCKS))]
    return found


def _folder_run(kind: str, path: str) -> str | None:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if kind == "lock":
        name = name.removesuffix(LOCK_SUFFIX) if name.endswith(LOCK_SUFFIX) else ""
    return name if RUN_ID.fullmatch(name) else None


def _modified(info: dict[str, Any]) -> float | None:
    """Seconds since the epoch of a file's last change, in whichever key the filesystem gives it."""
    for key in ("mtime", "LastModified", "last_modified", "updated"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def _footprint(fs: fsspec.AbstractFileSystem, path: str) -> tuple[int, list[float | None]]:
    """Bytes under `path` and the modification time of it and everything in it."""
    try:
        infos = fs.find(path, withdirs=True, detail=True) if fs.isdir(path) else {path: fs.info(path)}
    except FileNotFoundError:  # it vanished while we looked: something is changing it right now
        return 0, [time.time()]
    size = sum(int(i.get("size") or 0) for i in infos.values() if i.get("type") == "file")
    return size, [_modified(i) for i in infos.values()]


def _in_progress(lake: Lake, run: str, times: list[float | None], grace_s: float) -> str | None:
    """Why a run may still be executing, or None when it is dead."""
    if is_running(lake, run):
        return "running: a live process holds its lock"
    if None in times:
        return "its files' modification times are unknown on this filesystem, so it may still be running"
    age = time.time() - max(times, default=0.0)
    if age < grace_s:
        return f"its files changed {age / 60:.0f} min ago, within the {grace_s / 60:g}-minute grace period"
    return None


def plan_gc(lake: Lake, grace_minutes: float = DEFAULT_GRACE_MINUTES) -> GcPlan:
    """What `apply_gc` would remove from the lake now, what it leaves because it may be running, and
    the files no run wrote. Reads only listings, manifests and file metadata."""
    fs = lake.fs
    listed = set().union(*(listed_runs(lake, d) for d in DATASETS))
    tokens_listed = {posixpath.dirname(m): tokens_run(lake, posixpath.dirname(m)) for m in tokens_manifests(lake)}
    listed |= {run for run in tokens_listed.values() if run}
    candidates: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    unrecognised: list[str] = []
    for shard in token_shards(lake):
        folder = tokens_folder(shard)
        if token_shard_run(shard) != tokens_listed.get(folder):
            candidates[token_shard_run(shard)].append((folder.removeprefix(lake.root).lstrip("/"), "tokens", shard))
    for dataset in DATASETS:
        for shard in lake.shards(dataset):
            run = shard_run(shard)
            if run is None:
                unrecognised.append(shard)
            elif run not in listed:
                candidates[run].append((dataset, "shard", shard))
    for where, kind, path in _run_folders(lake):
        run = _folder_run(kind, path)
        if run is None:
            unrecognised.append(path)
        elif run not in listed:
            candidates[run].append((where, kind, path))

    orphans: list[Orphan] = []
    skipped: list[Skipped] = []
    for run, entries in sorted(candidates.items()):
        sized = [(where, kind, path, *_footprint(fs, path)) for where, kind, path in entries]
        times = [t for *_, stamps in sized for t in stamps]
        if reason := _in_progress(lake, run, times, grace_minutes * 60):
            skipped.append(Skipped(run, reason))
        else:
            orphans += [Orphan(run, where, kind, path, size) for where, kind, path, size, _ in sized]
    return GcPlan(lake.root, orphans, skipped, sorted(unrecognised))


def apply_gc(lake: Lake, plan: GcPlan) -> list[Orphan]:
    """Remove the plan's orphans, run by run, each while holding the run's lock (its lock file last).

    A run that has started again since the plan was made holds its lock, so it is left alone.
    Returns what was removed.
    """
    fs = lake.fs
    by_run: dict[str, list[Orphan]] = defaultdict(list)
    for orphan in plan.orphans:
        by_run[orphan.run].append(orphan)
    removed: list[Orphan] = []
    for run, orphans in by_run.items():
        try:
            with run_lock(lake, run, remove=True):
                for orphan in sorted(orphans, key=lambda o: o.kind == "lock"):
                    if fs.exists(orphan.path):
                        fs.rm(orphan.path, recursive=True)
                    removed.append(orphan)
        except RunInProgress:
            continue
    return removed
