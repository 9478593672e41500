"""How many nats a language model needs for a text: the numerator of bits per byte.

A text is scored as a document: its tokens after one document separator (`<|endoftext|>`, which
precedes every document in our token shards and SmolLM2's), every token of the text predicted,
nothing else. A text longer than the model's window is read in overlapping windows, exactly as
transformers' perplexity guide does it ("Perplexity of fixed-length models", stride = half the
window): each token is scored once, with at least `window - stride` tokens of context after the first
window. Bits per byte = nats / ln 2 / UTF-8 bytes of the text,
so models with different tokenizers are compared on the same quantity.

The windows of all texts are sorted by length and batched up to a token budget, and the output head
is applied only to the positions scored, in chunks: with SmolLM2's 49k vocabulary, logits for a
whole batch would be gigabytes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from model.transformer import Transformer

DOCUMENT_SEPARATOR = "<|endoftext|>"
LOGIT_ROWS = 1024  # positions per output-head chunk


@dataclass(frozen=True)
class Window:
    text: int  # which text
    start: int  # first input position in the text's ids
    end: int  # one past the last input position
    scored: int  # how many targets, counted from the window's end, are this window's to score


@dataclass(frozen=True)
class Scores:
    nats: np.ndarray  # per text
    tokens: np.ndarray  # targets scored per text
    bytes: np.ndarray  # UTF-8 bytes per text

    def bits_per_byte(self) -> float:
        total = int(self.bytes.sum())
        return float(self.nats.sum()) / (math.log(2) * total) if total else float("nan")


def separator_id(tokenizer: Tokenizer) -> int:
    """The id a document starts after: `<|endoftext|>`, else the tokenizer's first special token."""
    found = tokenizer.token_to_id(DOCUMENT_SEPARATOR)
    if found is not None:
        return found
    special = sorted(i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special)
    if not special:
        raise ValueError("the tokenizer has neither <|endoftext|> nor any special token to start a document with")
    return special[0]


def encode_texts(tokenizer: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Each text's ids after the document separator; special tokens in the text are text."""
    start = separator_id(tokenizer)
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    return [np.array([start, *encoding.ids], dtype=np.int64) for encoding in encodings]


def windows(text: int, length: int, width: int, stride: int) -> list[Window]:
    """transformers' strided-perplexity windows over ids[0:length]: window k starts at k·stride, ends
    `width` later (or at the text's end) and scores the targets after the previous window's end, so
    each of positions 1 … length-1 is scored once."""
    found, begin, done = [], 0, 1  # position 0, the separator, is context only
    while True:
        end = min(begin + width, length)
        found.append(Window(text, begin, end, max(end - done, 0)))
        done = end
        if end >= length:
            return found
        begin += stride


def batches(spans: list[Window], budget: int) -> list[list[Window]]:
    """Longest first, as many windows per batch as fit `budget` padded tokens."""
    ordered = sorted(spans, key=lambda w: w.end - w.start, reverse=True)
    grouped: list[list[Window]] = []
    for span in ordered:
        if grouped and (len(grouped[-1]) + 1) * (grouped[-1][0].end - grouped[-1][0].start) <= budget:
            grouped[-1].append(span)
        else:
            grouped.append([span])
    return grouped


@torch.inference_mode()
def score_ids(
    model: Transformer,
    ids: list[np.ndarray],
    text_bytes: list[int],
    window: int | None = None,
    batch_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Scores:
    """The nats each text's ids cost `model` (an LM head), scored as the module docstring says.

    `window` defaults to the model's longest sequence; the stride is half of it. `batch_tokens`
    defaults to 1024 on a CPU, where bigger batches fall out of cache and run slower per token
    (measured with SmolLM2-135M: 1k tokens 16.6 s, 4k 26.9 s, 16k 46.5 s for the same 60 lines), and
    to 32k on a GPU. `progress` is told the number of targets scored after each batch.
    """
    width = min(window or model.config.max_seq_len, model.config.max_seq_len)
    stride = max(width // 2, 1)
    device = next(model.parameters()).device
    batch_tokens = batch_tokens or (32_768 if device.type == "cuda" else 1024)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    spans = [w for i, seq in enumerate(ids) for w in windows(i, len(seq), width, stride)]
    nats = torch.zeros(len(ids), dtype=torch.float64, device=device)
    counts = np.zeros(len(ids), dtype=np.int64)
    head = model.lm_head.weight
    for group in batches(spans, batch_tokens):
        longest = group[0].end - group[0].start
        inputs = torch.zeros(len(group), longest, dtype=torch.long)
        rows, cols, owner = [], [], []
        for r, span in enumerate(group):
            n = span.end - span.start
            inputs[r, :n] = torch.from_numpy(ids[span.text][span.start : span.end])
            rows.extend([r] * span.scored)
            cols.extend(range(n - 1 - span.scored, n - 1))  # the positions whose next token is scored
            owner.extend([span.text] * span.scored)
            counts[span.text] += span.scored
        inputs = inputs.to(device)
        rows_t, cols_t = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
        with autocast:
            hidden = model.hidden(inputs)[rows_t, cols_t].float()
        targets = inputs[rows_t, cols_t + 1]
        losses = torch.cat(
            [
                F.cross_entropy(hidden[i : i + LOGIT_ROWS] @ head.T.float(), targets[i : i + LOGIT_ROWS], reduction="none")
                for i in range(0, len(targets), LOGIT_ROWS)
            ]
        )
        nats.index_add_(0, torch.tensor(owner, device=device), losses.double())
        if progress is not None:
            progress(len(targets))
    return Scores(nats.cpu().numpy(), counts, np.asarray(text_bytes, dtype=np.int64))


def score_texts(
    model: Transformer, tokenizer: Tokenizer, texts: list[str], window: int | None = None, batch_tokens: int | None = None
) -> Scores:
    """`score_ids` of the texts as `encode_texts` encodes them."""
    return score_ids(model, encode_texts(tokenizer, texts), [len(t.encode()) for t in texts], window, batch_tokens)
