"""What the loops read: packed token windows for pretraining, chat examples for SFT, preference pairs.

Every batch is a pure function of (seed, global micro-batch index), so the position in the data is
one integer: a resumed run, or a rank of a DDP run, reads exactly the batches an uninterrupted
single process would. The global index of rank r's micro-step m at step s is
`(s·accum + m)·world + r`, which makes 2 ranks with accumulation 1 read what 1 rank with
accumulation 2 reads (tests/test_train_ddp.py holds the two to the same weights).

SFT and preference sequences are one example per row, right-padded. Attention stays causal with
no mask: a real token never sees the padding after it, and no two examples share a row, so
attention cannot cross an example's boundary. Packing several examples into a row would need a
block-diagonal mask, which sends `scaled_dot_product_attention` off its flash and efficient kernels
(they take `is_causal` but not an arbitrary mask); chat examples here are short and few, so the
padding costs less than the slower kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import xxhash
from loguru import logger

from model.transformer import IGNORE_INDEX
from pipelines.common.bundled import BUNDLED, bundled_path
from pipelines.common.errors import UserError
from pipelines.common.jsonl import read_jsonl
from pipelines.lake import SCHEMAS, Lake, listed_shards, read_shard


class DataError(UserError, ValueError):
    """Training data that cannot be used as given; the message says what to change."""


def parse_mixture(text: str) -> dict[str, float]:
    """`documents:1,synthetic/wrap:1` → {"documents": 1.0, "synthetic/wrap": 1.0} (weight 1 if left out)."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.rpartition(":") if ":" in part else (part, "", "1")
        try:
            value = float(weight)
        except ValueError:
            raise DataError(f"mixing weight {weight!r} of {name!r} is not a number (expected NAME:WEIGHT)") from None
        if value <= 0:
            raise DataError(f"mixing weight of {name!r} must be positive, not {value}")
        weights[name] = value
    if not weights:
        raise DataError("no dataset to train on: give NAME[:WEIGHT] pairs, e.g. documents:1,synthetic/wrap:1")
    return weights


def in_heldout(key: str, fraction: float) -> bool:
    """The held-out split, by a hash of the record's id: the same record always falls on the same side."""
    return xxhash.xxh64_intdigest(key.encode()) % 1_000_000 < fraction * 1_000_000


# --- pretraining: packed token windows ------------------------------------------------------------


class PackedTokens:
    """One dataset's split as the concatenation of its token shards; windows never span two shards."""

    def __init__(self, name: str, shards: list[np.ndarray]) -> None:
        self.name = name
        self.shards = [s for s in shards if len(s)]
        self.tokens = sum(len(s) for s in self.shards)

    def starts(self, window: int) -> np.ndarray:
        """How many windows of `window` tokens start in each shard (0 for a shard shorter than one)."""
        return np.array([max(len(s) - window + 1, 0) for s in self.shards], dtype=np.int64)

    def check_fits(self, window: int, split: str) -> None:
        if not self.starts(window).sum():
            raise DataError(
                f"{self.name} has {self.tokens} {split} tokens, fewer than one sequence of {window}: "
                f"tokenize more data or lower --seq-len"
            )

    def sample(self, rng: np.random.Generator, window: int) -> np.ndarray:
        starts = self.starts(window)
        where = int(rng.integers(starts.sum()))
        shard = int(np.searchsorted(np.cumsum(starts), where, side="right"))
        offset = where - int(starts[:shard].sum())
        return np.asarray(self.shards[shard][offset : offset + window], dtype=np.int64)

    def windows(self, window: int) -> Iterator[np.ndarray]:
        """Consecutive non-overlapping windows, in order: the held-out evaluation's fixed batches."""
        for shard in self.shards:
            for start in range(0, len(shard) - window + 1, window):
                yield np.asarray(shard[start : start + window], dtype=np.int64)


@dataclass
class PretrainData:
    sources: list[PackedTokens]
    weights: np.ndarray  # normalised, one per source
    seq_len: int
    batch_size: int
    seed: int

    def __post_init__(self) -> None:
        for source in self.sources:
            source.check_fits(self.seq_len + 1, "training")

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Micro-batch `index`: each row a dataset drawn by the mixing weights, then a window in it."""
        rng = np.random.default_rng([self.seed, index])
        rows = [
            self.sources[rng.choice(len(self.sources), p=self.weights)].sample(rng, self.seq_len + 1)
            for _ in range(self.batch_size)
        ]
        block = torch.from_numpy(np.stack(rows))
        return block[:, :-1], block[:, 1:]


def eval_windows(
    sources: Iterable[PackedTokens], seq_len: int, batch_size: int, max_batches: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The held-out batches, the same at every evaluation: up to `max_batches`, shared across sources."""
    rows: list[np.ndarray] = []
    sources = list(sources)
    per_source = max(1, max_batches * batch_size // max(len(sources), 1))
    for source in sources:
        window = min(seq_len + 1, source.tokens)
        if window < 2:
            continue
        for n, row in enumerate(source.windows(window)):
            if n == per_source:
                break
            rows.append(row)
    return [_pad_rows(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


def _pad_rows(rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    block = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
    for i, r in enumerate(rows):
        block[i, : len(r)] = r
    inputs = torch.from_numpy(block[:, :-1]).clamp(min=0)
    return inputs, torch.from_numpy(block[:, 1:])


# --- chat examples and preference pairs ---------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A rendered chat: its token ids and which of them the assistant wrote (the only ones trained on)."""

    ids: np.ndarray
    assistant: np.ndarray  # bool, same length


@dataclass(frozen=True)
class SetAside:
    id: str
    reason: str
    detail: str


def render_chat(tokenizer: Any, messages: list[dict], max_tokens: int) -> Example | str:
    """The ChatML rendering of one conversation, cut to `max_tokens`; or why it cannot be trained on.

    The template's `{% generation %}` block gives the assistant mask (transformers'
    `return_assistant_tokens_mask`), so the prompt, the role headers and the padding take no loss.
    """
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
        return "malformed_messages"
    if not any(m["role"] == "assistant" and m["content"] for m in messages):
        return "no_assistant_turn"
    rendered = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids = np.asarray(rendered["input_ids"][:max_tokens], dtype=np.int64)
    assistant = np.asarray(rendered["assistant_masks"][:max_tokens], dtype=bool)
    if not assistant[1:].any():
        return "assistant_truncated"
    return Example(ids, assistant)


def lm_batch(examples: list[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, right-padded; targets outside the assistant's tokens ignored."""
    width = max(len(e.ids) for e in examples) - 1
    inputs = np.full((len(examples), width), pad_id, dtype=np.int64)
    targets = np.full((len(examples), width), IGNORE_INDEX, dtype=np.int64)
    for i, e in enumerate(examples):
        n = len(e.ids) - 1
        inputs[i, :n] = e.ids[:-1]
        targets[i, :n] = np.where(e.assistant[1:], e.ids[1:], IGNORE_INDEX)
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def value_batch(examples: list[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole sequences right-padded, and each one's length (its reward is read at its last token)."""
    width = max(len(e.ids) for e in examples)
    inputs = np.full((len(examples), width), pad_id, dtype=np.int64)
    for i, e in enumerate(examples):
        inputs[i, : len(e.ids)] = e.ids
    return torch.from_numpy(inputs), torch.tensor([len(e.ids) for e in examples])


@dataclass
class ExampleData:
    """Training rows (an Example, or a (chosen, rejected) pair of them) in a seeded order, epoch after epoch."""

    rows: list[Any]
    batch_size: int
    seed: int

    source: str = ""
    set_aside: tuple[SetAside, ...] = ()

    def __post_init__(self) -> None:
        if not self.rows:
            reasons: dict[str, int] = {}
            for item in self.set_aside:
                reasons[item.reason] = reasons.get(item.reason, 0) + 1
            why = ", ".join(f"{n} {reason}" for reason, n in reasons.items()) or "none"
            raise DataError(f"{self.source}: no row left to train on after the held-out split (set aside: {why})")

    def batch(self, index: int) -> list[Any]:
        n = len(self.rows)
        positions = range(index * self.batch_size, (index + 1) * self.batch_size)
        return [self.rows[self._order(p // n)[p % n]] for p in positions]

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))


# --- reading rows -------------------------------------------------------------------------------


def read_rows(lake: Lake, source: str) -> list[dict]:
    """Rows of a lake dataset (its listed shards; none yet is no rows), a local JSONL / parquet file,
    or data bundled with lmforge by name (`seed-tasks`)."""
    path = Path(bundled_path(source))
    if path.suffix in {".jsonl", ".json"} and path.is_file():
        return read_jsonl(path)
    if path.suffix == ".parquet" and path.is_file():
        return pq.read_table(path).to_pylist()
    shards = listed_shards(lake, source)
    if not shards and source not in SCHEMAS:
        raise DataError(
            f"{source}: neither a JSONL/parquet file, a lake dataset ({lake.path(source)}) nor one of {', '.join(BUNDLED)}"
        )
    return pa.concat_tables(read_shard(lake.fs, s) for s in shards).to_pylist() if shards else []


def read_sources(lake: Lake, sources: str) -> list[tuple[str, dict]]:
    """(id, row) of every row of the comma-separated sources; ids carry their source, so two files
    that both number their rows from 0 never collide. A lake dataset without rows is passed over with a
    warning when another source has some (a small model's Self-Instruct run may keep none)."""
    names = [s.strip() for s in sources.split(",") if s.strip()]
    keyed, empty = [], []
    for source in names:
        rows = read_rows(lake, source)
        empty += [] if rows else [source]
        keyed += [(f"{source}:{row_id(row, n)}", row) for n, row in enumerate(rows)]
    if not keyed:
        raise DataError(f"{', '.join(names) or 'no source given'}: no rows (a lake dataset has rows once its stage kept some)")
    if empty:
        logger.warning(f"{', '.join(empty)}: no rows yet, read the rest of {sources}")
    return keyed


def row_id(row: dict, n: int) -> str:
    return str(row.get("id") or n)


def chat_messages(row: dict) -> Any:
    """A row's conversation: its `messages`, else one built from Self-Instruct's instruction/input/output."""
    if row.get("messages") is not None:
        return row["messages"]
    if row.get("instances"):  # a Self-Instruct seed task: its first instance
        row = {**row, **row["instances"][0]}
    if isinstance(row.get("instruction"), str) and isinstance(row.get("output"), str):
        prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]
    return None


def mismatched_pairs(rows: list[tuple[str, dict]], heldout: Callable[[str], bool] = lambda pair_id: False) -> list[dict]:
    """Preference pairs from instruction data alone: chosen is an instruction's own answer, rejected
    the next instruction's answer (a response to another question). For when no judged pairs exist:
    a reward model trained on them learns relevance, not quality.

    Pairs are made within the held-out side and within the training side apart (`heldout` of the pair's
    id), so no held-out answer is trained on, as chosen or as rejected: otherwise a model that learned
    which answers were chosen would look right or wrong on held-out pairs for that alone.
    """
    chats = [(key, chat_messages(row)) for key, row in rows]
    chats = [(key, c) for key, c in chats if isinstance(c, list) and len(c) == 2 and c[1]["role"] == "assistant"]
    pairs = []
    for side in (True, False):
        group = [(key, c) for key, c in chats if heldout(f"mismatched:{key}") == side]
        pairs += [
            {"id": f"mismatched:{key}", "prompt": c[0]["content"], "chosen": c[1]["content"], "rejected": other[1]["content"]}
            for (key, c), (_, other) in zip(group, group[1:] + group[:1])
        ]
    return pairs


def split_rows(rows: list[tuple[str, Any]], fraction: float) -> tuple[list[Any], list[Any]]:
    """(train, held out) by id hash; at least one row held out when there are two or more."""
    held = [r for key, r in rows if in_heldout(key, fraction)]
    train = [r for key, r in rows if not in_heldout(key, fraction)]
    if not held and len(rows) >= 2:
        key, first = min(rows, key=lambda kr: xxhash.xxh64_intdigest(kr[0].encode()))
        held, train = [first], [r for k, r in rows if k != key]
    return train, held
