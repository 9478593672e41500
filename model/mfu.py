"""Model FLOPs utilisation: achieved training FLOPs over the device's peak dense throughput.

FLOPs per token come from the model (`Transformer.flops_per_token`: 6N + 12·L·d·T); peaks are the
vendors' dense (no sparsity) figures for the dtype a run computes in.
"""

from __future__ import annotations

import torch

# Dense peak FLOP/s by device name fragment and compute dtype (NVIDIA data sheets, SXM parts).
GPU_PEAKS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp32": 91.6e12},
    "A10": {"bf16": 125e12, "fp32": 31.2e12},
    "RTX 4090": {"bf16": 165e12, "fp32": 82.6e12},
    "T4": {"bf16": 65e12, "fp32": 8.1e12},
}
# A CPU has no data sheet figure we can look up; this is per core (AVX2 FMA, 2 units × 8 fp32 lanes
# × 2 FLOPs × ~3 GHz), an order of magnitude, so a CPU MFU is indicative only.
CPU_PEAK_PER_CORE = 96e9


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def peak_flops(device: torch.device, dtype: str) -> float | None:
    """The device's peak FLOP/s for `dtype` ("bf16" or "fp32"); None for a GPU not in the table."""
    if device.type != "cuda":
        return CPU_PEAK_PER_CORE * torch.get_num_threads()
    name = torch.cuda.get_device_name(device)
    for fragment, peaks in GPU_PEAKS.items():
        if fragment in name:
            return peaks.get(dtype)
    return None


def mfu(tokens_per_second: float, flops_per_token: int, peak: float | None) -> float | None:
    return tokens_per_second * flops_per_token / peak if peak else None
