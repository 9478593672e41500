"""The loss curve of a run as a PNG: training loss per step, held-out loss (and bits per byte, or
pair accuracy) at each evaluation. Read from `metrics.jsonl`, so a resumed run draws one curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curves(metrics: list[dict[str, Any]], title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [m for m in metrics if m["kind"] == "train"]
    held = [m for m in metrics if m["kind"] == "eval"]
    second = "bpb" if any("bpb" in m for m in held) else "accuracy" if any("accuracy" in m for m in held) else None
    fig, axes = plt.subplots(1, 2 if second else 1, figsize=(10 if second else 6, 3.6), squeeze=False)
    ax = axes[0][0]
    ax.plot([m["step"] for m in train], [m["loss"] for m in train], lw=1, label="train")
    ax.plot([m["step"] for m in held], [m["loss"] for m in held], "o-", ms=3, label="held out")
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.legend()
    if second:
        bx = axes[0][1]
        bx.plot([m["step"] for m in held], [m[second] for m in held], "o-", ms=3, color="C2")
        bx.set(xlabel="step", ylabel={"bpb": "held-out bits per byte", "accuracy": "held-out pair accuracy"}[second])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
