"""Token shards as a table GX can check: one row per `.bin` file with what its ids and offsets say.

The ids are read in chunks (a shard may hold billions), so the check is on every id, not a sample.
"""

from __future__ import annotations

import json
import posixpath

import numpy as np
import pandas as pd

from pipelines.lake import MANIFEST, TOKENIZERS, Lake

CHUNK_IDS = 1 << 24


def tokens_manifest(lake: Lake, folder: str) -> dict:
    with lake.fs.open(lake.path(folder, MANIFEST), "rb") as f:
        return json.loads(f.read())


def vocab_size(lake: Lake, manifest: dict) -> int:
    """The tokenizer's own vocabulary size when its folder is in the lake (the manifest's figure otherwise)."""
    path = lake.path(TOKENIZERS, manifest["tokenizer"], "tokenizer.json")
    if lake.fs.exists(path):
        from tokenizers import Tokenizer

        with lake.fs.open(path, "rb") as f:
            return Tokenizer.from_str(f.read().decode()).get_vocab_size(with_added_tokens=True)
    return int(manifest["vocab_size"])


def expected_dtype(vocab: int) -> str:
    return "uint16" if vocab <= 1 << 16 else "uint32"


def shard_row(lake: Lake, folder: str, split: str, name: str, dtype: str) -> dict:
    fs, path = lake.fs, lake.path(folder, split, name)
    itemsize = np.dtype(dtype).itemsize
    size = fs.size(path)
    low, high, count = None, None, size // itemsize
    with fs.open(path, "rb") as f:
        while chunk := f.read(CHUNK_IDS * itemsize):
            ids = np.frombuffer(chunk[: len(chunk) // itemsize * itemsize], dtype=dtype)
            if ids.size:
                low = int(ids.min()) if low is None else min(low, int(ids.min()))
                high = int(ids.max()) if high is None else max(high, int(ids.max()))
    with fs.open(path.removesuffix(".bin") + ".idx.npy", "rb") as f:
        offsets = np.load(f, allow_pickle=False)
    consistent = bool(
        size % itemsize == 0 and offsets.size >= 2 and offsets[0] == 0 and offsets[-1] == count and np.all(np.diff(offsets) > 0)
    )
    return {
        "shard": posixpath.join(split, name),
        "split": split,
        "dtype": dtype,
        "tokens": count,
        "min_id": low,
        "max_id": high,
        "documents": max(int(offsets.size) - 1, 0),
        "offsets_consistent": consistent,
    }


def token_shards_frame(lake: Lake, folder: str, manifest: dict) -> pd.DataFrame:
    """One row per shard the manifest lists; a listed shard that is missing or unreadable is a row saying so."""
    rows = []
    for split, info in manifest.get("splits", {}).items():
        for name in info.get("shards", []):
            try:
                rows.append(shard_row(lake, folder, split, name, manifest["dtype"]))
            except (OSError, ValueError) as e:
                unreadable = {"dtype": f"unreadable: {e}"[:200], "offsets_consistent": False}
                rows.append({"shard": posixpath.join(split, name), "split": split, **unreadable})
    columns = ["shard", "split", "dtype", "tokens", "min_id", "max_id", "documents", "offsets_consistent"]
    return pd.DataFrame(rows, columns=columns)
