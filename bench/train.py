"""Benchmark: training throughput and MFU of our model vs Hugging Face `LlamaForCausalLM` (sdpa), same network.

    python bench/train.py                      # CPU: d=256, 4 layers, vocab 8192, T=256, batch 8, fp32, eager
    python bench/train.py --device cuda        # GPU: the `medium` preset (366 M), T=2048, batch 16, bf16, compiled
    python bench/train.py [--size tiny|small|medium] [--d-model D --layers L --heads H --kv-heads K --ffn F
                          --vocab V] [--batch B] [--seq T] [--steps 5] [--warmup 3] [--rounds 7]
                          [--compile/--no-compile] [--dtype fp32|bf16] [--json bench/results/train.json]

Both sides are built from one configuration (hidden size, layers, heads, kv heads, intermediate size,
vocab, tied or not, RoPE theta, norm eps) and HF gets our weights (fused `qkv` rows split q, k, v;
`gate_up` rows split gate, up), so both are provably the same network: the loss and gradient norm of
one batch are compared first, in fp32 without compilation. A training step is the same work on both
sides: logits, `F.cross_entropy` on the next-token targets (in fp32), backward, AdamW step (fused on
CUDA), `zero_grad`; under bf16 autocast when `--dtype bf16`; `torch.compile` on forward + loss when
compiled. `--warmup` untimed steps per side (compilation happens there); then `--rounds` rounds of
`--steps` steps per side, the sides alternating step by step, so each pair of steps sees the same
machine and drift cancels; each step is timed (CUDA events on a GPU); tokens/s comes from the median
step time, the ratio is the median over pairs of HF's step time over ours (medians: robust to a step
another process takes the CPU from). MFU uses `flops_per_token(T)` (6N + 12·L·d·T, the same for both: one architecture) over
`model.mfu.peak_flops`; a CPU's peak is an order of magnitude, so its MFU is indicative only. On CPU
the ratio is also given by process CPU time per step, which other processes on the cores do not
inflate. Targets: CPU ≥ 1.0x HF; GPU ≥ 50% MFU and ≥ 1.3x HF compiled (DESIGN §6, §8). Runs on a
machine with only torch and transformers installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # `python bench/train.py` puts bench/ on the path, not the repo root `model` lives in

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from bench._harness import cpu_seconds, paired_ratio  # noqa: E402
from model.hf_layout import hf_state_dict, llama_config  # noqa: E402
from model.mfu import device_name, mfu, peak_flops  # noqa: E402
from model.transformer import PRESETS, ModelConfig, Transformer  # noqa: E402

# CPU default: big enough that matmuls dominate as on a GPU, small enough for ~1-2 minutes on 2 cores.
CPU_DIMS = dict(d_model=256, n_layers=4, n_heads=4, n_kv_heads=2, ffn_hidden=704)
TARGETS = {"cpu": {"ratio": 1.0}, "cuda": {"ratio": 1.3, "mfu": 0.50}}

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def model_config(args: argparse.Namespace, on_gpu: bool) -> ModelConfig:
    """`--size` (default `medium` on a GPU, CPU_DIMS otherwise) with any explicit dimension on top."""
    size = args.size or ("medium" if on_gpu else None)
    dims = dict(PRESETS[size]) if size else dict(CPU_DIMS)
    explicit = dict(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, n_kv_heads=args.kv_heads, ffn_hidden=args.ffn)
    dims.update({k: v for k, v in explicit.items() if v is not None})
    if args.kv_heads is None and dims["n_heads"] % dims["n_kv_heads"]:  # --heads alone that the preset's kv heads don't divide
        dims["n_kv_heads"] = dims["n_heads"]
    dims["max_seq_len"] = args.seq
    if args.tie is not None:
        dims["tie_embeddings"] = args.tie
    return ModelConfig(vocab_size=args.vocab, **dims)


def hf_model(config: ModelConfig) -> nn.Module:
    """`LlamaForCausalLM` with sdpa attention and exactly our configuration (the export's `llama_config`)."""
    from transformers import LlamaForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    hf_config = llama_config(config)
    hf_config.use_cache = False
    hf_config._attn_implementation = "sdpa"
    return LlamaForCausalLM(hf_config)


def load_ours(hf: nn.Module, ours: Transformer) -> None:
    """Our weights into the HF model under its names (the export's `hf_state_dict`); a tied head comes with the embedding."""
    missing, unexpected = hf.load_state_dict(hf_state_dict(ours), strict=False)
    assert not unexpected and set(missing) <= ({"lm_head.weight"} if ours.config.tie_embeddings else set()), (missing, unexpected)


def forward_loss(model: nn.Module, hf: bool) -> Step:
    """Logits, then next-token cross-entropy in fp32: the same work on both sides."""

    def step(idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=idx, use_cache=False).logits if hf else model(idx)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    return step


def check_same_network(ours: Transformer, hf: nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> dict:
    """Loss and gradient norm of one batch on both sides (fp32, eager): equal up to rounding."""
    figures = {}
    for side, model in (("ours", ours), ("hf", hf)):
        loss = forward_loss(model, side == "hf")(idx, targets)
        loss.backward()
        grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
        figures[side] = (loss.item(), grad_norm.item())
        model.zero_grad(set_to_none=True)
    (loss_o, grad_o), (loss_h, grad_h) = figures["ours"], figures["hf"]
    return {
        "loss_ours": loss_o,
        "loss_hf": loss_h,
        "loss_diff": abs(loss_o - loss_h),
        "grad_norm_rel_diff": abs(grad_o - grad_h) / grad_h,
    }


def trainer(
    model: nn.Module, hf: bool, device: torch.device, dtype: str, compile: bool
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One training step of `model`: forward + loss (compiled if asked, autocast if bf16), backward, AdamW, zero_grad."""
    loss_fn = forward_loss(model, hf)
    if compile:
        loss_fn = torch.compile(loss_fn)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()

    def step(idx: torch.Tensor, targets: torch.Tensor) -> None:
        with autocast:
            loss = loss_fn(idx, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed_round(
    steps: dict[str, Callable[[torch.Tensor, torch.Tensor], None]],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    n: int,
    first: int,
    device: torch.device,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """`n` training steps per side, the sides alternating step by step (which goes first alternates too,
    from `first`), so each pair of steps sees the same machine. Returns each step's wall seconds and,
    on CPU, its process CPU seconds (not inflated when other processes take the cores), by side. On
    CUDA, events around each step and one synchronisation at the end, so timing does not stall the
    queue between steps."""
    sides = list(steps)
    wall: dict[str, list] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    if device.type == "cuda":
        torch.cuda.synchronize()
    for i in range(n):
        for side in sides if (first + i) % 2 == 0 else sides[::-1]:
            batch = batches[i % len(batches)]
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                steps[side](*batch)
                end.record()
                wall[side].append((start, end))
                continue
            started, cpu_started = time.perf_counter(), cpu_seconds()
            steps[side](*batch)
            wall[side].append(time.perf_counter() - started)
            cpu[side].append(cpu_seconds() - cpu_started)
    if device.type == "cuda":
        torch.cuda.synchronize()
        wall = {side: [start.elapsed_time(end) / 1000 for start, end in events] for side, events in wall.items()}
    return wall, cpu


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--size", choices=list(PRESETS), help="a model preset (default: medium on a GPU, d=256 x 4 layers on CPU)"
    )
    parser.add_argument("--d-model", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--heads", type=int)
    parser.add_argument("--kv-heads", type=int)
    parser.add_argument("--ffn", type=int, help="intermediate (SwiGLU hidden) size")
    parser.add_argument("--vocab", type=int, help="default 32768 on a GPU, 8192 on CPU")
    parser.add_argument(
        "--tie", action=argparse.BooleanOptionalAction, default=None, help="tie embeddings (default: the preset's)"
    )
    parser.add_argument("--batch", type=int, help="default 16 on a GPU, 8 on CPU")
    parser.add_argument("--seq", type=int, help="default 2048 on a GPU, 256 on CPU")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per side first (compilation happens here)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile both (default: on a GPU)"
    )
    parser.add_argument("--dtype", choices=("fp32", "bf16"), help="bf16 = autocast (default on a GPU), fp32 otherwise")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "results" / "train.json", help="figures go under the device type's key"
    )
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        sys.exit("--device cuda, but torch sees no CUDA device: run without --device for the CPU benchmark")
    args.vocab = args.vocab or (32768 if on_gpu else 8192)
    args.batch = args.batch or (16 if on_gpu else 8)
    args.seq = args.seq or (2048 if on_gpu else 256)
    args.compile = on_gpu if args.compile is None else args.compile
    args.dtype = args.dtype or ("bf16" if on_gpu else "fp32")
    return args


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    config = model_config(args, device.type == "cuda")
    torch.manual_seed(0)
    with device:
        ours = Transformer(config)
        hf = hf_model(config)
    load_ours(hf, ours)
    if config.tie_embeddings:
        assert hf.lm_head.weight is hf.model.embed_tokens.weight, "HF's lm_head should be tied to its embeddings"
    ours.train(), hf.train()

    tokens = torch.randint(config.vocab_size, (4, args.batch, args.seq + 1), device=device)
    batches = [(b[:, :-1].contiguous(), b[:, 1:].contiguous()) for b in tokens]
    check_idx, check_targets = batches[0][0][:2], batches[0][1][:2]
    check = check_same_network(ours, hf, check_idx, check_targets)  # before TF32: exact fp32

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    flops_per_token = ours.flops_per_token(args.seq)
    peak = peak_flops(device, args.dtype)
    name = device_name(device)
    print(
        f"{name}; {ours.num_params() / 1e6:.1f} M parameters, "
        f"d={config.d_model} L={config.n_layers} heads={config.n_heads}/{config.n_kv_heads} ffn={config.ffn_hidden} "
        f"vocab={config.vocab_size} tied={config.tie_embeddings}; batch {args.batch} x T={args.seq}, {args.dtype}, "
        f"{'compiled' if args.compile else 'eager'}; {flops_per_token / 1e6:.1f} MFLOPs/token"
    )
    print(
        f"same network: loss ours {check['loss_ours']:.6f}, HF {check['loss_hf']:.6f}, |diff| {check['loss_diff']:.2e}; "
        f"grad-norm relative diff {check['grad_norm_rel_diff']:.2e}"
    )

    steps = {
        "ours": trainer(ours, False, device, args.dtype, args.compile),
        "hf": trainer(hf, True, device, args.dtype, args.compile),
    }
    for side, step in steps.items():
        started = time.perf_counter()
        timed_round({side: step}, batches, args.warmup, 0, device)
        print(f"warm-up {side:>4}: {args.warmup} steps in {time.perf_counter() - started:.1f} s")

    # Per-step times and medians: robust to a step the host (or a neighbour's process) takes the CPU from.
    tokens_per_step = args.batch * args.seq
    seconds: dict[str, list[float]] = {"ours": [], "hf": []}
    cpu_times: dict[str, list[float]] = {"ours": [], "hf": []}
    for r in range(args.rounds):
        wall, cpu = timed_round(steps, batches, args.steps, r, device)
        for side in seconds:
            seconds[side] += wall[side]
            cpu_times[side] += cpu[side]
        ours_rate, hf_rate = (tokens_per_step / statistics.median(wall[side]) for side in ("ours", "hf"))
        print(f"round {r + 1}: ours {ours_rate:,.0f} tok/s, HF {hf_rate:,.0f} tok/s")

    rate = {side: tokens_per_step / statistics.median(times) for side, times in seconds.items()}
    utilisation = {side: mfu(rate[side], flops_per_token, peak) for side in rate}
    # over the pairs of steps, HF's time over ours = our tok/s over HF's
    ratio = paired_ratio(seconds["hf"], seconds["ours"])
    cpu_ratio = None if device.type == "cuda" else paired_ratio(cpu_times["hf"], cpu_times["ours"])
    marker = " (indicative: CPU peak is an estimate)" if device.type != "cuda" else ""
    print(f"\n{'side':<26}{'tok/s':>12}{'MFU':>10}")
    for side, label in (("hf", "HF LlamaForCausalLM sdpa"), ("ours", "lmforge Transformer")):
        u = utilisation[side]
        print(f"{label:<26}{rate[side]:>12,.0f}{f'{u:.1%}' if u is not None else 'n/a':>10}")
    target = TARGETS["cuda" if device.type == "cuda" else "cpu"]
    line = f"\nours / HF: {ratio:.2f}x (target >= {target['ratio']}x)"
    if "mfu" in target:
        line += (
            f"; our MFU {utilisation['ours']:.1%} (target >= {target['mfu']:.0%})"
            if utilisation["ours"]
            else "; MFU n/a (card not in model/mfu.py)"
        )
    if cpu_ratio is not None:
        line += f"; by CPU time {cpu_ratio:.2f}x"
    print(line + marker)

    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    results[device.type] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "device": name,
        "torch": torch.__version__,
        "config": config.to_dict(),
        "batch": args.batch,
        "seq": args.seq,
        "dtype": args.dtype,
        "compiled": args.compile,
        "steps_per_round": args.steps,
        "warmup": args.warmup,
        "flops_per_token": flops_per_token,
        "peak_flops": peak,
        "same_network": check,
        "seconds": seconds,
        "tok_per_s": rate,
        "mfu": utilisation,
        "mfu_indicative": device.type != "cuda",
        "ratio_ours_over_hf": ratio,
        "cpu_seconds": cpu_times if device.type != "cuda" else None,
        "ratio_ours_over_hf_by_cpu_time": cpu_ratio,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
