"""Resolve user-given input paths into typed, de-duplicated input items.

The pipeline accepts loose user input: files, directories, `datasets`
``save_to_disk`` folders and fsspec URLs (``s3://``, ``hf://``, ``file://``).
Everything downstream wants a flat, deterministic list of things to read, each
with a known kind, so that sharding (``items[rank::world_size]``) gives the same
split on every run. This module is that single point of truth.

It only classifies; it never opens file contents. Damaged files (zero bytes,
broken gzip, ...) are the reader's business: it turns them into reject
documents so they show up in the exclusion dataset instead of failing the run.
The only errors raised here are the ones a user must fix before a run makes
sense: a path that does not exist, or an explicitly named file we cannot read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Literal, Sequence
from urllib.parse import unquote

from loguru import logger

from pipelines.common.errors import UserError

InputKind = Literal["warc", "jsonl", "parquet", "hf_dataset", "html"]

# Longest suffixes first so ".warc.gz" wins over ".gz"-less matches.
_SUFFIX_KINDS: tuple[tuple[str, InputKind], ...] = (
    (".warc.gz", "warc"),
    (".warc", "warc"),
    (".wet.gz", "warc"),
    (".wet", "warc"),
    (".arc.gz", "warc"),  # ARC, the format before WARC: WARC-family, read with ARC framing (see is_arc)
    (".arc", "warc"),
    (".jsonl.gz", "jsonl"),
    (".jsonl", "jsonl"),
    (".ndjson.gz", "jsonl"),
    (".ndjson", "jsonl"),
    (".json.gz", "jsonl"),  # C4-style: JSON Lines despite the name
    (".parquet", "parquet"),
    (".html", "html"),
    (".htm", "html"),
    (".xhtml", "html"),
)
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(suffix for suffix, _ in _SUFFIX_KINDS)
ARC_SUFFIXES: tuple[str, ...] = (".arc.gz", ".arc")

# Files that mark a `datasets` save_to_disk folder (Dataset or DatasetDict).
HF_DATASET_MARKERS: tuple[str, ...] = ("dataset_info.json", "state.json", "dataset_dict.json")

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


@dataclass(frozen=True)
class InputItem:
    """One unit of input for the reader.

    ``path`` is an absolute local path or an fsspec URL; ``size`` is in bytes
    (an ``hf_dataset`` folder reports the sum of its files); ``mtime_ns`` is 0
    when the filesystem does not report one.
    """

    path: str
    kind: InputKind
    size: int
    mtime_ns: int


class InputError(UserError):
    """A user-given input cannot be used; the message names the path and the fix."""


def is_url(path: str) -> bool:
    """True for fsspec-style URLs (``scheme://...``), False for local paths."""
    return bool(_URL_RE.match(path))


def classify_file(name: str) -> InputKind | None:
    """Kind of a file judged by its name alone, or None when unsupported."""
    lowered = name.lower()
    for suffix, kind in _SUFFIX_KINDS:
        if lowered.endswith(suffix):
            return kind
    return None


def is_arc(path: str) -> bool:
    """True for a WARC-family input in ARC format (named ``.arc`` or ``.arc.gz``)."""
    return path.lower().endswith(ARC_SUFFIXES)


def resolve_inputs(paths: Sequence[str]) -> list[InputItem]:
    """Turn user-given paths into sorted, de-duplicated :class:`InputItem` objects.

    Raises :class:`InputError` for a missing path or an explicitly named file
    of unknown type. Unknown files found while walking a directory are skipped
    with a warning instead, since directories routinely hold READMEs and logs.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]  # a lone path is a common slip; do not iterate its characters
    by_path: dict[str, InputItem] = {}
    for given in paths:
        path = os.fspath(given)
        if not path.strip():
            raise InputError("an empty input path was given: remove it from the inputs")
        resolved = _resolve_url(path) if is_url(path) else _resolve_local(path)
        for item in resolved:
            by_path.setdefault(item.path, item)
    return sorted(by_path.values(), key=lambda item: item.path)


# --------------------------------------------------------------------------- local paths


def _resolve_local(given: str) -> list[InputItem]:
    path = os.path.abspath(os.path.expanduser(given))
    if not os.path.exists(path):
        raise InputError(f"{given}: no such file or directory; check the path (relative paths start at {os.getcwd()})")
    if os.path.isdir(path):
        return _items_from_listing(path, _walk_local(path))
    kind = classify_file(path)
    if kind is None:
        raise InputError(f"{path}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)} or leave it out")
    stat = os.stat(path)
    return [InputItem(path, kind, stat.st_size, stat.st_mtime_ns)]


def _walk_local(root: str) -> Iterator[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every regular file under root, in sorted order."""

    def warn(error: OSError) -> None:
        logger.warning(f"cannot list {error.filename}: {error.strerror}; skipped")

    for dirpath, dirnames, filenames in os.walk(root, onerror=warn):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                stat = os.stat(full)
            except OSError as error:
                logger.warning(f"cannot stat {full}: {error.strerror}; skipped")
                continue
            if os.path.isfile(full):
                yield full, stat.st_size, stat.st_mtime_ns


# --------------------------------------------------------------------------- fsspec URLs


def _resolve_url(url: str) -> list[InputItem]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    info = _fs_info(fs, root)
    if info is None and url.startswith("file://"):
        # Path.as_uri() percent-encodes spaces and non-ASCII; accept that form too.
        fs, root = fsspec.core.url_to_fs(unquote(url))
        info = _fs_info(fs, root)
    if info is None:
        raise InputError(f"{url}: no such file or directory; check the URL and your credentials")
    if info.get("type") == "directory":
        root = root.rstrip("/") or root
        listing = (
            (path, int(meta.get("size") or 0), _mtime_ns(meta))
            for path, meta in sorted(fs.find(root, withdirs=False, detail=True).items())
        )
        items = _items_from_listing(root, listing)
        return [InputItem(fs.unstrip_protocol(item.path), item.kind, item.size, item.mtime_ns) for item in items]
    kind = classify_file(root)
    if kind is None:
        raise InputError(f"{url}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)} or leave it out")
    return [InputItem(fs.unstrip_protocol(root), kind, int(info.get("size") or 0), _mtime_ns(info))]


def _fs_info(fs: Any, path: str) -> dict[str, Any] | None:
    try:
        return fs.info(path)
    except (FileNotFoundError, OSError):
        return None


def _mtime_ns(info: dict[str, Any]) -> int:
    """Best-effort modification time from the many shapes fsspec backends report."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        try:
            if isinstance(value, datetime):
                return int(value.timestamp() * 1_000_000_000)
            if isinstance(value, str):
                return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1_000_000_000)
            return int(float(value) * 1_000_000_000)
        except (TypeError, ValueError, OverflowError):
            continue
    return 0


# --------------------------------------------------------------------------- shared listing logic


def _items_from_listing(root: str, listing: Iterable[tuple[str, int, int]]) -> list[InputItem]:
    """Group a recursive file listing into items.

    Any folder holding a ``datasets`` marker file becomes one ``hf_dataset``
    item (its arrow shards are not inputs of their own); other files are
    classified by name, and unknown ones are skipped with a warning.
    """
    files = list(listing)
    hf_roots = sorted(
        {os.path.dirname(path.rstrip("/")) for path, _, _ in files if os.path.basename(path) in HF_DATASET_MARKERS}
    )
    # Keep only the outermost dataset folders (a DatasetDict holds one per split).
    outermost: list[str] = []
    for candidate in hf_roots:
        if not any(candidate == kept or candidate.startswith(kept.rstrip("/") + "/") for kept in outermost):
            outermost.append(candidate)

    hf_totals: dict[str, list[int]] = {folder: [0, 0] for folder in outermost}
    items: list[InputItem] = []
    for path, size, mtime in files:
        owner = next((f for f in outermost if path.startswith(f.rstrip("/") + "/")), None)
        if owner is not None:
            hf_totals[owner][0] += size
            hf_totals[owner][1] = max(hf_totals[owner][1], mtime)
            continue
        kind = classify_file(path)
        if kind is None:
            logger.warning(f"skipping {path}: unsupported file type (expected one of {', '.join(SUPPORTED_SUFFIXES)})")
            continue
        items.append(InputItem(path, kind, size, mtime))
    items.extend(InputItem(folder, "hf_dataset", total, mtime) for folder, (total, mtime) in hf_totals.items())
    if not items:
        logger.warning(f"{root}: directory holds no supported input files")
    return items
