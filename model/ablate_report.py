"""The ablation report: validation curves per arm (mean and seed range), the final table, the
per-language held-out figures and how to reproduce it. Rendered from the results alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from model.ablate import AblationConfig, ArmResult, beyond_spread, mean
from model.report_page import Chart, Section, Table


def headline(results: list[ArmResult]) -> list[str]:
    base = results[0]
    lines = []
    for r in results[1:]:
        if r.diverged or base.diverged:
            lines.append(f"{r.arm.name} vs {base.arm.name}: not compared ({(r if r.diverged else base).arm.name} diverged).")
            continue
        delta = mean(r.finals()) - mean(base.finals())
        verdict = {True: "beyond the seed spread", False: "within the seed spread", None: "one seed: no spread to compare"}
        lines.append(
            f"{r.arm.name} vs {base.arm.name}: {delta:+.4f} bits per byte on held-out text "
            f"({'better' if delta < 0 else 'worse'}; {verdict[beyond_spread(r.finals(), base.finals())]})."
        )
    return lines


def curves_chart(results: list[ArmResult], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for i, r in enumerate(results):
        curves = [dict(s.curve) for s in r.seeds if s.curve]
        if not curves:
            continue
        xs = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[x] for x in xs] for c in curves])
        ax.plot(xs, values.mean(axis=0), "o-", ms=3, color=f"C{i}", label=f"{r.arm.name} ({len(curves)} seeds)")
        ax.fill_between(xs, values.min(axis=0), values.max(axis=0), color=f"C{i}", alpha=0.2)
        drawn = True
    ax.set(xlabel="training tokens", ylabel="validation bits per byte", title="validation curves: mean, band = seed range")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def language_table(results: list[ArmResult]) -> Table:
    langs = sorted({lang for r in results for s in r.seeds for lang in s.languages})
    rows = [[lang] + [mean([s.languages[lang] for s in r.seeds if lang in s.languages]) for r in results] for lang in langs]
    return Table(["language"] + [r.arm.name for r in results], rows, "held-out bits per byte per language (mean over seeds)")


def draw_report(
    config: AblationConfig, results: list[ArmResult], rows: list[dict[str, Any]], record: dict[str, Any], folder: Path
) -> list[Section]:
    budget = config.steps() * config.seq_len * config.batch_size
    sources = record["sources"]
    aligned = f", plus {sources['parallel']['lines']} aligned lines per language" if "parallel" in sources else ""
    summary = Section(
        "Summary",
        [
            f"Model `{config.preset}`, {config.seeds} seeds per arm, {budget:,} training tokens per run "
            f"({config.steps()} steps of {config.batch_size}×{config.seq_len}); every arm evaluated on the same held-out text "
            f"({sources.get('heldout', {}).get('documents', 0)} documents of `{config.evaluation.heldout}`{aligned}). "
            "A difference is *beyond the seed spread* when the two arms' seed ranges do not overlap.",
            *headline(results),
        ],
        [Table(list(rows[0]), [list(r.values()) for r in rows])],
    )
    out = [summary]
    if curves_chart(results, folder / "curves.png"):
        out.append(Section("Validation curves", [], [Chart("curves.png", "validation bits per byte per arm")]))
    out.append(Section("Per language", [], [language_table(results)]))
    notes = [f"{r.arm.name}, seed {s.seed}: diverged: {s.diverged}" for r in results for s in r.seeds if s.diverged]
    notes += [f"{r.arm.name} reads " + ", ".join(f"{n} {e:.2f} epochs" for n, e in r.epochs.items()) for r in results]
    out.append(Section("Notes", notes))
    reproduce = [f"`{record['command']}`"] if record.get("command") else []
    reproduce.append("Each run is an ordinary `lmforge train pretrain` run with these settings (report.json holds them all):")
    first = next(iter(record["runs"].values()))
    reproduce.append("`" + json.dumps(first) + "`")
    out.append(Section("Reproduce", reproduce))
    return out
