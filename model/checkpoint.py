"""Checkpoints of a training run: `checkpoints/<run>/step_<N>/` holds the weights (safetensors), the
optimizer and scheduler state, the RNG states and the step (the data position: batches are a
function of it, model/data.py), plus `checkpoint.json` with each file's sha256.

A checkpoint folder is written under a temporary name and renamed, so it is there whole or not at
all; on loading, a file whose hash differs from the record (truncated, corrupted, replaced) is
refused by name rather than half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_model

from pipelines.common.errors import UserError

WEIGHTS = "model.safetensors"
STATE = "state.pt"
RECORD = "checkpoint.json"
STEP_DIR = re.compile(r"step_(\d{6,})")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be trusted; the message names the file."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    # Tensors and plain values only, so the state loads with `weights_only=True` (no pickle code runs).
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = [kind, torch.from_numpy(key.copy()), pos, has_gauss, gauss]
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy(), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, state: dict[str, Any], keep: int) -> Checkpoint:
    """Write step `step` atomically, then drop all but the newest `keep` checkpoints."""
    final = run_dir / f"step_{step:06d}"
    tmp = run_dir / f".step_{step:06d}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    try:
        save_model(model, str(tmp / WEIGHTS))
        torch.save({**state, "rng": rng_state()}, tmp / STATE)
        record = {"step": step, "files": {name: _sha256(tmp / name) for name in (WEIGHTS, STATE)}}
        (tmp / RECORD).write_text(json.dumps(record, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old.path)
    return Checkpoint(final, step)


def checkpoints(run_dir: Path) -> list[Checkpoint]:
    """The run's complete checkpoints (those with a record), oldest first."""
    found = []
    for child in run_dir.glob("step_*") if run_dir.is_dir() else ():
        match = STEP_DIR.fullmatch(child.name)
        if match and (child / RECORD).is_file():
            found.append(Checkpoint(child, int(match[1])))
    return sorted(found, key=lambda c: c.step)


def verify(checkpoint: Checkpoint) -> None:
    record = json.loads((checkpoint.path / RECORD).read_text())
    for name, digest in record["files"].items():
        path = checkpoint.path / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} is missing: delete {checkpoint.path} to resume from the one before")
        if _sha256(path) != digest:
            raise CheckpointError(
                f"checkpoint {path} is corrupted or truncated (its sha256 differs from {RECORD}): "
                f"delete {checkpoint.path} to resume from the one before"
            )


def load_weights(checkpoint: Checkpoint, model: torch.nn.Module, new_head: bool = False) -> None:
    """Load weights into `model` after checking every file's hash; tied tensors are restored tied.

    `new_head=True` takes the body only: a reward model starting from a language model keeps its own
    freshly initialised value head and leaves the LM head behind.
    """
    verify(checkpoint)
    tensors = load_file(str(checkpoint.path / WEIGHTS))
    heads = {"lm_head.weight", "score.weight"}
    if new_head:
        tensors = {k: v for k, v in tensors.items() if k not in heads}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = getattr(getattr(model, "config", None), "tie_embeddings", False)
    allowed = heads if new_head else {"lm_head.weight"} if tied else set()  # a tied head is saved once, as the embedding
    if set(missing) - allowed or unexpected:
        raise CheckpointError(
            f"{checkpoint.path / WEIGHTS} does not fit the model: "
            f"missing {sorted(set(missing) - allowed)}, unexpected {sorted(unexpected)}"
        )


def load_state(checkpoint: Checkpoint) -> dict[str, Any]:
    """The optimizer, scheduler and RNG states saved beside the weights (call after `load_weights`)."""
    return torch.load(checkpoint.path / STATE, weights_only=True)
