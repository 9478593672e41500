"""What people read after a run: per-step stats rows and summaries (Prefect artifacts, CLI tables)."""

from __future__ import annotations

from typing import Any

from pipelines.ingest import IngestResult


def _count(value: Any) -> int:
    return int(value["total"]) if isinstance(value, dict) else int(value)


def step_rows(step_stats: list[dict]) -> list[dict[str, Any]]:
    """One row per datatrove step: documents in/out, drops per reason, and time per document."""
    rows = []
    for step in step_stats:
        counters = step.get("stats", {})
        dropped = {k.removeprefix("dropped_"): _count(v) for k, v in counters.items() if k.startswith("dropped_")}
        timing = step.get("time_stats", {})
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
        f"set aside: **{result.rejected}** (query them: `lmforge query \"SELECT * FROM rejected\"`)\n\n"
        f"## Kept, by language\n\n{markdown_table(langs)}\n"
        f"## Set aside, by reason\n\n{markdown_table(reasons)}\n"
        f"## Unusable inputs\n\n{markdown_table(unusable)}\n"
        f"## Steps\n\n{markdown_table(step_rows(result.step_stats))}"
    )
