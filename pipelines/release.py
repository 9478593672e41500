"""Release: lake datasets → a Hub-ready folder (a dataset card and parquet under `data/`), uploaded with
`huggingface_hub` (DESIGN §4 "Release").

A release names datasets by their catalog names (`documents`, `wrap`, …) and refuses, before anything
is written or sent, a dataset that is missing or empty, that has no current validation or failed one
(`pipelines.lake.quality_record`), or, when its rows carry documents' text, whose documents were not
PII-redacted by ingest. The folder holds one config per dataset and one per language:

    README.md                                  the card (`release_card.py`)
    data/<dataset>/<lang>/train-00000-of-00001.parquet    datasets with a `lang` column
    data/<dataset>/train-00000-of-00001.parquet           the others

It is built from the shards the manifests list, in a temporary folder beside the destination that
then takes its place whole, so a rebuild replaces it atomically and an unchanged lake rebuilds the
same bytes. Uploading is one `upload_folder` into a dataset repo, then the tag, only once the commit
is there. The token comes from `huggingface_hub` (HF_TOKEN or the login cache), is never a parameter
of a flow or task, and is scrubbed from every error this module raises.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.common.errors import UserError
from pipelines.lake import (
    DOCUMENTS_CLEAN,
    SCHEMAS,
    Lake,
    Manifest,
    listed_shards,
    lmforge_version,
    read_manifest,
    shard_batches,
    shard_run,
)
from pipelines.lake.catalog import VIEWS
from pipelines.lake.quality_record import (
    FailedExpectation,
    QualitySummary,
    current_quality_summary,
    read_quality_summary,
)

RELEASES = "releases"  # `<lake>/releases/<repo name>/`: the default folder of a release
SPLIT = "train"

# The command that makes each releasable dataset (for the error that says it is missing).
MADE_BY: dict[str, str] = {
    "documents": "lmforge dedup",
    "documents_clean": "lmforge ingest",
    "wrap": "lmforge synth wrap",
    "self_instruct": "lmforge synth self-instruct",
    "preferences": "lmforge synth preferences",
    "best_of_n": "lmforge synth best-of-n",
    "pretrain_mix": "lmforge synth mix",
}
RELEASABLE = tuple(MADE_BY)

# Columns that mean nothing off the machine that built the lake, so they are not released:
# `source` is the path of the input file there; in documents_clean `minhash_cluster_size` is always
# null (dedup sets it). Everything else, `run` fingerprints included (the card lists those runs), stays.
DROPPED: dict[str, tuple[str, ...]] = {
    "documents": ("source",),
    "documents_clean": ("source", "minhash_cluster_size"),
}

# Datasets whose rows carry documents' text (WRAP keeps the rephrased chunk, the mix real documents):
# they are released only if ingest redacted PII in those documents.
DOCUMENT_TEXT = ("documents", "documents_clean", "wrap", "pretrain_mix")
# where a generator's run parameters name the documents it read (its manifest records no inputs)
UPSTREAM_PARAMETER = {"synthetic/wrap": "dataset", "synthetic/mix": "real"}

# Sizes follow `datasets.push_to_hub` (datasets.config.MAX_SHARD_SIZE, MAX_ROW_GROUP_SIZE), which the
# Hub's dataset viewer is built around: shards of at most 500 MB and row groups of at most ~100 MB of
# uncompressed Arrow data. The viewer reads whole row groups and refuses ones over ~286 MiB
# ("TooBigContentError"), so for long texts rows per group fall as rows grow; the page index lets it
# read a page of rows without the whole group. Measuring uncompressed bytes keeps the files (zstd)
# under the same limits.
MAX_SHARD_BYTES = 500 * 1000**2
ROW_GROUP_BYTES = 100 * 1000**2
HELD_BYTES = 256 * 1000**2  # rows held in memory across all languages' pending row groups, at most
READ_BATCH_ROWS = 1024
# Content-defined pages (as `datasets` writes them): an unchanged stretch of rows makes the same bytes
# in the next release, so the Hub's Xet storage uploads only what changed.
CDC = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}
UNKNOWN_LANG = "und"  # rows without a language, in a folder (and config) of their own


class ReleaseError(UserError):
    """A release that must not happen (or could not): the message says why and what to do."""


@dataclass(frozen=True)
class CheckedDataset:
    """A dataset that may be released: it has rows, a current passing (or warn-only) validation, and,
    where it carries documents' text, PII redaction on record."""

    name: str  # catalog name
    folder: str  # lake dataset
    manifest: Manifest
    summary: QualitySummary

    @property
    def version(self) -> str:
        """The fingerprint of the dataset's runs (`dataset_version`), which its validation names."""
        return self.summary.version


@dataclass
class ReleasedConfig:
    """One config of the release: a dataset, or one language of it."""

    name: str
    dataset: str  # catalog name
    lang: str | None  # FLORES-style code; None for the whole dataset
    data_files: str  # glob, relative to the folder
    rows: int
    files: list[str]  # relative to the folder
    bytes: int


@dataclass
class UploadResult:
    url: str  # the commit's page
    commit: str
    tag: str | None
    endpoint: str


@dataclass
class BuiltRelease:
    folder: str
    card: str
    configs: list[ReleasedConfig]
    datasets: list[tuple[str, str, str]]  # (catalog name, lake dataset, fingerprint)
    uploaded: UploadResult | None = field(default=None)

    def commit_message(self) -> str:
        """Names the lmforge version and each dataset's fingerprint, so a Hub commit says what it holds."""
        names = ", ".join(f"{name}@{version}" for name, _, version in self.datasets)
        return f"lmforge {lmforge_version()} release: {names}"


# --- checks ----------------------------------------------------------------------------------------


def dataset_names(names: list[str]) -> list[str]:
    """The catalog names asked for, in order, once each; an unknown one is refused."""
    unknown = [n for n in names if n not in RELEASABLE]
    if unknown:
        raise ReleaseError(f"cannot release {', '.join(map(repr, unknown))}: release one of {', '.join(RELEASABLE)}")
    if not names:
        raise ReleaseError(f"name the datasets to release: {', '.join(RELEASABLE)}")
    return list(dict.fromkeys(names))


def check_repo(repo: str) -> None:
    """`repo` is a valid dataset repo id of the form OWNER/NAME."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
        valid = repo.count("/") == 1
    except HFValidationError:
        valid = False
    if not valid:
        raise ReleaseError(
            f"invalid --repo {repo!r}: use OWNER/NAME (letters, digits, '-', '_' and '.', no '--' or '..', at most 96 characters)"
        )


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def check_hub_access() -> None:
    """An upload can be attempted: the Hub client is not in offline mode and a token is there."""
    from huggingface_hub import constants

    # huggingface_hub reads HF_HUB_OFFLINE (and HF_ENDPOINT) when it is imported: what it will do is its constant
    if constants.HF_HUB_OFFLINE:
        raise ReleaseError(
            f"HF_HUB_OFFLINE=1 is set, so nothing can be uploaded to {hub_endpoint()}: "
            "unset it to upload, or use --dry-run to build the folder only"
        )
    if not _token():
        raise ReleaseError(
            "no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access), "
            "or use --dry-run to build the folder without uploading"
        )


def check_datasets(lake: Lake, names: list[str]) -> list[CheckedDataset]:
    """Each dataset exists with rows, is validated as it is now without a failed gate, and, if it carries
    documents' text, ingest redacted PII in those documents. Raises `ReleaseError` on the first that is not."""
    checked = []
    for name in dataset_names(names):
        folder = VIEWS[name]
        manifest = read_manifest(lake, folder)
        if manifest is None or manifest.rows == 0 or not listed_shards(lake, folder):
            state = "missing" if manifest is None else "empty"
            raise ReleaseError(f"{name} ({folder}) is {state} in {lake.root}: run `{MADE_BY[name]}` first")
        summary = _current_validation(lake, name, folder)
        if name in DOCUMENT_TEXT and (problem := unredacted(lake, folder)):
            raise ReleaseError(
                f"{name}: PII redaction did not run ({problem}): ingest again with PII redaction on "
                "(`lmforge ingest`, the default), then rebuild and validate the datasets made from it"
            )
        checked.append(CheckedDataset(name, folder, manifest, summary))
    return checked


def check_release(lake: Lake, names: list[str], repo: str, dry_run: bool) -> list[CheckedDataset]:
    """Every refusal, before anything is built or sent."""
    check_repo(repo)
    if not dry_run:
        check_hub_access()
    return check_datasets(lake, names)


def _current_validation(lake: Lake, name: str, folder: str) -> QualitySummary:
    summary = current_quality_summary(lake, folder)
    if summary is None:
        old = read_quality_summary(lake, folder)
        why = "was never validated" if old is None else f"changed since its validation of {old.validated_at}"
        raise ReleaseError(f"{name} has no current validation ({folder} {why}): run `lmforge validate {name}` first")
    if summary.blocks:
        failed = "; ".join(describe_failure(f) for f in summary.failed[:5]) or "no failed expectation recorded"
        if len(summary.failed) > 5:
            failed += f"; and {len(summary.failed) - 5} more"
        raise ReleaseError(
            f"{name} failed validation of {summary.validated_at} ({failed}): fix the data, then run `lmforge validate {name}`"
        )
    return summary


def describe_failure(failure: FailedExpectation) -> str:
    where = f" on {failure.column}" if failure.column else ""
    rows = f"{failure.unexpected} rows" if failure.unexpected else ""
    shard = f"in {failure.shard}" if failure.shard else ""
    detail = ", ".join(x for x in (rows, shard) if x)
    return f"{failure.expectation}{where}" + (f" ({detail})" if detail else "")


def unredacted(lake: Lake, folder: str) -> str | None:
    """Why the documents behind `folder` cannot be shown to have been PII-redacted, or None if they were.

    Ingest records `redact_pii` in its run parameters. Dedup's runs name their input shards, whose
    names name the ingest runs that wrote them (`shard_run`); a generator's run names the dataset it
    read in its parameters (`UPSTREAM_PARAMETER`), whose runs are then checked as they are now (its
    manifest keeps no finer record). A run with none of these records is "did not run".
    """
    manifest = read_manifest(lake, folder)
    if manifest is None or not manifest.runs:
        return f"{folder} lists no runs"
    clean = {r.run: r for r in (read_manifest(lake, DOCUMENTS_CLEAN) or Manifest(dataset=DOCUMENTS_CLEAN)).runs}
    for run in manifest.runs:
        parameters = run.parameters
        if "redact_pii" in parameters:
            if parameters["redact_pii"] is not True:
                return f"{run.stage} run {run.run} ran with redact_pii={parameters['redact_pii']}"
            continue
        sources = sorted({s for s in (shard_run(i.path) for i in run.inputs) if s})
        if sources:
            for source in sources:
                if source not in clean:
                    return f"{run.stage} run {run.run} read run {source}, which {DOCUMENTS_CLEAN} no longer lists"
                if clean[source].parameters.get("redact_pii") is not True:
                    return f"ingest run {source} has no PII redaction on record"
            continue
        upstream = parameters.get(UPSTREAM_PARAMETER.get(run.stage, ""))
        if isinstance(upstream, str) and upstream in SCHEMAS and upstream != folder:
            if problem := unredacted(lake, upstream):
                return problem
            continue
        return f"{run.stage} run {run.run} has no PII redaction on record"
    return None


# --- building the folder ---------------------------------------------------------------------------


def default_out(lake: Lake, repo: str) -> Path:
    """`<lake>/releases/<repo name>/`; for a lake that is not on local disk, the same under the user's cache
    (the folder is uploaded from local disk)."""
    name = repo.split("/")[-1]
    if lake.is_local:
        return Path(lake.path(RELEASES, name))
    return Path.home() / ".cache" / "lmforge" / RELEASES / name


def release_schema(name: str) -> pa.Schema:
    """The dataset's lake schema without the columns `DROPPED` names."""
    schema = SCHEMAS[VIEWS[name]]
    dropped = DROPPED.get(name, ())
    return pa.schema([f for f in schema if f.name not in dropped])


def build_release(
    lake: Lake, checked: list[CheckedDataset], repo: str, out: str | os.PathLike[str] | None = None, license: str = "other"
) -> BuiltRelease:
    """Write the folder (card + parquet) for `checked` datasets; it replaces `out` whole once complete."""
    from pipelines.release_card import render_card

    dest = Path(out) if out is not None else default_out(lake, repo)
    dest = dest.expanduser().absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        configs = [config for c in checked for config in write_dataset(lake, c, staged)]
        card = render_card(lake, checked, configs, repo, license)
        (staged / "README.md").write_text(card, encoding="utf-8")
        _swap_into_place(staged, dest)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return BuiltRelease(str(dest), card, configs, [(c.name, c.folder, c.version) for c in checked])


def _swap_into_place(staged: Path, dest: Path) -> None:
    """`staged` becomes `dest`; an old `dest` is moved aside first and removed only once the new one is in
    place, so a failure leaves one or the other, never a mix."""
    old = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.old"
    had_old = dest.exists()
    if had_old:
        os.rename(dest, old)
    try:
        os.rename(staged, dest)
    except BaseException:
        if had_old:
            os.rename(old, dest)
        raise
    if had_old:
        shutil.rmtree(old)


def write_dataset(lake: Lake, checked: CheckedDataset, folder: Path) -> list[ReleasedConfig]:
    """The dataset's listed shards as release parquet under `folder/data/<name>/[<lang>/]`; its configs:
    the whole dataset first, then one per language (datasets with a `lang` column)."""
    schema = release_schema(checked.name)
    by_lang = "lang" in schema.names
    base = folder / "data" / checked.name
    writers: dict[str, _ConfigWriter] = {}
    for shard in listed_shards(lake, checked.folder):
        for batch in shard_batches(lake.fs, shard, None, READ_BATCH_ROWS):
            table = _conform(batch, schema)
            for key, part in _by_language(table) if by_lang else [("", table)]:
                if key not in writers:
                    writers[key] = _ConfigWriter(base / key if key else base, schema)
                writers[key].add(part)
            if sum(w.held for w in writers.values()) > HELD_BYTES:
                max(writers.values(), key=lambda w: w.held).flush()
    parts = {key: writers[key].close(folder) for key in sorted(writers)}
    whole = f"data/{checked.name}/*/*.parquet" if by_lang else f"data/{checked.name}/*.parquet"
    files = [f for key in sorted(parts) for f in parts[key][0]]
    configs = [
        ReleasedConfig(
            checked.name, checked.name, None, whole, sum(p[1] for p in parts.values()), files, sum(p[2] for p in parts.values())
        )
    ]
    for key in sorted(parts) if by_lang else []:
        paths, rows, size = parts[key]
        configs.append(
            ReleasedConfig(f"{checked.name}-{key}", checked.name, key, f"data/{checked.name}/{key}/*.parquet", rows, paths, size)
        )
    return configs


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """A batch as the release schema: its columns in order and type, a column a shard lacks as nulls."""
    columns = []
    for f in schema:
        i = batch.schema.get_field_index(f.name)
        columns.append(batch.column(i).cast(f.type) if i >= 0 else pa.nulls(batch.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _by_language(table: pa.Table) -> list[tuple[str, pa.Table]]:
    lang = table.column("lang")
    parts = [(str(value), table.filter(pc.equal(lang, value))) for value in pc.unique(lang).drop_null().to_pylist() if value]
    missing = table.filter(pc.or_kleene(pc.is_null(lang), pc.equal(lang, "")))
    if missing.num_rows:
        parts.append((UNKNOWN_LANG, missing))
    return parts


_WRITER_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_page_index": True}
if "use_content_defined_chunking" in inspect.signature(pq.ParquetWriter.__init__).parameters:  # pyarrow >= 21
    _WRITER_OPTIONS["use_content_defined_chunking"] = CDC


class _ConfigWriter:
    """The parquet files of one config folder: rows gathered into row groups of at most `ROW_GROUP_BYTES`,
    files of at most `MAX_SHARD_BYTES` (both uncompressed), named `train-NNNNN-of-NNNNN.parquet` at the end."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        self.folder, self.schema = folder, schema
        self.pending: list[pa.Table] = []
        self.held = 0  # bytes pending
        self.paths: list[Path] = []
        self.writer: pq.ParquetWriter | None = None
        self.in_file = 0  # uncompressed bytes in the current file
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.held += table.nbytes
        if self.held >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        group = pa.concat_tables(self.pending)
        self.pending, self.held = [], 0
        step = max(1, group.num_rows * ROW_GROUP_BYTES // max(1, group.nbytes))  # rows of an average size
        start = 0
        while start < group.num_rows:
            part = group.slice(start, step)
            while part.num_rows > 1 and part.nbytes > ROW_GROUP_BYTES:  # longer rows than average here
                part = part.slice(0, part.num_rows // 2)
            if self.writer is None or (self.in_file and self.in_file + part.nbytes > MAX_SHARD_BYTES):
                self._next_file()
            self.writer.write_table(part, row_group_size=part.num_rows)
            self.in_file += part.nbytes
            self.rows += part.num_rows
            start += part.num_rows

    def _next_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.paths.append(self.folder / f".part-{len(self.paths):05d}.parquet")
        self.writer = pq.ParquetWriter(self.paths[-1], self.schema, **_WRITER_OPTIONS)
        self.in_file = 0

    def close(self, root: Path) -> tuple[list[str], int, int]:
        """(file paths relative to `root`, rows, bytes on disk)."""
        self.flush()
        if self.writer is not None:
            self.writer.close()
        named = []
        for i, path in enumerate(self.paths):
            final = path.with_name(f"{SPLIT}-{i:05d}-of-{len(self.paths):05d}.parquet")
            os.rename(path, final)
            named.append(final)
        return [p.relative_to(root).as_posix() for p in named], self.rows, sum(p.stat().st_size for p in named)


# --- uploading -------------------------------------------------------------------------------------

T = TypeVar("T")
_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{6,}")


def _token() -> str | None:
    from huggingface_hub import get_token

    try:
        return get_token()
    except Exception as e:  # an OIDC exchange that failed, a broken cache file
        raise ReleaseError(f"could not read the Hugging Face token: {scrub(str(e), None)}") from None


def scrub(text: str, token: str | None) -> str:
    """`text` on one line, without the token (nor anything shaped like one)."""
    if token:
        text = text.replace(token, "***")
    return " ".join(_TOKEN_LIKE.sub("hf_***", text).split())


def upload_release(folder: str, repo: str, message: str, private: bool = False, revision: str | None = None) -> UploadResult:
    """Create the dataset repo if needed, commit the folder (its `data/` replacing the repo's: files of an
    earlier release that this one does not have are deleted in the same commit), then tag that commit.

    `upload_folder`, not a large-folder upload: huggingface_hub 1.x and later stream any size through it
    (Xet, resumable: a rerun skips what is already committed and re-sends only missing chunks, and
    folders over the server's limits are split into several commits), and it takes our commit message;
    the tag is created only after it returned, so an interrupted upload leaves nothing under the tag,
    and a rerun completes it. An existing tag on another commit is refused, never moved.
    """
    check_hub_access()
    from huggingface_hub import HfApi

    token = _token()
    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint, token=token)

    def hub(what: str, call: Callable[[], T]) -> T:
        return _hub_call(what, call, token, endpoint)

    hub("create the repo", lambda: api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True))
    commit = hub(
        "upload the folder",
        lambda: api.upload_folder(
            repo_id=repo, repo_type="dataset", folder_path=folder, commit_message=message, delete_patterns=["data/**"]
        ),
    )
    if revision:
        refs = hub("read the repo's tags", lambda: api.list_repo_refs(repo, repo_type="dataset"))
        tagged = {t.name: t.target_commit for t in refs.tags}
        if revision not in tagged:
            hub("create the tag", lambda: api.create_tag(repo, tag=revision, revision=commit.oid, repo_type="dataset"))
        elif tagged[revision] != commit.oid:
            raise ReleaseError(
                f"tag {revision!r} of {repo} already names commit {tagged[revision][:12]}, not this release's "
                f"{commit.oid[:12]} (which is committed): choose another --revision"
            )
    return UploadResult(commit.commit_url, commit.oid, revision, endpoint)


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    """What the Hub client raises when it cannot reach the endpoint: its HTTP library's transport errors
    (httpx2, httpx or requests, by huggingface_hub version; whichever it imported) and the OS's."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        if (cls := getattr(sys.modules.get(module), name, None)) is not None:
            found.append(cls)
    return tuple(found)


def _hub_call(what: str, call: Callable[[], T], token: str | None, endpoint: str) -> T:
    """One Hub request, its failure said in one line that names the endpoint and never the token."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        return call()
    except OfflineModeIsEnabled:
        raise ReleaseError(
            f"HF_HUB_OFFLINE=1 is set, so nothing can be uploaded to {endpoint}: unset it, or use --dry-run"
        ) from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403):
            advice = "log in again (`hf auth login`) or set HF_TOKEN to a token with write access to the repo"
        else:
            advice = "rerun to complete it (nothing was tagged)"
        first = scrub(str(e).splitlines()[0] if str(e) else type(e).__name__, token)
        raise ReleaseError(f"the Hub at {endpoint} refused to {what} ({first}): {advice}") from None
    except _unreachable_errors() as e:
        reason = scrub(f"{type(e).__name__}: {e}", token)
        raise ReleaseError(
            f"could not reach the Hugging Face Hub at {endpoint} to {what} ({reason}): check HF_ENDPOINT and the "
            "network, then rerun (nothing was tagged)"
        ) from None
    except ReleaseError:
        raise
    except Exception as e:
        reason = scrub(f"{type(e).__name__}: {e}", token)
        raise ReleaseError(
            f"could not {what} on the Hub at {endpoint} ({reason}): rerun to complete it (nothing was tagged)"
        ) from None
