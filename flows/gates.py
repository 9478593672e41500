"""Which quality gates a stage must pass before it reads its inputs (DESIGN §4 Quality)."""

from __future__ import annotations

from model.data import parse_mixture
from model.token_shards import source_dataset
from model.train import TrainConfig
from pipelines.lake import Lake
from pipelines.lake.quality_record import current_quality_summary
from quality.gate import require_passed


def check_gates(lake: Lake, datasets: list[str], required: bool = False) -> None:
    """GateFailed for the first dataset that failed its gate in its current version."""
    for dataset in dict.fromkeys(datasets):
        require_passed(lake, dataset, required)


def blocked(lake: Lake, dataset: str) -> bool:
    """Whether the dataset as it is now failed its gate (not validated counts as not blocked)."""
    summary = current_quality_summary(lake, dataset)
    return summary is not None and summary.blocks


def tokenize_inputs(names: list[str]) -> list[str]:
    return [source_dataset(n) for n in names]


def train_inputs(lake: Lake, config: TrainConfig) -> list[str]:
    """A pretraining run reads token datasets (and, through them, their text); SFT and reward runs read lake datasets."""
    if config.objective == "pretrain":
        names = list(parse_mixture(config.data))
        return [d for n in names for d in (f"tokens/{config.tokenizer}/{n}", source_dataset(n))]
    return [d for d in (source_dataset(s.strip()) for s in config.data.split(",")) if lake.exists(d)]
