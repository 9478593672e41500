"""`lmforge train pretrain|sft|reward|dpo`: the bundled trainer on the lake's data.

The four commands take the same options (one signature, built once); they differ in the objective
and in what `--data` means by default. Under `torchrun` the loop runs directly on every rank (DDP);
otherwise through the `train` flow, with its progress bar and artifacts. The run's name is an argument,
not `--run`: torchrun's parser takes `--run` for its own `--run-path` even after the script.
"""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from flows.console import LakeOption, VerboseOption, out, print_logs, rich_table, running, settings, user_errors

train_app = typer.Typer(help="Train the bundled Llama-style model: pretrain, SFT, reward model, DPO.", no_args_is_help=True)

OBJECTIVES = {
    "pretrain": ("Pretrain on tokenized lake datasets (`lmforge tokenize`) mixed by weight.", "documents"),
    "sft": ("Supervised fine-tuning on chat `messages` (loss on assistant tokens only).", "synthetic/self_instruct"),
    "reward": ("A reward model on preference pairs (Bradley–Terry loss).", "synthetic/preferences"),
    "dpo": ("DPO on preference pairs against the frozen --init model.", "synthetic/preferences"),
}


def held_out(result: object) -> str:
    return " · ".join(f"{k} {v:.3f}" for k, v in result.evaluation.items())


def print_sample_training(sample: object) -> None:
    """`lmforge run`'s training stage: the tokens, then one line per model."""
    from flows.tokenize_cli import print_tokens

    print_tokens(sample.tokens)
    rows = [(r.run, r.objective, r.steps, held_out(r), f"{r.tokens_per_second:,.0f}") for r in sample.runs]
    columns = ["run", "objective", "steps", "held out", "tok/s"]
    out.print(rich_table(f"models (pretraining mix {sample.mixture})", columns, rows))
    exports = [r.export for r in sample.runs if r.export]
    if exports:
        out.print(f"Hugging Face exports: {', '.join(exports)}", highlight=False, soft_wrap=True)
    if not sample.pairs.startswith("synthetic/"):
        out.print(f"the reward model's pairs: mismatched answers from the SFT data ({sample.pairs}); too few judged pairs")


def print_trained(result: object) -> None:
    from flows.train import metric_rows

    rows = [(r["metric"], r["value"]) for r in metric_rows(result)]
    out.print(
        rich_table(
            f"{result.objective} {result.run}: {result.steps} steps, {result.parameters:,} parameters", ["", "value"], rows
        )
    )
    if result.set_aside:
        out.print(
            f"set aside: {', '.join(f'{n} {reason}' for reason, n in result.set_aside.items())} ({result.path}/set_aside.jsonl)"
        )
    out.print(
        f"checkpoints: {result.path}" + (f"\nHugging Face export: {result.export}" if result.export else ""), highlight=False
    )


# The options that are TrainConfig fields under the same name.
TRAINING_OPTIONS = {
    "run", "tokenizer", "data", "eval_data", "init", "size", "steps", "seq_len", "batch_size", "grad_accum", "lr", "warmup",
    "beta", "val_fraction", "eval_every", "checkpoint_every", "seed", "device", "export",
}  # fmt: skip


def command(objective: str) -> object:
    default_data = OBJECTIVES[objective][1]

    def run(
        run: Annotated[str, typer.Argument(help="run name: its folder under lake/checkpoints/ (resumed if there)")],
        tokenizer: Annotated[str, typer.Option("--tokenizer", help="a tokenizer in the lake (lake/tokenizers/NAME)")],
        data: Annotated[
            str,
            typer.Option(
                "--data",
                help="pretrain: NAME[:WEIGHT],… tokenized datasets; else lake datasets, JSONL/parquet files, seed-tasks: a,b,…",
            ),
        ] = default_data,
        eval_data: Annotated[
            Optional[str],
            typer.Option("--eval-data", help="pretrain: tokenized datasets whose val split is evaluated (default: --data's)"),
        ] = None,
        init: Annotated[Optional[str], typer.Option("--init", help="start from this run's newest weights")] = None,
        size: Annotated[str, typer.Option("--size", help="model preset when not --init: tiny | small | medium")] = "tiny",
        steps: Annotated[int, typer.Option("--steps")] = 200,
        seq_len: Annotated[int, typer.Option("--seq-len")] = 256,
        batch_size: Annotated[int, typer.Option("--batch-size", help="sequences (pairs) per micro-batch per process")] = 8,
        grad_accum: Annotated[int, typer.Option("--grad-accum")] = 1,
        lr: Annotated[float, typer.Option("--lr", help="peak learning rate")] = 3e-3,
        warmup: Annotated[int, typer.Option("--warmup")] = 20,
        beta: Annotated[float, typer.Option("--beta", help="DPO's β")] = 0.1,
        val_fraction: Annotated[float, typer.Option("--val-fraction", help="held-out share of rows or pairs")] = 0.1,
        eval_every: Annotated[int, typer.Option("--eval-every")] = 50,
        checkpoint_every: Annotated[int, typer.Option("--checkpoint-every")] = 50,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        compile_: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="default: on CUDA only")] = None,
        device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")] = "auto",
        export: Annotated[bool, typer.Option("--export/--no-export", help="write the Hugging Face folder at the end")] = True,
        force: Annotated[bool, typer.Option("--force", help="continue a run whose settings changed")] = False,
        lake: LakeOption = None,
        verbose: VerboseOption = False,
    ) -> None:
        values = {k: v for k, v in locals().items() if k in TRAINING_OPTIONS}
        from model.train import TrainConfig, train
        from pipelines.lake import Lake

        config = settings(TrainConfig, objective=objective, compile=compile_, **values)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun: every rank runs the loop, rank 0 reports
            with user_errors():
                result = train(config, Lake.at(lake), force=force)
            if int(os.environ.get("RANK", "0")) == 0:
                print_trained(result)
            return
        from flows.train import train_flow

        with user_errors(), running(lake, "train", verbose) as logs:
            result = train_flow([config], lake, force)[0]
        print_trained(result)
        print_logs(logs)

    run.__doc__ = OBJECTIVES[objective][0]
    return run


for name in OBJECTIVES:
    train_app.command(name)(command(name))
