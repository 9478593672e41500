"""What people read after a run: per-step stats rows and summaries (Prefect artifacts, CLI tables)."""

from __future__ import annotations

from typing import Any

from pipelines.dedup.run import DedupResult
from pipelines.dedup.steps import REASONS
from pipelines.ingest.run import IngestResult


def _count(value: Any) -> int:
    return int(value["total"]) if isinstance(value, dict) else int(value)


def step_rows(step_stats: list[dict]) -> list[dict[str, Any]]:
    """One row per datatrove step: documents in/out, drops per reason, and time per document."""
    rows = []
    for step in step_stats:
        counters = step.get("stats", {})
        dropped = {k.removeprefix("dropped_"): _count(v) for k, v in counters.items() if k.startswith("dropped_")}
        timing = step.get("time_stats") or {}  # 0 for a step that never timed itself
        rows.append(
            {
                "step": step["name"],
                "in": _count(counters.get("total", counters.get("documents", 0))),
                "forwarded": _count(counters.get("forwarded", counters.get("documents", 0))),
                "dropped": _count(counters.get("dropped", 0)),
                "dropped by reason": ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1])),
                "ms/doc": round(1000 * float(timing.get("mean", 0.0)), 3),
                "total s": round(float(timing.get("total", 0.0)), 2),
            }
        )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_\n"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def ingest_markdown(result: IngestResult) -> str:
    langs = [{"language": k, "documents": v} for k, v in result.by_language.items()]
    reasons = [{"reason": k, "documents": v} for k, v in result.by_reason.items()]
    unusable = [{"input": path, "why": why} for path, why in result.unusable]
    return (
        f"# Ingest run `{result.run}`\n\n"
        f"Lake: `{result.lake}` · inputs: {result.inputs} · documents kept: **{result.documents}** · "
        f'set aside: **{result.rejected}** (query them: `lmforge query "SELECT * FROM rejected"`)\n\n'
        f"## Kept, by language\n\n{markdown_table(langs)}\n"
        f"## Set aside, by reason\n\n{markdown_table(reasons)}\n"
        f"## Unusable inputs\n\n{markdown_table(unusable)}\n"
        f"## Steps\n\n{markdown_table(step_rows(result.step_stats))}"
    )


def dedup_language_rows(result: DedupResult) -> list[dict[str, Any]]:
    """One row per language: documents in, kept, and removed per kind of duplicate."""
    return [
        {"language": lang, "in": counts.get("in", 0), "kept": counts.get("kept", 0)}
        | {why: counts.get(why, 0) for why in REASONS}
        for lang, counts in result.by_language.items()
    ]


def dedup_markdown(result: DedupResult) -> str:
    removed = [{"reason": why, "documents": n} for why, n in result.removed.items()]
    return (
        f"# Dedup run `{result.run}`\n\n"
        f"Lake: `{result.lake}` · documents in: {result.documents} · kept: **{result.kept}** · "
        f"duplicates removed: **{result.duplicates}** (MinHash threshold ≈ {result.threshold:.2f}; "
        f"see them: `lmforge query \"SELECT reason, url, duplicate_of FROM rejected WHERE stage = 'dedup'\"`)\n\n"
        f"## Removed, by reason\n\n{markdown_table(removed)}\n"
        f"## By language\n\n{markdown_table(dedup_language_rows(result))}\n"
        f"## Stages\n\n{markdown_table(step_rows(result.step_stats))}"
    )


def run_language_rows(dedup: DedupResult) -> list[dict[str, Any]]:
    """Per language: documents that passed the filters, duplicates removed, documents kept."""
    return [
        {"language": lang, "clean": counts.get("in", 0), "duplicates": counts.get("in", 0) - counts.get("kept", 0)}
        | {"kept": counts.get("kept", 0)}
        for lang, counts in dedup.by_language.items()
    ]


def run_markdown(ingest: IngestResult, dedup: DedupResult) -> str:
    """The end-to-end summary: documents in → set aside by the filters → duplicates removed → kept."""
    read = ingest.documents + ingest.rejected
    reasons = [{"stage": "ingest", "reason": k, "documents": v} for k, v in ingest.by_reason.items()]
    reasons += [{"stage": "dedup", "reason": k, "documents": v} for k, v in dedup.removed.items()]
    return (
        f"# lmforge run\n\n"
        f"Lake: `{dedup.lake}` · documents in: **{read}** · set aside by ingest: **{ingest.rejected}** · "
        f"duplicates removed: **{dedup.duplicates}** · kept: **{dedup.kept}** "
        f"(ingest run `{ingest.run}`, dedup run `{dedup.run}`)\n\n"
        f"## Removed, by reason\n\n{markdown_table(reasons)}\n"
        f"## By language\n\n{markdown_table(run_language_rows(dedup))}"
    )
