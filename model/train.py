"""The training loop shared by pretraining, SFT, the reward model and DPO (nanoGPT's shape: one
model, one step function, every knob a typed field).

A run lives in `checkpoints/<run>/`: `run.json` (the configuration and the data it read),
`step_<N>/` checkpoints (model/checkpoint.py), `metrics.jsonl` (one line per step and per
evaluation), `set_aside.jsonl` (rows that could not be trained on, with the reason), `result.json`
when it finished, and `hf/`, the Hugging Face export (model/export.py). Started again, a run resumes
from its newest checkpoint and, because every batch is a function of the step (model/data.py) and
the optimizer, scheduler and RNG states are restored, logs the same losses step for step as a run
never interrupted. Under `torchrun` it trains with DDP (NCCL on GPUs, gloo on CPUs); rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field

from model.checkpoint import Checkpoint, checkpoints, load_state, load_weights, save_checkpoint, set_rng_state
from model.curves import plot_curves
from model.data import DataError
from model.mfu import device_name, mfu, peak_flops
from model.tasks import Task, pairs_task, pretrain_task, sft_task, tokenizer_dir
from model.transformer import ModelConfig, Transformer, preset, with_head
from pipelines.common.errors import UserError
from pipelines.lake import CHECKPOINTS, TRAIN_METRICS, Lake, atomic_write_bytes

Objective = Literal["pretrain", "sft", "reward", "dpo"]
# Fields that change what is logged or kept, never the numbers trained: a resume may change them.
BOOKKEEPING = {"eval_every", "eval_batches", "checkpoint_every", "keep_checkpoints", "export", "log_every"}


class TrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: Objective
    run: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    tokenizer: str
    data: str = Field(description="pretrain: NAME[:WEIGHT],… token datasets; otherwise a lake dataset or a JSONL/parquet file")
    eval_data: str | None = Field(
        None, description="pretrain: NAME,… tokenized datasets whose val split is the held-out evaluation; default the mixture's"
    )
    init: str | None = Field(None, description="the run whose newest weights this one starts from (and DPO's reference)")
    size: str = "tiny"
    seq_len: int = Field(256, ge=8)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    steps: int = Field(200, ge=1)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup: int = Field(20, ge=0)
    weight_decay: float = 0.1
    grad_clip: float = Field(1.0, gt=0)
    beta: float = Field(0.1, gt=0, description="DPO's β")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="held-out share of SFT rows and preference pairs (by id hash)")
    max_loss_ratio: float = Field(10.0, gt=1, description="a loss above this multiple of the first step's counts as exploding")
    eval_every: int = Field(50, ge=1)
    eval_batches: int = Field(8, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(1, ge=1)
    seed: int = 0
    compile: bool | None = Field(None, description="torch.compile; default: on CUDA only")
    device: str = "auto"
    export: bool = True


class TrainingError(UserError, RuntimeError):
    """A run that must stop; the message says at which step and what was kept."""


@dataclass
class TrainResult:
    run: str
    path: str
    objective: str
    steps: int
    resumed_from: int
    parameters: int
    final: dict[str, float]  # the last training step's metrics
    evaluation: dict[str, float]  # the held-out metrics at the end
    tokens_per_second: float
    mfu: float | None
    device: str
    set_aside: dict[str, int]
    export: str | None
    seconds: float


def run_dir(lake: Lake, run: str) -> Path:
    if not lake.is_local:
        raise DataError(f"training writes checkpoints to a local lake; {lake.root} is not local")
    return Path(lake.path(CHECKPOINTS, run))


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio` of the peak at the last step."""
    if step < config.warmup:
        return (step + 1) / (config.warmup + 1)
    progress = (step - config.warmup) / max(config.steps - config.warmup, 1)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW, decaying matrices only (not norms), fused on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")


# --- distributed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def join_world() -> World:
    """The process group `torchrun` describes in the environment, or a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return World(dist.get_rank(), size, int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(config: TrainConfig, world: World) -> torch.device:
    if config.device != "auto":
        return torch.device(config.device)
    if torch.cuda.is_available():
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


# --- the model a run starts from ----------------------------------------------------------------


def newest(lake: Lake, run: str) -> Checkpoint:
    found = checkpoints(run_dir(lake, run))
    if not found:
        raise DataError(f"run {run!r} has no checkpoint in {run_dir(lake, run)} to start from")
    return found[-1]


def run_model_config(lake: Lake, run: str) -> ModelConfig:
    record = json.loads((run_dir(lake, run) / "run.json").read_text())
    return ModelConfig(**record["model"])


def initial_model(lake: Lake, config: TrainConfig, vocab_size: int) -> Transformer:
    """A fresh model of `size`, or `init`'s weights (a reward model keeps only their body)."""
    head = "value" if config.objective == "reward" else "lm"
    if config.init is None:
        return Transformer(preset(config.size, vocab_size, max_seq_len=max(config.seq_len, 8), head=head))
    model_config = with_head(run_model_config(lake, config.init), head)
    if model_config.vocab_size != vocab_size:
        raise DataError(f"run {config.init!r} has a vocabulary of {model_config.vocab_size}, the tokenizer {vocab_size}")
    if model_config.max_seq_len < config.seq_len:
        raise DataError(f"run {config.init!r} takes sequences of up to {model_config.max_seq_len} tokens, not {config.seq_len}")
    torch.manual_seed(config.seed)  # the fresh value head
    model = Transformer(model_config)
    load_weights(newest(lake, config.init), model, new_head=head == "value")
    return model


def build_task(lake: Lake, config: TrainConfig, device: torch.device) -> Task:
    if config.objective == "pretrain":
        return pretrain_task(
            lake,
            config.tokenizer,
            config.data,
            config.seq_len,
            config.batch_size,
            config.eval_batches,
            config.seed,
            config.eval_data,
        )
    if config.objective == "sft":
        return sft_task(lake, config.tokenizer, config.data, config.seq_len, config.batch_size, config.val_fraction, config.seed)
    reference = None
    if config.objective == "dpo":
        if config.init is None:
            raise DataError("DPO needs --init: the SFT run that is both its starting point and its frozen reference")
        reference = initial_model(lake, config, vocab_size=run_model_config(lake, config.init).vocab_size).to(device).eval()
        reference.requires_grad_(False)
    return pairs_task(
        lake,
        config.tokenizer,
        config.data,
        config.seq_len,
        config.batch_size,
        config.val_fraction,
        config.seed,
        reference,
        config.beta,
    )


# --- the run folder -----------------------------------------------------------------------------


def changed_settings(path: Path, record: dict[str, Any]) -> list[str]:
    """What differs between the run folder's `run.json` and this run: settings that change the numbers, and the data."""
    previous = json.loads((path / "run.json").read_text())
    changed = sorted(
        key
        for key in set(previous["config"]) | set(record["config"])
        if key not in BOOKKEEPING and previous["config"].get(key) != record["config"].get(key)
    )
    if previous.get("data") != record["data"]:
        changed.append("data")
    return changed


def write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(Lake.at(path.parent).fs, str(path), json.dumps(value, indent=2, default=str).encode())


class MetricsLog:
    """`metrics.jsonl`, cut back to the resumed step so a resumed run's curve has no step twice."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        kept = []
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


# --- the loop -----------------------------------------------------------------------------------


def micro_batches(task: Task, step: int, config: TrainConfig, world: World, device: torch.device) -> Iterator[tuple[int, Any]]:
    for micro in range(config.grad_accum):
        index = (step * config.grad_accum + micro) * world.size + world.rank
        yield micro, tuple(t.to(device, non_blocking=True) for t in task.train_batch(index))


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    task: Task,
    step: int,
    config: TrainConfig,
    world: World,
    device: torch.device,
) -> tuple[dict[str, float], int]:
    """One optimizer step over `grad_accum` micro-batches; returns its metrics and the tokens it read."""
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    totals: dict[str, torch.Tensor] = {}
    tokens = 0
    for micro, batch in micro_batches(task, step, config, world, device):
        last = micro == config.grad_accum - 1
        sync = contextlib.nullcontext() if last or world.size == 1 else model.no_sync()
        with sync, autocast:
            loss, extra = task.step(model, batch)
        with sync:
            (loss / config.grad_accum).backward()
        for key, value in {"loss": loss, **extra}.items():
            totals[key] = totals.get(key, 0) + value.detach().float() / config.grad_accum
        tokens += batch[0].numel()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    stacked = torch.stack([totals[k] for k in sorted(totals)] + [norm.float()])
    if world.size > 1:
        dist.all_reduce(stacked, op=dist.ReduceOp.AVG)
    values = dict(zip([*sorted(totals), "grad_norm"], stacked.tolist()))
    if math.isfinite(values["loss"]) and math.isfinite(values["grad_norm"]):
        optimizer.step()
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return values, tokens * world.size


def train(
    config: TrainConfig,
    lake: Lake | None = None,
    force: bool = False,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    until: int | None = None,
    restart: bool = False,
) -> TrainResult:
    """Train (or resume) `config.run`. A run whose settings or data changed is refused, continued with
    `force`, or started over with `restart` (the default job's runs follow the lake that way). `until`
    stops after that step as a kill would (tests)."""
    lake = lake or Lake.at()
    world = join_world()
    device = pick_device(config, world)
    path = run_dir(lake, config.run)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    task = build_task(lake, config, device)
    model = initial_model(lake, config, task.vocab_size).to(device)
    record = {
        "config": config.model_dump(),
        "model": model.config.to_dict(),
        "data": task.data,
        "tokenizer": str(tokenizer_dir(lake, config.tokenizer)),
    }
    optimizer = make_optimizer(model, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    resume = checkpoints(path)
    start, first_loss = 0, math.inf
    changed = changed_settings(path, record) if resume and (path / "run.json").exists() else []
    if changed and restart and world.main:
        shutil.rmtree(path)
    if changed and restart:
        resume = []
    elif changed and not force:
        raise TrainingError(
            f"run {config.run!r} was started with other settings ({', '.join(changed)} changed): "
            f"give another run name, or --force to continue it with these"
        )
    if resume:
        load_weights(resume[-1], model)
        state = load_state(resume[-1])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start, first_loss = state["step"], state["first_loss"]
    finished = path / "result.json"
    if start >= config.steps and finished.exists() and (not config.export or (path / "hf").exists()):
        return TrainResult(**json.loads(finished.read_text()))  # done already: a rerun is a no-op
    if world.main:
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / "run.json", record)
        write_set_aside(path, task)
    log = MetricsLog(path / TRAIN_METRICS, start) if world.main else None
    net: torch.nn.Module = model
    if world.size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile if config.compile is not None else device.type == "cuda":
        net = torch.compile(net)

    flops = model.flops_per_token(config.seq_len)
    peak = peak_flops(device, "bf16" if device.type == "cuda" else "fp32")
    last_good = resume[-1].step if resume and start else None
    speed: list[float] = []
    final: dict[str, float] = {}
    evaluation: dict[str, float] = {}

    def emit(entry: dict[str, Any]) -> None:
        if log is not None:
            log.write(entry)
        if on_log is not None and world.main:
            on_log(entry)

    for step in range(start, config.steps):
        model.train()
        lr = scheduler.get_last_lr()[0]  # this step's
        tick = time.perf_counter()
        values, tokens = train_step(net, optimizer, scheduler, task, step, config, world, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - tick
        if step == 0:
            first_loss = values["loss"]
        if (
            not (math.isfinite(values["loss"]) and math.isfinite(values["grad_norm"]))
            or values["loss"] > config.max_loss_ratio * first_loss
        ):
            kept = (
                f"the last good checkpoint is {path / f'step_{last_good:06d}'}"
                if last_good is not None
                else "no checkpoint was written"
            )
            raise TrainingError(
                f"loss {'is not finite' if not math.isfinite(values['loss']) else 'exploded'} at step {step + 1} "
                f"({values['loss']:.4g}, gradient norm {values['grad_norm']:.4g}); stopped, {kept}. Lower --lr or raise --warmup"
            )
        if step > start:  # the first step of a process compiles and warms caches
            speed.append(tokens / seconds)
        final = {**values, "lr": lr}
        rate = tokens / seconds
        entry = {"step": step + 1, "kind": "train", **final, "tokens_per_s": rate, "mfu": mfu(rate, flops, peak)}
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            emit(entry)
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps:
            model.eval()
            evaluation = task.evaluate(model, task.eval_batches) if task.eval_batches else {}
            if evaluation:
                emit({"step": done, "kind": "eval", **evaluation})
        if done % config.checkpoint_every == 0 or done == config.steps:
            if world.main:
                state = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "step": done,
                    "first_loss": first_loss,
                }
                save_checkpoint(path, done, model, state, config.keep_checkpoints)
            last_good = done
        if until is not None and done >= until:
            raise TrainingError(f"stopped after step {done} (until={until})")
    if world.size > 1:
        dist.barrier()

    tokens_per_s = sorted(speed)[len(speed) // 2] if speed else 0.0
    export = None
    if config.export and world.main:
        from model.export import export_hf

        export = str(export_hf(model.cpu(), tokenizer_dir(lake, config.tokenizer), path / "hf"))
    result = TrainResult(
        run=config.run,
        path=str(path),
        objective=config.objective,
        steps=config.steps,
        resumed_from=start,
        parameters=model.num_params(),
        final=final,
        evaluation=evaluation,
        tokens_per_second=tokens_per_s,
        mfu=mfu(tokens_per_s, flops, peak),
        device=device_name(device),
        set_aside=count_reasons(task),
        export=export,
        seconds=time.perf_counter() - started,
    )
    if world.main:
        plot_curves(read_metrics(path / TRAIN_METRICS), f"{config.objective} · {config.run}", path / "loss.png")
        write_json(finished, asdict(result))
    return result


def count_reasons(task: Task) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in task.set_aside:
        counts[item.reason] = counts.get(item.reason, 0) + 1
    return counts


def write_set_aside(path: Path, task: Task) -> None:
    lines = "".join(json.dumps(asdict(item)) + "\n" for item in task.set_aside)
    atomic_write_bytes(Lake.at(path).fs, str(path / "set_aside.jsonl"), lines.encode())
