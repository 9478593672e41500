"""The default job's training stage (`lmforge run`): tokenize the lake for the sample tokenizer, then
pretrain a `tiny` model, fine-tune it on instructions and train a reward model from it, each exported
to the Hugging Face layout. Sized to take a few minutes on 2 cores.

The runs follow the lake: when its data changed, they start over rather than being refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from prefect import flow, get_run_logger

from flows.gates import blocked
from flows.tokens import tokenize_flow
from flows.train import train_flow
from flows.validate import validate_flow
from model.data import in_heldout, mismatched_pairs, read_sources
from model.tokens import TokenizeConfig, TokenizeResult
from model.train import TrainConfig, TrainResult
from pipelines.lake import (
    CHECKPOINTS,
    SYNTHETIC_PREFERENCES,
    SYNTHETIC_SELF_INSTRUCT,
    SYNTHETIC_WRAP,
    Lake,
    atomic_write_bytes,
    read_manifest,
)
from pipelines.lake.quality_record import QualitySummary

SEQ_LEN = 256
MIN_PAIRS = 8  # fewer judged pairs than this, and the reward model trains on mismatched answers instead


@dataclass
class SampleTraining:
    tokens: list[TokenizeResult]
    runs: list[TrainResult]
    mixture: str
    pairs: str  # where the reward model's pairs came from
    quality: list[QualitySummary] = field(default_factory=list)  # the token shards' gates


def rows_in(lake: Lake, dataset: str) -> int:
    manifest = read_manifest(lake, dataset)
    return manifest.rows if manifest else 0


def mixture(tokens: list[TokenizeResult]) -> str:
    """`documents:1`, plus WRAP's rephrasings 1:1 (Maini et al.) when they fill at least one training sequence."""
    fits = [t.dataset for t in tokens if t.manifest.splits["train"].tokens > SEQ_LEN]
    return ",".join(f"{name}:1" for name in fits)


def reward_pairs(lake: Lake, sft_sources: str) -> str:
    """The judged pairs when there are enough and they passed their gate; else pairs of mismatched
    answers from the SFT data, in a file."""
    if rows_in(lake, SYNTHETIC_PREFERENCES) >= MIN_PAIRS and not blocked(lake, SYNTHETIC_PREFERENCES):
        return SYNTHETIC_PREFERENCES
    path = lake.path(CHECKPOINTS, "sample-mismatched-pairs.jsonl")
    held = TrainConfig.model_fields["val_fraction"].default  # the reward run's held-out share, by the id it will read
    pairs = mismatched_pairs(read_sources(lake, sft_sources), lambda pair_id: in_heldout(f"{path}:{pair_id}", held))
    lines = "".join(json.dumps(pair) + "\n" for pair in pairs)
    atomic_write_bytes(lake.fs, path, lines.encode())
    return path


@flow(name="sample-training", log_prints=True)
def sample_training_flow(
    lake: str | None, tokenizer: str, synthetic: bool, pretrain_steps: int = 300, tune_steps: int = 100
) -> SampleTraining:
    """Pretrain for `pretrain_steps`, then SFT and the reward model for `tune_steps` each."""
    logger = get_run_logger()
    root = Lake.at(lake)
    usable = {d for d in (SYNTHETIC_WRAP, SYNTHETIC_SELF_INSTRUCT) if synthetic and rows_in(root, d) and not blocked(root, d)}
    for d in {SYNTHETIC_WRAP, SYNTHETIC_SELF_INSTRUCT} - usable:
        if synthetic and rows_in(root, d):
            logger.warning(f"{d} failed its quality gate (lmforge validate {d}): left out of training")
    datasets = ["documents"] + ([SYNTHETIC_WRAP] if SYNTHETIC_WRAP in usable else [])
    tokens = tokenize_flow(TokenizeConfig(tokenizer=tokenizer, val_fraction=0.05), datasets, root.root)
    quality = validate_flow([f"tokens/{tokenizer}/{name}" for name in datasets], root.root)  # the gate before training
    mix = mixture(tokens)
    # the human-written seed tasks beside the synthetic ones
    sft_sources = ",".join(([SYNTHETIC_SELF_INSTRUCT] if SYNTHETIC_SELF_INSTRUCT in usable else []) + ["seed-tasks"])
    pairs = reward_pairs(root, sft_sources)
    if pairs != SYNTHETIC_PREFERENCES:
        logger.info(
            f"{rows_in(root, SYNTHETIC_PREFERENCES)} judged pairs in {SYNTHETIC_PREFERENCES} (fewer than {MIN_PAIRS}): "
            f"the reward model trains on mismatched-answer pairs from the SFT data ({pairs})"
        )
    shape = dict(tokenizer=tokenizer, size="tiny", seq_len=SEQ_LEN, batch_size=8, eval_batches=8, checkpoint_every=100)
    tuned = dict(shape, steps=tune_steps, lr=1e-3, warmup=min(10, tune_steps // 4), eval_every=max(tune_steps // 4, 1))
    configs = [
        TrainConfig(
            objective="pretrain",
            run="sample-pretrain",
            data=mix,
            steps=pretrain_steps,
            eval_every=max(pretrain_steps // 6, 1),
            **shape,
        ),
        TrainConfig(objective="sft", run="sample-sft", data=sft_sources, init="sample-pretrain", **tuned),
        TrainConfig(objective="reward", run="sample-reward", data=pairs, init="sample-sft", **tuned),
    ]
    runs = train_flow(configs, root.root, restart=True)
    return SampleTraining(tokens, runs, mix, pairs, quality)
