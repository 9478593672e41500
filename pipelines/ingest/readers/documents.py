"""Builders for the Documents every reader module yields, good or rejected.

All readers share one shape so the downstream exclusion filter can treat them
alike: good documents carry the base metadata keys; rejects add
``reject_reason`` (a code from :data:`REJECT_REASONS`) and a one-line
``reject_detail``; whole-file failures also set ``unusable_file=True`` and use
the id ``file:<path>``. Keeping the construction here means a new reason or
key is added in one place, not in five readers.
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from datatrove.data import Document

from pipelines.ingest.readers.decoding import DecodedBody

ContentType = Literal["text/html", "text/plain"]

# Callback the readers use to report counters; it is ``PipelineStep.stat_update``.
StatFn = Callable[..., None]

# Every reject_reason a reader may emit, with what it means.
REJECT_REASONS: dict[str, str] = {
    # whole-file failures (unusable_file=True)
    "empty_file": "the file has zero bytes",
    "not_gzip": "the name ends in .gz but the content is not gzip (nor a recognisable plain file)",
    "not_warc": "no WARC record (ARC record for .arc files) could be parsed from the file",
    "corrupt_parquet": "parquet footer or a row group could not be read",
    "no_text_column": "parquet/HF data has no string 'text' column",
    "unreadable_file": "the file or dataset folder could not be opened or read",
    # damage inside a file (the good records around it are still yielded)
    "truncated_file": "the file ends in the middle of a record / gzip member",
    "corrupt_gzip": "a gzip member could not be decompressed; bytes up to the next member were skipped",
    "invalid_warc_record": "bytes that are not a WARC (or ARC) record were skipped",
    "bad_content_length": "a WARC record's Content-Length does not match where the record really ends",
    # WARC / HTML payloads
    "not_http": "a WARC response record (or ARC record) whose block is not an HTTP message",
    "not_html": "a response or resource whose payload is not (X)HTML (image, PDF, plain text, ...), "
    "or a conversion that is neither (X)HTML nor plain text",
    "binary_body": "a body labelled as text that is binary",
    "empty_body": "an empty or whitespace-only body",
    "invalid_encoding": "no charset decodes the body without many replacement characters",
    # JSONL / parquet / HF records
    "invalid_json": "a JSONL line that is not valid JSON",
    "invalid_utf8": "a JSONL line (or its text) that is not valid UTF-8",
    "not_an_object": "a JSONL line that is valid JSON but not an object",
    "missing_text": "a record without a 'text' field",
    "null_text": "a record whose 'text' is null",
    "text_not_string": "a record whose 'text' is not a string",
    "empty_text": "a record whose 'text' is empty or whitespace",
    "duplicate_id": "a record whose id already appeared earlier in the same file",
}

_MAX_DETAIL = 500


def one_line(text: str) -> str:
    """Collapse whitespace so details stay on one line, and cap their length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_DETAIL else flat[: _MAX_DETAIL - 1] + "…"


def file_doc_id(path: str, offset: int | str | None = None) -> str:
    """Id for documents that describe (part of) a file rather than a record."""
    return f"file:{path}" if offset is None else f"file:{path}@{offset}"


def base_metadata(
    source: str, *, url: str | None = None, date: str | None = None, content_type: ContentType = "text/plain"
) -> dict[str, Any]:
    """The metadata keys every yielded document carries."""
    return {"source": source, "url": url, "date": date, "content_type": content_type}


def good_doc(doc_id: str, text: str, metadata: dict[str, Any]) -> Document:
    return Document(text=text, id=doc_id, metadata=metadata)


def reject_doc(doc_id: str, text: str, metadata: dict[str, Any], reason: str, detail: str) -> Document:
    """A record that must not reach the training set, kept for the exclusion dataset."""
    assert reason in REJECT_REASONS, reason
    return Document(
        text=text, id=doc_id, metadata={**metadata, "reject_reason": reason, "reject_detail": one_line(detail)}
    )


def unusable_file_doc(
    path: str, reason: str, detail: str, *, content_type: ContentType = "text/plain", offset: int | str | None = None
) -> Document:
    """The single document standing for a file that could not be used at all."""
    doc = reject_doc(file_doc_id(path, offset), "", base_metadata(path, content_type=content_type), reason, detail)
    doc.metadata["unusable_file"] = True
    return doc


def file_damage_doc(
    path: str, reason: str, detail: str, *, content_type: ContentType = "text/plain", offset: int | str | None = None
) -> Document:
    """A document reporting damage inside a file that otherwise yielded records."""
    return reject_doc(file_doc_id(path, offset), "", base_metadata(path, content_type=content_type), reason, detail)


def note_decoding(decoded: DecodedBody, metadata: dict[str, Any], stat: StatFn) -> None:
    """Count what decoding repaired and record the charset it chose (WARC bodies and HTML files alike)."""
    if decoded.nul_bytes:
        stat("nul_bytes_stripped", value=decoded.nul_bytes)
    if decoded.replacements:
        stat("decode_replacements", value=decoded.replacements)
    if decoded.charset:
        metadata["charset"] = decoded.charset
