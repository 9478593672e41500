"""Token shards for training, as the tokenize stage (`model/tokens.py`) writes them and the trainer reads
them: `tokens/<tokenizer>/<dataset>/{train,val}/<run>_<NNNNN>.bin` (flat little-endian ids, one
`<|endoftext|>` after each document) beside `<run>_<NNNNN>.idx.npy` (document start offsets), and the
folder's `_manifest.json`. See `model/tokens.py` for how they are made.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from pipelines.common.errors import UserError
from pipelines.lake import DOCUMENTS_DEDUP, MANIFEST, Lake
from pipelines.lake.token_layout import SPLITS, TOKENS

SCHEMA_VERSION = 1
DOCUMENTS_ALIAS = "documents"
EOT = "<|endoftext|>"


class TokenShardsError(UserError, ValueError):
    """Token shards that cannot be read as asked (unknown split, not on a local disk, offsets that do not fit)."""


class TokensNotFound(TokenShardsError):
    """No tokens manifest where the trainer looked: the dataset was never tokenized with that tokenizer."""


class SplitRecord(BaseModel):
    documents: int = 0
    tokens: int = Field(default=0, description="ids in the .bin files, one <|endoftext|> per document included")
    bytes: int = Field(default=0, description="UTF-8 bytes of the documents' text")
    shards: list[str] = Field(default=[], description="`.bin` file names in the split folder; offsets: same stem + .idx.npy")


class TokensManifest(BaseModel):
    """`tokens/<tokenizer>/<dataset>/_manifest.json`: the one run whose shards make the folder."""

    schema_version: int = SCHEMA_VERSION
    dataset: str = Field(description="the name tokenized: `documents` or a lake dataset")
    source_dataset: str = Field(description="the lake dataset read, e.g. documents/dedup")
    tokenizer: str
    tokenizer_sha256: str = Field(description="sha256 of tokenizer.json")
    vocab_size: int
    dtype: Literal["uint16", "uint32"]
    eot_id: int
    eot_token: str = EOT
    run: str = Field(description="fingerprint of tokenizer hash + source runs and shards + parameters")
    parameters: dict[str, Any]
    source_runs: list[str]
    source_shards: int
    created: str
    lmforge_version: str
    seconds: float = 0.0
    splits: dict[str, SplitRecord]
    skipped: dict[str, int] = Field(default={}, description="rows not tokenized, by reason (null or empty text, null id)")

    @property
    def documents(self) -> int:
        return sum(s.documents for s in self.splits.values())

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.splits.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.splits.values())


def source_dataset(name: str) -> str:
    """The lake dataset a name reads: `documents` is `documents/dedup`, any other name is itself."""
    return DOCUMENTS_DEDUP if name == DOCUMENTS_ALIAS else name


def tokens_dir(lake: Lake, tokenizer: str, name: str) -> str:
    return lake.path(TOKENS, tokenizer, name)


def read_tokens_manifest(lake: Lake, tokenizer: str, name: str) -> TokensManifest | None:
    """The manifest of `tokens/<tokenizer>/<name>/`, or None when the dataset was not tokenized with it."""
    path = posixpath.join(tokens_dir(lake, tokenizer, name), MANIFEST)
    fs = lake.fs
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return TokensManifest.model_validate_json(f.read())


def open_split(lake: Lake, tokenizer: str, name: str, split: str) -> list[tuple[np.memmap, np.ndarray]]:
    """Each shard of a split as (token ids memory-mapped read-only, document start offsets, n_docs + 1 long).

    Local lakes only. Raises TokensNotFound, naming the folder, when it has no manifest, and TokenShardsError for
    an unknown split or a shard whose offsets do not end at its length. An empty split is an empty list.
    """
    if split not in SPLITS:
        raise TokenShardsError(f"unknown split {split!r}: use {' or '.join(SPLITS)}")
    folder = tokens_dir(lake, tokenizer, name)
    manifest = read_tokens_manifest(lake, tokenizer, name)
    if manifest is None:
        raise TokensNotFound(
            f"no tokens in {folder} (no {MANIFEST}): run `lmforge tokenize --tokenizer {tokenizer} --dataset {name}` first"
        )
    if not lake.is_local:
        raise TokenShardsError(f"{folder} is not on a local disk: token shards are memory-mapped; copy the folder to one")
    shards = []
    for shard in manifest.splits[split].shards:
        stem = os.path.join(folder, split, shard.removesuffix(".bin"))
        tokens = np.memmap(f"{stem}.bin", dtype=np.dtype(manifest.dtype).newbyteorder("<"), mode="r")
        offsets = np.load(f"{stem}.idx.npy", allow_pickle=False)
        if offsets[0] != 0 or offsets[-1] != len(tokens):
            raise TokenShardsError(f"{stem}.bin holds {len(tokens)} ids but its offsets end at {offsets[-1]}: tokenize it again")
        shards.append((tokens, offsets))
    return shards
