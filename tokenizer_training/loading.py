"""Load the tokenizers the report measures: tiktoken rank files (offline), HF `tokenizer.json` files and
folders, and lmforge's own (a folder with `_manifest.json`), behind one small interface.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import tiktoken
import tiktoken.load
from tokenizers import Tokenizer, pre_tokenizers

from pipelines.common.errors import UserError
from pipelines.lake import MANIFEST


class TokenizerLoadError(UserError, ValueError):
    """The path is not a tokenizer this report can load (unknown file type, bad tiktoken stem, unreadable json)."""


TIKTOKEN_ENCODINGS = ("r50k_base", "p50k_base", "cl100k_base", "o200k_base")


# tiktoken's own batch encode uses 8 threads; the counting path uses as many, to compare like with like.
TIKTOKEN_THREADS = 8


_NORMAL_FORMS = (None, "NFC", "NFD", "NFKC", "NFKD")  # normalisers that leave text already in their form alone


_EXPECTED = f"expected a *.tiktoken rank file ({', '.join(TIKTOKEN_ENCODINGS)}), a tokenizer.json, or a folder holding one"


@dataclass(frozen=True)
class LoadedTokenizer:
    """A reference or lmforge tokenizer, encoding without special tokens, as the report measures it.

    The library object is `encoding` (tiktoken) or `tokenizer` (HF `tokenizers`), whichever `kind` says.
    `byte_lengths` holds each token id's length in UTF-8 bytes when the tokenizer's pieces are bytes of
    the text itself (tiktoken, byte-level `tokenizer.json`): then token spans follow from the ids alone,
    with no offsets to convert. `normal_form` is the Unicode form a `tokenizer.json` normaliser applies.
    """

    name: str
    kind: str
    path: str
    vocab_size: int
    lmforge: bool
    encoding: tiktoken.Encoding | None = field(default=None, compare=False, repr=False)
    tokenizer: Tokenizer | None = field(default=None, compare=False, repr=False)
    byte_lengths: np.ndarray | None = field(default=None, compare=False, repr=False)
    normal_form: str | None = field(default=None, compare=False, repr=False)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, special tokens neither added nor recognised as such by tiktoken."""
        if self.encoding is not None:
            return self.encoding.encode_ordinary_batch(texts)
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        """The text of the ids (invalid UTF-8 from a partial byte sequence becomes U+FFFD)."""
        if self.encoding is not None:
            return self.encoding.decode(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def encode_ids(self, texts: list[str]) -> list[np.ndarray]:
        """Ids as arrays, skipping the Python lists (and, for `tokenizers`, the offsets) the counts do not need."""
        if self.encoding is not None:
            encode = partial(self.encoding.encode_to_numpy, disallowed_special=())
            with ThreadPoolExecutor(TIKTOKEN_THREADS) as pool:
                return list(pool.map(encode, texts))
        encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        return [np.fromiter(encoding.ids, dtype=np.int64, count=len(encoding)) for encoding in encodings]

    def encode_offsets(self, texts: list[str]) -> list[np.ndarray]:
        """Each token's (start, end) character offsets into its text, for tokenizers whose pieces are not its bytes."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [
            np.fromiter(chain.from_iterable(encoding.offsets), dtype=np.int64, count=2 * len(encoding)).reshape(-1, 2)
            for encoding in encodings
        ]


def load_tokenizer(path: str | os.PathLike) -> LoadedTokenizer:
    """Load a `<encoding>.tiktoken` rank file, a `*.json` tokenizer, or a folder holding `tokenizer.json`.

    Works offline. Raises TokenizerLoadError for anything else, a rank file whose stem is no known
    encoding or whose bytes are not that encoding's, and an unreadable tokenizer.json.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise TokenizerLoadError(f"cannot load tokenizer {path}: no tokenizer.json in the folder; {_EXPECTED}")
        return _load_huggingface(path / "tokenizer.json", name=path.name)
    if path.is_file() and path.suffix == ".tiktoken":
        return _load_tiktoken(path)
    if path.is_file() and path.suffix == ".json":
        return _load_huggingface(path, name=path.parent.name if path.name == "tokenizer.json" else path.stem)
    raise TokenizerLoadError(f"cannot load tokenizer {path}: {_EXPECTED}")


def _load_tiktoken(path: Path) -> LoadedTokenizer:
    """A tiktoken Encoding from a local rank file, with the split pattern and specials of the encoding it names."""
    if path.stem not in TIKTOKEN_ENCODINGS:
        raise TokenizerLoadError(
            f"unknown tiktoken encoding {path.stem!r} ({path}): the file stem must be one of {', '.join(TIKTOKEN_ENCODINGS)}"
        )
    spec = _tiktoken_spec(path)
    encoding = tiktoken.Encoding(**spec)
    byte_lengths = np.zeros(encoding.n_vocab, dtype=np.int64)
    for piece, rank in spec["mergeable_ranks"].items():
        byte_lengths[rank] = len(piece)
    for special, rank in spec["special_tokens"].items():
        byte_lengths[rank] = len(special.encode())
    return LoadedTokenizer(
        name=path.stem,
        kind="tiktoken",
        path=str(path),
        vocab_size=encoding.n_vocab,
        lmforge=False,
        encoding=encoding,
        byte_lengths=byte_lengths,
    )


def _tiktoken_spec(path: Path) -> dict[str, Any]:
    """Run tiktoken's own constructor for the encoding, its rank file read from `path` instead of downloaded.

    The split pattern and specials live inside tiktoken's constructor functions; running a copy whose
    `load_tiktoken_bpe` reads the local file keeps them exact without patching tiktoken for other threads.
    The constructor passes the rank file's expected sha256, so a mislabelled file is refused.
    """
    from tiktoken_ext import openai_public

    def load_local(_url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        data = path.read_bytes()
        if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
            raise TokenizerLoadError(
                f"{path} is not tiktoken's {path.stem} rank file (sha256 differs): name the file after the encoding it holds"
            )
        try:
            return tiktoken.load.load_tiktoken_bpe(str(path), expected_hash=expected_hash)
        except ValueError as error:
            raise TokenizerLoadError(f"cannot read tiktoken rank file {path}: {error}") from error

    constructor = openai_public.ENCODING_CONSTRUCTORS[path.stem]
    local_globals = {**vars(openai_public), "load_tiktoken_bpe": load_local}
    local = types.FunctionType(
        constructor.__code__, local_globals, constructor.__name__, constructor.__defaults__, constructor.__closure__
    )
    return local()


def _load_huggingface(path: Path, name: str) -> LoadedTokenizer:
    """A `tokenizers.Tokenizer` from a json file; lmforge's when its folder holds our `_manifest.json`."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for every parse failure
        raise TokenizerLoadError(f"cannot read tokenizer {path}: {error}") from error
    config = json.loads(tokenizer.to_str())
    normalizer = config.get("normalizer") or {}
    return LoadedTokenizer(
        name=name,
        kind="huggingface",
        path=str(path),
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        lmforge=(path.parent / MANIFEST).is_file(),
        tokenizer=tokenizer,
        byte_lengths=_byte_level_lengths(tokenizer, config),
        normal_form=normalizer.get("type"),
    )


def _byte_level_lengths(tokenizer: Tokenizer, config: dict[str, Any]) -> np.ndarray | None:
    """Each id's length in bytes when every piece is spelled in the byte-level alphabet; None otherwise.

    Only a byte-level pre-tokenizer without a prefix space, after no normaliser or one Unicode normal
    form (checked per text), makes pieces that are the text's own bytes; count_languages still checks
    that they add up to each text.
    """
    normalizer = config.get("normalizer") or {"type": None}
    pre_tokenizer = config.get("pre_tokenizer") or {}
    byte_level = [step for step in pre_tokenizer.get("pretokenizers", [pre_tokenizer]) if step.get("type") == "ByteLevel"]
    # A prefix space is a byte the text does not have.
    if normalizer["type"] not in _NORMAL_FORMS or not byte_level or any(step.get("add_prefix_space") for step in byte_level):
        return None
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    added = {token["id"]: token["content"] for token in config.get("added_tokens", [])}
    lengths = np.zeros(max(chain(vocab.values(), added, [-1])) + 1, dtype=np.int64)
    for piece, token_id in vocab.items():
        if not alphabet.issuperset(piece):
            return None
        lengths[token_id] = len(piece)
    for token_id, content in added.items():
        lengths[token_id] = len(content.encode())
    return lengths
