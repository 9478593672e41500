"""The pretraining mix for the trainer: real documents and their WRAP rephrasings at a ratio of
characters (1:1 by default, as in the paper) → `synthetic/mix/`, the catalog's `pretrain_mix`.

Real text is taken from the languages the rephrasings are in (a mix of English rephrasings with
every language's documents would not be the ratio asked for); `select_mix` picks which rows.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel

from pipelines.common.errors import UserError
from pipelines.lake import (
    DOCUMENTS_DEDUP,
    MIX_SCHEMA,
    SYNTHETIC_MIX,
    SYNTHETIC_WRAP,
    Lake,
    listed_runs,
    listed_shards,
    read_shard,
)
from pipelines.synthetic.generation import GenerationResult, GenerationRun
from pipelines.synthetic.mix import select_mix


class MixConfig(BaseModel):
    ratio: tuple[int, int] = (1, 1)
    seed: int = 0
    real: str = DOCUMENTS_DEDUP
    synthetic: str = SYNTHETIC_WRAP


def _rows(lake: Lake, dataset: str, columns: list[str]) -> list[dict]:
    return [row for shard in listed_shards(lake, dataset) for row in read_shard(lake.fs, shard, columns).to_pylist()]


def run_mix(lake: Lake, config: MixConfig) -> GenerationResult:
    inputs = sorted(listed_runs(lake, config.real)) + sorted(listed_runs(lake, config.synthetic))
    run = GenerationRun(lake, "mix", SYNTHETIC_MIX, config.model_dump(), inputs)
    if run.done():
        return run.finished_result()
    synthetic = _rows(lake, config.synthetic, ["id", "text", "source_id", "style", "lang", "n_chars"])
    if not synthetic:
        raise UserError(f"{config.synthetic} is empty: run `lmforge synth wrap` first")
    langs = {r["lang"] for r in synthetic}
    real = [r for r in _rows(lake, config.real, ["id", "text", "lang", "n_chars"]) if r["lang"] in langs]
    if not real:
        raise UserError(f"{config.real} has no documents in {', '.join(sorted(map(str, langs)))}")
    real_ids, synthetic_ids = select_mix(
        [(r["id"], r["n_chars"]) for r in real], [(r["id"], r["n_chars"]) for r in synthetic], config.ratio, config.seed
    )
    chosen_real, chosen_synthetic = set(real_ids), set(synthetic_ids)
    rows = [
        {
            "id": r["id"],
            "text": r["text"],
            "origin": "real",
            "source_id": r["id"],
            "style": None,
            "lang": r["lang"],
            "n_chars": r["n_chars"],
        }
        for r in real
        if r["id"] in chosen_real
    ] + [{**r, "origin": "synthetic"} for r in synthetic if r["id"] in chosen_synthetic]
    rows.sort(key=lambda r: r["id"])
    run.publish({"": pa.Table.from_pylist(rows, schema=MIX_SCHEMA)}, [])
    result = run.result(len(rows), [], "")
    result.extra = {
        "real_chars": sum(r["n_chars"] for r in rows if r["origin"] == "real"),
        "synthetic_chars": sum(r["n_chars"] for r in rows if r["origin"] == "synthetic"),
    }
    return result
