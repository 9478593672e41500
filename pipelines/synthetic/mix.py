"""The real:synthetic mix of WRAP (Maini et al. 2024 train on real and rephrased text 1:1).

The budget is counted in characters, not tokens: the mix is chosen before any tokenizer of the model to be
trained exists (ours is trained on the same lake), and a character count is the same whichever tokenizer
comes later, so one selection serves every run.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

_RATIO = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")


def parse_ratio(text: str) -> tuple[int, int]:
    """REAL:SYNTHETIC text as two positive integers, e.g. "1:1" -> (1, 1); ValueError for anything else."""
    match = _RATIO.fullmatch(text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError(f"bad mix ratio {text!r}: expected two positive integers as REAL:SYNTHETIC, e.g. 1:1")
    return int(match[1]), int(match[2])


def _subset(documents: Sequence[tuple[str, int]], target: float, seed: int) -> list[str]:
    """A seeded random subset whose characters come within one document of `target`.

    Sorting before shuffling makes the choice depend on the set of documents only, not on their order. The
    shuffled documents are taken in turn until the total reaches the target, passing over any that would
    overshoot it by more than they fill: not a knapsack, and a long document is passed over only when the
    budget left is smaller than half of it (whole real documents are often far longer than a small
    synthetic side; stopping at the first of them left the sample run's mix at 841 : 4584 characters).
    """
    order = sorted(documents)
    random.Random(seed).shuffle(order)
    chosen, total = [], 0
    for doc_id, n_chars in order:
        if total >= target:
            break
        if total + n_chars - target > target - total:  # this one would overshoot more than it fills: try the next
            continue
        chosen.append(doc_id)
        total += n_chars
    return sorted(chosen)


def select_mix(
    real: Sequence[tuple[str, int]],
    synthetic: Sequence[tuple[str, int]],
    ratio: tuple[int, int] = (1, 1),
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Ids of real and synthetic documents, (id, n_chars) each, so that real : synthetic characters ~ `ratio`.

    The scarce side is used whole and the other is a seeded random subset within one document's characters
    of its share. The result is deterministic for a seed, independent of input order, and sorted by id.
    Raises ValueError for a ratio that is not two positive integers, a negative size, or a side without
    characters (no mix can hold a ratio then).
    """
    r_real, r_synthetic = ratio
    if r_real < 1 or r_synthetic < 1:
        raise ValueError(f"mix ratio must be two positive integers, got {ratio}")
    if any(n < 0 for _, n in (*real, *synthetic)):
        raise ValueError("document sizes (n_chars) must not be negative")
    real_chars, synthetic_chars = sum(n for _, n in real), sum(n for _, n in synthetic)
    if not real_chars or not synthetic_chars:
        raise ValueError(f"a mix needs characters on both sides: real {real_chars}, synthetic {synthetic_chars}")
    if real_chars * r_synthetic >= synthetic_chars * r_real:  # real is abundant: subset it
        return _subset(real, synthetic_chars * r_real / r_synthetic, seed), sorted(doc_id for doc_id, _ in synthetic)
    return sorted(doc_id for doc_id, _ in real), _subset(synthetic, real_chars * r_synthetic / r_real, seed)
