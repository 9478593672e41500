"""A trained model by the name a user gives it: a run of ours, one of its `step_N` checkpoints, or
any Hugging Face Llama folder (our `hf/` exports, the served SmolLM2). Evaluation, ablations and
best-of-n scoring all load through here, into our Transformer, so every model is measured with the
same code whatever trained it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import STEP_DIR, checkpoints, load_weights
from model.data import DataError
from model.export import load_exported
from model.transformer import ModelConfig, Transformer
from pipelines.lake import CHECKPOINTS, Lake


@dataclass
class LoadedModel:
    name: str  # how reports name it: the run (with its step), or the folder
    path: Path
    model: Transformer
    tokenizer: Path  # a folder with tokenizer.json (and, for chats, a chat template)
    record: dict[str, Any] | None  # the run's run.json when the model is one of ours

    @property
    def head(self) -> str:
        return self.model.config.head

    @property
    def objective(self) -> str | None:
        return self.record["config"]["objective"] if self.record else None


def _run_of(folder: Path) -> Path | None:
    """The run folder holding `folder` (itself, a `step_N` inside it, or its `hf/` export)."""
    for candidate in (folder, folder.parent):
        if (candidate / "run.json").is_file():
            return candidate
    return None


def _tokenizer_of(name: str, folder: Path) -> Path:
    if not (folder / "tokenizer.json").is_file():
        raise DataError(
            f"checkpoint {name} has no tokenizer ({folder / 'tokenizer.json'} is missing): without it its "
            "bits per byte cannot be measured; copy the tokenizer it was trained with into the folder"
        )
    return folder


def _resolve(spec: str, lake: Lake) -> Path:
    path = Path(spec).expanduser()
    if path.is_dir():
        return path.resolve()
    if lake.is_local and Path(lake.path(CHECKPOINTS, spec)).is_dir():
        return Path(lake.path(CHECKPOINTS, spec)).resolve()
    known = sorted(p.parent.name for p in Path(lake.path(CHECKPOINTS)).glob("*/run.json")) if lake.is_local else []
    raise DataError(
        f"no checkpoint {spec!r}: give a run in {lake.path(CHECKPOINTS)} (there are: {', '.join(known) or 'none'}), "
        "a run's step_N folder, or a Hugging Face Llama folder"
    )


@dataclass(frozen=True)
class Located:
    folder: Path
    run: Path | None  # the run folder when the model is one of ours
    record: dict[str, Any] | None  # its run.json


def locate(spec: str, lake: Lake) -> Located:
    """Where `spec`'s model is and, for ours, its run record; nothing is loaded."""
    folder = _resolve(spec, lake)
    if (folder / "config.json").is_file():  # a Hugging Face folder: an export of ours, or anyone's Llama
        run = _run_of(folder.parent) if folder.name == "hf" else None
    else:
        run = _run_of(folder)
        if run is None:
            raise DataError(f"{folder} is neither a training run (no run.json) nor a Hugging Face folder (no config.json)")
    return Located(folder, run, json.loads((run / "run.json").read_text()) if run else None)


def load_model(spec: str, lake: Lake, device: torch.device | str = "cpu") -> LoadedModel:
    """The model `spec` names, in eval mode on `device`. A run folder loads its newest checkpoint.

    Raises DataError for a name that is no checkpoint, a checkpoint without its tokenizer, or a run
    without any complete checkpoint.
    """
    where = locate(spec, lake)
    folder, run, record = where.folder, where.run, where.record
    if (folder / "config.json").is_file():
        name = f"{run.name}/hf" if run else folder.name
        model, tokenizer = load_exported(folder), _tokenizer_of(name, folder)
    else:
        found = [c for c in checkpoints(run) if c.path == folder] if STEP_DIR.fullmatch(folder.name) else checkpoints(run)
        if not found:
            raise DataError(f"run {run.name} has no complete checkpoint in {folder}")
        model = Transformer(ModelConfig(**record["model"]))
        load_weights(found[-1], model)
        name = f"{run.name}@{found[-1].step}"
        tokenizer = _tokenizer_of(name, Path(record["tokenizer"]))
    return LoadedModel(name=name, path=folder, model=model.to(device).eval(), tokenizer=tokenizer, record=record)
