"""Where token shards live in the lake (DESIGN §3): the layout the tokenize stage (`model.tokens`) writes,
and the catalog and gc read.

`tokens/<tokenizer>/<dataset>/_manifest.json` names the one run whose shards make the folder; each split's
shards are `<split>/<run>_<NNNNN>.bin` (token ids) beside `<run>_<NNNNN>.idx.npy` (document offsets).
"""

from __future__ import annotations

import json
import posixpath
import re

from pipelines.lake.contract import MANIFEST, RUN_ID, Lake

TOKENS = "tokens"
SPLITS = ("train", "val")
TOKEN_SHARD = re.compile(rf"(?P<run>{RUN_ID.pattern})_(?P<index>\d{{5}})\.(?:bin|idx\.npy)")


def token_shard_run(path: str) -> str | None:
    """The run that wrote a token shard file, from its name; None for a file no tokenize run wrote."""
    match = TOKEN_SHARD.fullmatch(posixpath.basename(path))
    return match["run"] if match else None


def _files(lake: Lake) -> list[str]:
    fs, root = lake.fs, lake.path(TOKENS)
    if not fs.exists(root):
        return []
    return sorted(p if lake.is_local else fs.unstrip_protocol(p) for p in fs.find(root))


def tokens_manifests(lake: Lake) -> list[str]:
    """Every `tokens/<tokenizer>/<dataset>/_manifest.json` in the lake, sorted."""
    prefix = lake.path(TOKENS) + "/"
    return [p for p in _files(lake) if posixpath.basename(p) == MANIFEST and p.removeprefix(prefix).count("/") >= 2]


def token_shards(lake: Lake) -> list[str]:
    """Every token shard file (`.bin`, `.idx.npy`) in a split folder under `tokens/`, whichever run wrote it."""
    return [p for p in _files(lake) if posixpath.basename(posixpath.dirname(p)) in SPLITS and token_shard_run(p)]


def tokens_folder(shard: str) -> str:
    """The `tokens/<tokenizer>/<dataset>` folder a token shard belongs to (its split folder's parent)."""
    return posixpath.dirname(posixpath.dirname(shard))


def tokens_run(lake: Lake, folder: str) -> str | None:
    """The run a tokens folder's manifest lists, or None when it has none."""
    path = posixpath.join(folder, MANIFEST)
    fs = lake.fs
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return json.loads(f.read()).get("run")
