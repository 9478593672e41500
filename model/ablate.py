"""Data ablations: the same model, from the same seeds, on each data mix, for the same token budget,
every arm measured on the same held-out text. What a data decision (cleaning, dedup, synthetic
rephrasings, another tokenizer) does to a model, with the seed spread beside the difference.

An arm is `NAME=MIX[@TOKENIZER][;KEY=VALUE…]`: MIX is `NAME[:WEIGHT],…` of lake datasets (tokenized
for the arm's tokenizer), KEY one of `OVERRIDES` (an arm may change the learning rate, say). Each
(arm, seed) is an ordinary pretraining run, `ablate-<ablation>.<arm>-s<seed>`, so a killed ablation
resumes its runs and a finished run whose settings and data are unchanged is reused as it is.
Bits per byte makes arms with different tokenizers comparable.
"""

from __future__ import annotations

import math
import re
import shlex
import statistics
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from model.data import DataError, parse_mixture
from model.evaluate import EvalConfig
from model.token_shards import TokensManifest
from model.train import TrainConfig

OVERRIDES = {"lr": float, "warmup": int, "weight_decay": float, "grad_clip": float}
_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"


class Arm(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=f"^{_NAME}$")
    mixture: str  # NAME[:WEIGHT],…
    tokenizer: str
    overrides: dict[str, float] = {}

    def mixture_names(self) -> list[str]:
        return list(parse_mixture(self.mixture))

    @property
    def spec(self) -> str:
        extra = "".join(f";{k}={v:g}" for k, v in self.overrides.items())
        return f"{self.mixture}@{self.tokenizer}{extra}"


def parse_arm(text: str, default_tokenizer: str) -> Arm:
    """`clean=documents/clean`, `wrap=documents:1,synthetic/wrap:1`, `tok32k=documents@web-32k`, `hot=documents;lr=0.05`."""
    name, sep, spec = text.partition("=")
    if not sep or not re.fullmatch(_NAME, name.strip()) or not spec.strip():
        raise DataError(f"--mix {text!r}: expected NAME=DATASET[:WEIGHT],…[@TOKENIZER], e.g. dedup=documents")
    spec, *options = spec.split(";")
    mixture, _, tokenizer = spec.partition("@")
    overrides = {}
    for option in options:
        key, _, value = (part.strip() for part in option.partition("="))
        if key not in OVERRIDES:
            raise DataError(f"--mix {text!r}: {key!r} cannot be set per arm (only {', '.join(OVERRIDES)})")
        overrides[key] = override(text, key, value)
    try:
        parse_mixture(mixture)
    except DataError as error:
        raise DataError(f"--mix {text!r}: {error}") from None
    return Arm(name=name.strip(), mixture=mixture.strip(), tokenizer=tokenizer.strip() or default_tokenizer, overrides=overrides)


def override(text: str, key: str, value: str) -> float:
    """An arm's KEY=VALUE, checked here as the run's TrainConfig would check it (a negative lr, say), so
    that a bad value is one error naming the arm, not a validation traceback once the data is tokenized."""
    kind = OVERRIDES[key]
    try:
        number = kind(value)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise DataError(f"--mix {text!r}: {key} must be {expected}, not {value!r}") from None
    field = TrainConfig.model_fields[key]
    try:
        TypeAdapter(Annotated[field.annotation, field]).validate_python(number)
    except ValidationError as error:
        raise DataError(f"--mix {text!r}: {key}={value}: {error.errors()[0]['msg'].lower()}") from None
    if not math.isfinite(number):
        raise DataError(f"--mix {text!r}: {key}={value}: not a finite number")
    return number


class AblationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=f"^{_NAME}$")
    arms: list[Arm] = Field(min_length=2)
    tokens: int = Field(ge=1, description="training tokens per run (every arm and seed)")
    seeds: int = Field(2, ge=1)
    preset: str = "tiny"
    seq_len: int = Field(256, ge=8)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(3e-3, gt=0)
    evaluations: int = Field(6, ge=1, description="points on each validation curve")
    eval_data: str = Field("documents", description="the tokenized dataset whose val split draws the curves")
    allow_repeat: bool = False
    evaluation: EvalConfig = EvalConfig()

    @field_validator("arms")
    @classmethod
    def _distinct_names(cls, arms: list[Arm]) -> list[Arm]:
        # runs and results are keyed by the arm's name: two arms of one name would train and report one mix twice
        twice = sorted({a.name for a in arms if [b.name for b in arms].count(a.name) > 1})
        if twice:
            raise ValueError(f"two arms are named {', '.join(twice)}: give each --mix its own NAME")
        return arms

    def steps(self) -> int:
        return max(math.ceil(self.tokens / (self.seq_len * self.batch_size)), 1)


def command_line(config: AblationConfig, lake: str) -> str:
    """The `lmforge ablate` command that builds `config`: what a report gives to reproduce it, whether
    the ablation was started from the CLI, `lmforge run` or a deployment."""
    args = ["lmforge", "ablate", "--name", config.name]
    for arm in config.arms:
        args += ["--mix", f"{arm.name}={arm.spec}"]
    args += ["--tokens", str(config.tokens), "--seeds", str(config.seeds), "--preset", config.preset]
    args += ["--seq-len", str(config.seq_len), "--batch-size", str(config.batch_size), "--lr", f"{config.lr:g}"]
    evaluation = config.evaluation
    args += ["--parallel", evaluation.parallel] if evaluation.parallel else []
    args += ["--max-lines", str(evaluation.max_lines)] if evaluation.max_lines else []
    args += ["--heldout-bytes", str(evaluation.heldout_bytes)] + (["--allow-repeat"] if config.allow_repeat else [])
    return shlex.join(args + ["--lake", lake])


def run_name(ablation: str, arm: str, seed: int) -> str:
    """`ablate-<ablation>.<arm>-s<seed>`: neither name may hold a dot, so two ablations never share a run."""
    return f"ablate-{ablation}.{arm}-s{seed}"


def run_configs(config: AblationConfig) -> dict[tuple[str, int], TrainConfig]:
    """One pretraining run per (arm, seed): identical but for the data, the tokenizer and the arm's overrides."""
    steps = config.steps()
    every = max(steps // config.evaluations, 1)
    shared = dict(
        objective="pretrain",
        eval_data=config.eval_data,
        size=config.preset,
        seq_len=config.seq_len,
        batch_size=config.batch_size,
        steps=steps,
        lr=config.lr,
        warmup=min(20, steps // 10),
        eval_every=every,
        checkpoint_every=every,
        keep_checkpoints=1,
        export=False,
    )
    # The arm's overrides replace the shared settings (lr, warmup, …): merged, not passed twice.
    return {
        (arm.name, seed): TrainConfig(
            **(
                shared
                | {"run": run_name(config.name, arm.name, seed), "tokenizer": arm.tokenizer, "data": arm.mixture, "seed": seed}
                | arm.overrides
            )
        )
        for arm in config.arms
        for seed in range(config.seeds)
    }


def check_budget(config: AblationConfig, arm: Arm, manifests: dict[str, TokensManifest]) -> dict[str, float]:
    """Epochs of each dataset the budget reads; more than one is refused unless `allow_repeat`."""
    weights = parse_mixture(arm.mixture)
    total = sum(weights.values())
    read = config.steps() * config.seq_len * config.batch_size
    epochs = {name: read * w / total / max(manifests[name].splits["train"].tokens, 1) for name, w in weights.items()}
    over = {name: e for name, e in epochs.items() if e > 1}
    if over and not config.allow_repeat:
        said = ", ".join(f"{name} {e:.2f} times ({manifests[name].splits['train'].tokens:,} tokens)" for name, e in over.items())
        raise DataError(
            f"arm {arm.name!r}: a budget of {read:,} tokens reads {said}: that is {max(over.values()):.1f} epochs; "
            "lower --tokens or pass --allow-repeat"
        )
    return epochs


# --- results ------------------------------------------------------------------------------------


@dataclass
class SeedResult:
    seed: int
    run: str
    diverged: str | None = None  # the training error, when the run diverged
    curve: list[tuple[int, float]] = field(default_factory=list)  # (tokens seen, held-out bits per byte)
    heldout_bpb: float | None = None
    aligned_bpb: float | None = None
    languages: dict[str, float] = field(default_factory=dict)  # held-out bits per byte per language


@dataclass
class ArmResult:
    arm: Arm
    seeds: list[SeedResult]
    epochs: dict[str, float]

    def finals(self, key: str = "heldout_bpb") -> list[float]:
        return [getattr(s, key) for s in self.seeds if s.diverged is None and getattr(s, key) is not None]

    @property
    def diverged(self) -> bool:
        return not self.finals()


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def spread(values: list[float]) -> tuple[float, float] | None:
    return (min(values), max(values)) if values else None


def beyond_spread(a: list[float], b: list[float]) -> bool | None:
    """Whether two arms' seed ranges do not overlap: a difference no seed would have made. None with one seed."""
    if len(a) < 2 or len(b) < 2:
        return None
    return max(a) < min(b) or max(b) < min(a)


def final_rows(results: list[ArmResult]) -> list[dict[str, Any]]:
    """The final table: per arm its mean held-out bits per byte, the seed range, the difference from the
    first arm (the baseline) and whether it exceeds the seed spread."""
    base = results[0].finals()
    rows = []
    for r in results:
        finals = r.finals()
        low_high = spread(finals)
        m = mean(finals)
        rows.append(
            {
                "arm": r.arm.name,
                "spec": r.arm.spec,
                "held-out bits/byte": m,
                "seed range": f"{low_high[0]:.3f}–{low_high[1]:.3f}" if low_high else "—",
                "Δ vs " + results[0].arm.name: (m - mean(base)) if m is not None and base and r is not results[0] else None,
                "beyond seed spread": None if r is results[0] else beyond_spread(finals, base),
                "aligned bits/byte": mean(r.finals("aligned_bpb")),
                "diverged": ", ".join(f"seed {s.seed}" for s in r.seeds if s.diverged) or "",
            }
        )
    return rows
