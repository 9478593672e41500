"""Validate a lake dataset with its GX suite; leave the results, Data Docs and a summary in the lake.

One GX ephemeral context per dataset, a pandas data source, one validation per shard and one across
shards, each stored under a run name that is the shard's file name so the Data Docs list them by
shard. Everything is written to a local folder first, then published to `quality/<dataset>/` part by
part, each part atomically and the summary (what the gates read) last. Not the folder whole: one
dataset's folder may hold another's (`tokens/<tok>/documents/clean/` inside `tokens/<tok>/documents/`),
which replacing it would wipe.

    summary.json       what the gates read (`pipelines.lake.quality_record`)
    results.parquet    one row per (shard, expectation): the catalog's `quality_results` view
    results/*.json     GX's validation results, as GX writes them
    docs/index.html    GX's Data Docs
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.common.errors import UserError
from pipelines.lake import (
    DOCUMENTS_CLEAN,
    DOCUMENTS_DEDUP,
    REJECTED,
    SYNTHETIC_BEST_OF_N,
    SYNTHETIC_MIX,
    SYNTHETIC_PREFERENCES,
    SYNTHETIC_REJECTED,
    SYNTHETIC_SELF_INSTRUCT,
    SYNTHETIC_WRAP,
    Lake,
    atomic_write_bytes,
    listed_shards,
    publish_folder,
    read_manifest,
    read_shard,
    utc_now,
)
from pipelines.lake.catalog import VIEWS
from pipelines.lake.quality_record import (
    QUALITY,
    RESULTS,
    RESULTS_SCHEMA,
    SUMMARY,
    FailedExpectation,
    QualitySummary,
    dataset_version,
)
from pipelines.lake.token_layout import TOKENS, tokens_manifests
from quality.config import ValidateConfig

log = logging.getLogger(__name__)

KIND_OF: dict[str, str] = {
    DOCUMENTS_CLEAN: "documents",
    DOCUMENTS_DEDUP: "documents",
    REJECTED: "rejected",
    SYNTHETIC_REJECTED: "rejected",
    SYNTHETIC_WRAP: "rephrased",
    SYNTHETIC_SELF_INSTRUCT: "instructions",
    SYNTHETIC_PREFERENCES: "preferences",
    SYNTHETIC_BEST_OF_N: "preferences",
    SYNTHETIC_MIX: "mix",
}
EXAMPLES = 5  # failing rows named per expectation
ACROSS = "(all shards)"
SHARD = "_shard"  # the column that says which shard a row came from


class QualityError(UserError):
    """A dataset that cannot be validated: unknown name, no manifest."""


def resolve(lake: Lake, name: str) -> str:
    """A dataset's folder from a catalog view name (`documents`, `wrap`, …), its folder, or `tokens/<tokenizer>/<dataset>`."""
    folder = VIEWS.get(name, name.strip("/"))
    if folder in KIND_OF or (folder.startswith(f"{TOKENS}/") and folder.count("/") >= 2):
        return folder
    names = ", ".join([*VIEWS, f"{TOKENS}/<tokenizer>/<dataset>"])
    raise QualityError(f"unknown dataset {name!r}: expected one of {names}")


def lake_datasets(lake: Lake) -> list[str]:
    """Every dataset of the lake that has a manifest, in the order the stages make them."""
    found = [d for d in KIND_OF if read_manifest(lake, d) is not None]
    prefix = lake.path("")
    return found + [posixpath.dirname(m).removeprefix(prefix).strip("/") for m in tokens_manifests(lake)]


def kind_of(dataset: str) -> str:
    return "tokens" if dataset.startswith(f"{TOKENS}/") else KIND_OF[dataset]


# --- building the suite for a dataset -----------------------------------------------------------


def _column_values(lake: Lake, dataset: str, column: str) -> set[str]:
    values: set[str] = set()
    for shard in listed_shards(lake, dataset):
        values.update(v for v in read_shard(lake.fs, shard, [column]).column(column).to_pylist() if v is not None)
    return values


def _generation_margin(lake: Lake, dataset: str) -> float:
    manifest = read_manifest(lake, dataset)
    margins = [r.parameters["margin"] for r in (manifest.runs if manifest else []) if "margin" in r.parameters]
    return float(min(margins)) if margins else 1.0


def build_suite(lake: Lake, dataset: str, config: ValidateConfig):  # noqa: ANN201 (quality.suites.Suite)
    from quality import suites

    kind = kind_of(dataset)
    if kind == "tokens":
        from quality.token_stats import expected_dtype, tokens_manifest, vocab_size

        manifest = tokens_manifest(lake, dataset)
        vocab = vocab_size(lake, manifest)
        source = read_manifest(lake, manifest["source_dataset"])
        return suites.tokens_suite(expected_dtype(vocab), vocab, source.rows if source else 0)
    rows = read_manifest(lake, dataset).rows
    if kind == "documents":
        return suites.documents_suite(dataset, rows, config)
    if kind == "rejected":
        return suites.rejected_suite(rows)
    if kind == "rephrased":
        return suites.rephrased_suite(rows, _column_values(lake, DOCUMENTS_DEDUP, "id"), config)
    if kind == "instructions":
        return suites.instructions_suite(rows, config)
    if kind == "preferences":
        margin = config.preference_margin if config.preference_margin is not None else _generation_margin(lake, dataset)
        return suites.preferences_suite(dataset == SYNTHETIC_BEST_OF_N, rows, margin)
    return suites.mix_suite(rows)


# --- running it ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One batch's results, flattened: what the summary, the results table and messages need."""

    shard: str
    rows: list[dict[str, Any]]
    raw: dict[str, Any]


class _Runner:
    """A GX ephemeral context with the two suites of one dataset and a Data Docs site in `docs_dir`."""

    def __init__(self, dataset: str, suite, extra: list, docs_dir: str) -> None:  # noqa: ANN001
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        for site in list(self.context.list_data_docs_sites()):  # the default site builds into a temp dir
            self.context.delete_data_docs_site(site)
        backend = {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir}
        self.context.add_data_docs_site("lake", {"class_name": "SiteBuilder", "store_backend": backend})
        label = dataset.replace("/", ".")  # GX's file stores take no "/" in a name
        asset = self.context.data_sources.add_pandas("lake").add_dataframe_asset(label)
        batch = asset.add_batch_definition_whole_dataframe("batch")
        self.dataset, self.key = dataset, suite.key
        self.definitions = {}
        for part, expectations in (("shard", [*suite.shard, *extra]), ("across", suite.across)):
            if expectations:
                gx_suite = self.context.suites.add(gx.ExpectationSuite(name=f"{label}.{part}", expectations=expectations))
                self.definitions[part] = self.context.validation_definitions.add(
                    gx.ValidationDefinition(name=f"{label}.{part}", data=batch, suite=gx_suite)
                )

    def run(self, part: str, shard: str, frame: pd.DataFrame) -> Outcome | None:
        from great_expectations.core.run_identifier import RunIdentifier

        definition = self.definitions.get(part)
        if definition is None:
            return None
        result_format: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES}
        keys = [c for c in (SHARD, self.key) if c in frame.columns]
        if keys:
            result_format["unexpected_index_column_names"] = keys
        run_id = RunIdentifier(run_name=shard, run_time=datetime.now(timezone.utc))
        frame = _shortened(frame)
        result = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format, run_id=run_id)
        return Outcome(shard, [_flatten(r, shard, self.key) for r in result.results], result.to_json_dict())

    def build_docs(self) -> None:
        self.context.build_data_docs(site_names=["lake"])


SHOWN_CHARS = 256


def _shortened(frame: pd.DataFrame) -> pd.DataFrame:
    """Long strings cut to their first SHOWN_CHARS characters before GX sees them.

    GX fingerprints every pandas batch by hashing all its values (1.6 s of a 10 s validation of
    9 500 documents, measured); every rule that needs a whole text (length, PII, n_chars, exact
    duplicates) is a derived column computed before this, and the rules GX applies to text itself
    (not null, not empty, no preamble at the start) see the same verdict in the first characters.
    """
    long = [c for c in frame.columns if frame[c].dtype == object and frame[c].map(lambda v: isinstance(v, str)).any()]
    return frame.assign(**{c: frame[c].str.slice(0, SHOWN_CHARS).where(frame[c].notna()) for c in long}) if long else frame


def _flatten(result: Any, shard: str, key: str) -> dict[str, Any]:
    config = result.expectation_config
    pair = ",".join(str(config.kwargs[k]) for k in ("column_A", "column_B") if k in config.kwargs)
    column = config.kwargs.get("column") or pair
    details = result.result or {}
    examples = [_row_name(row, key) for row in details.get("partial_unexpected_index_list") or []]
    if not examples:
        examples = [str(v) for v in details.get("partial_unexpected_list") or []]
    error = next((e.get("exception_message") for e in _exceptions(result.exception_info) if e.get("raised_exception")), None)
    if error:
        examples = [error]
    missing = ((details.get("details") or {}).get("mismatched") or {}).get("missing")
    if missing and not examples:
        examples = [f"missing columns: {', '.join(missing)}"]
    if not examples and "observed_value" in details and not result.success:
        examples = [f"observed {details['observed_value']}"]
    return {
        "shard": shard,
        "expectation": config.type,
        "column_name": column or None,
        "success": bool(result.success),
        "rows": details.get("element_count"),
        "unexpected": details.get("unexpected_count") or (0 if result.success else None),
        "examples": examples[:EXAMPLES],
    }


def _row_name(row: Any, key: str) -> str:
    """`shard.parquet:id` for a failing row (GX gives the index columns and the value as a dict)."""
    if not isinstance(row, dict):
        return str(row)
    return ":".join(str(row[c]) for c in (SHARD, key) if c in row) or str(row)


def _exceptions(info: dict) -> list[dict]:
    """GX reports an exception as one dict, or as one per metric that raised."""
    if not info:
        return []
    return [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]


def _safe(derive: Callable[[pd.DataFrame], pd.DataFrame], frame: pd.DataFrame) -> pd.DataFrame:
    """A derived column needs its inputs; a shard without them keeps its columns and fails the schema expectation."""
    try:
        return derive(frame)
    except (KeyError, AttributeError, TypeError) as e:
        log.warning("could not derive the checked columns: %s", e)
        return frame


def _unreadable(shard: str, error: Exception) -> dict[str, Any]:
    return {
        "shard": shard,
        "expectation": "shard_is_readable_parquet",
        "column_name": None,
        "success": False,
        "rows": None,
        "unexpected": None,
        "examples": [f"{type(error).__name__}: {error}"[:300]],
    }


def _shard_frames(lake: Lake, dataset: str, suite, config: ValidateConfig, outcomes: list, runner: _Runner, progress):  # noqa: ANN001
    """Validate every shard; return the narrow frame of every row for the across part, and the rows seen/validated.

    Shards are validated in batches of up to `sample_rows` rows (one GX validation costs ~0.2 s
    whatever its size, so a lake of many small shards would otherwise spend its time in GX's
    bookkeeping); each row carries its shard's name, so a failing row is named with its shard. A
    shard whose columns are not the contract's is validated alone, so the schema failure names it.
    """
    narrow, seen, validated = [], 0, 0
    pending: list[pd.DataFrame] = []

    def flush() -> None:
        if pending:
            names = [frame[SHARD].iat[0] for frame in pending]
            label = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]} ({len(names)} shards)"
            outcomes.append(runner.run("shard", label, _safe(suite.derive, pd.concat(pending, ignore_index=True))))
            pending.clear()

    for shard in listed_shards(lake, dataset):
        name = posixpath.basename(shard)
        try:
            frame = read_shard(lake.fs, shard).to_pandas()
        except (OSError, pa.ArrowException, ValueError) as e:
            outcomes.append(Outcome(name, [_unreadable(name, e)], {}))
            continue
        seen += len(frame)
        narrow.append(_safe(suite.shard_keys, frame).reindex(columns=suite.across_columns).assign(**{SHARD: name}))
        if len(frame) > config.sample_rows:
            frame = frame.sample(n=config.sample_rows, random_state=config.seed)
        validated += len(frame)
        frame = frame.assign(**{SHARD: name})
        if not set(suite.schema) <= set(frame.columns):
            flush()
            pending.append(frame)
            flush()
        else:
            pending.append(frame)
            if sum(map(len, pending)) >= config.sample_rows:
                flush()
        if progress is not None:
            progress(1)
    flush()
    columns = suite.across_columns
    return (pd.concat(narrow, ignore_index=True) if narrow else pd.DataFrame(columns=columns)), seen, validated


def validate(
    lake: Lake, dataset: str, config: ValidateConfig | None = None, progress: Callable[[int], None] | None = None
) -> QualitySummary:
    """Run the dataset's suite and publish `quality/<dataset>/`; the summary says whether the gate passed."""
    from quality.suites import extra_expectations

    config = config or ValidateConfig()
    kind = kind_of(dataset)
    if kind != "tokens" and read_manifest(lake, dataset) is None:
        raise QualityError(f"{dataset} has no manifest in {lake.root}: nothing to validate (has its stage run?)")
    version = dataset_version(lake, dataset)
    suite = build_suite(lake, dataset, config)
    started = utc_now()
    with tempfile.TemporaryDirectory(prefix="lmforge-quality-") as tmp:
        runner = _Runner(dataset, suite, extra_expectations(kind, config), os.path.join(tmp, "docs"))
        outcomes: list[Outcome] = []
        if kind == "tokens":
            from quality.token_stats import token_shards_frame, tokens_manifest

            across = token_shards_frame(lake, dataset, tokens_manifest(lake, dataset))
            seen = validated = len(across)
            shards = len(across)
        else:
            across, seen, validated = _shard_frames(lake, dataset, suite, config, outcomes, runner, progress)
            shards = len(listed_shards(lake, dataset))
        across_outcome = runner.run("across", ACROSS, _safe(suite.derive_across, across))
        if across_outcome is not None:
            outcomes.append(across_outcome)
        runner.build_docs()
        records = [row for o in outcomes for row in o.rows]
        summary = QualitySummary(
            dataset=dataset,
            kind=kind,
            version=version,
            validated_at=started,
            success=all(r["success"] for r in records),
            warn_only=config.warn_only,
            rows=seen,
            rows_validated=validated,
            shards=shards,
            expectations=len(records),
            failed=[
                FailedExpectation(
                    expectation=r["expectation"],
                    column=r["column_name"],
                    shard=_failing_shards(r),
                    unexpected=r["unexpected"] or 0,
                    examples=r["examples"],
                )
                for r in records
                if not r["success"]
            ],
        )
        _write_folder(tmp, dataset, summary, records, outcomes)
        _publish(lake, tmp, lake.path(QUALITY, dataset))
    return summary


def _publish(lake: Lake, tmp: str, dest: str) -> None:
    """The validation in `tmp` into `dest`, part by part (see the module docstring), the summary last."""
    for folder in ("docs", "results"):
        publish_folder(lake.fs, os.path.join(tmp, folder), posixpath.join(dest, folder))
    for name in (RESULTS, SUMMARY):
        with open(os.path.join(tmp, name), "rb") as f:
            atomic_write_bytes(lake.fs, posixpath.join(dest, name), f.read())


def _failing_shards(record: dict[str, Any]) -> str | None:
    """The shards a failure's example rows come from (`shard:id`), else the batch it was found in."""
    named = sorted({e.split(":", 1)[0] for e in record["examples"] if ".parquet:" in e})
    if named:
        return ", ".join(named)
    return None if record["shard"] == ACROSS else record["shard"]


def _write_folder(tmp: str, dataset: str, summary: QualitySummary, records: list[dict], outcomes: list[Outcome]) -> None:
    common = {"dataset": dataset, "kind": summary.kind, "validated_at": summary.validated_at, "warn_only": summary.warn_only}
    table = pa.Table.from_pylist([common | r for r in records], schema=RESULTS_SCHEMA)
    pq.write_table(table, os.path.join(tmp, RESULTS), compression="zstd")
    os.makedirs(os.path.join(tmp, "results"), exist_ok=True)
    for i, outcome in enumerate(o for o in outcomes if o.raw):
        name = "all-shards" if outcome.shard == ACROSS else f"batch-{i:04d}"
        with open(os.path.join(tmp, "results", f"{name}.json"), "w") as f:
            json.dump(outcome.raw, f, indent=1, default=str)
    with open(os.path.join(tmp, SUMMARY), "w") as f:
        f.write(summary.model_dump_json(indent=2))
