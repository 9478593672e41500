"""WARC, WET and ARC files -> Documents: every content record ends as a document or a reject.

``response``, ``resource`` and ``conversion`` records are content: each one
becomes a good document (``text/html``, or ``text/plain`` for text
conversions such as WET) or a reject with its reason (``not_html``,
``not_http``, ``binary_body``, …); see :mod:`warc_payloads` for the policy.
Every other record type holds no document and is counted in the step stats as
``skipped_<type>`` (``skipped_warcinfo``, ``skipped_request``,
``skipped_metadata``, ``skipped_revisit``, ``skipped_continuation``;
``skipped_untyped`` without a WARC-Type, ``skipped_other_type`` for a type the
WARC standard does not define, so a damaged file cannot invent stat names).

ARC files (``.arc``, ``.arc.gz``) are split with ARC framing (:mod:`arc_records`)
and then read exactly like WARC. Anything damaged comes out as a reject
document, never silently dropped; see :mod:`warc_records` for how framing
problems are found and :mod:`decoding` for the charset policy.
"""

from __future__ import annotations

from typing import Iterator

from datatrove.data import Document

from pipelines.ingest.inputs import InputItem, is_arc
from pipelines.ingest.readers.arc_records import ARC_FRAMING
from pipelines.ingest.readers.documents import (
    StatFn,
    base_metadata,
    file_doc_id,
    good_doc,
    note_decoding,
    reject_doc,
    unusable_file_doc,
)
from pipelines.ingest.readers.files import not_gzip_detail, open_binary, sniff_compression
from pipelines.ingest.readers.warc_payloads import CONTENT_RECORD_TYPES, Rejected, default_content_type, read_payload
from pipelines.ingest.readers.warc_records import WARC_FRAMING, Framing, RawRecord, Skipped, iter_records
from pipelines.ingest.readers.warc_stream import MemberStream

# Record types the WARC standard defines that hold no document; each is counted under its own name.
SKIPPED_TYPES = frozenset({"warcinfo", "request", "metadata", "revisit", "continuation"})


def read_warc(item: InputItem, stat: StatFn) -> Iterator[Document]:
    """Yield one Document per content record of ``item`` (WARC, WET or ARC), plus rejects."""
    framing = ARC_FRAMING if is_arc(item.path) else WARC_FRAMING
    with open_binary(item.path) as raw:
        compression = sniff_compression(raw, item.path, (framing.file_start,))
        if compression == "empty":
            yield unusable_file_doc(item.path, "empty_file", "file has zero bytes", content_type="text/html")
            return
        if compression == "not_gzip":
            yield unusable_file_doc(item.path, "not_gzip", not_gzip_detail(raw), content_type="text/html")
            return
        if compression == "misnamed_plain":
            stat("misnamed_gzip")
        stream = MemberStream(raw, gzipped=compression == "gzip", record_start=framing.record_start)
        yield from _documents(item.path, stream, framing, stat)


def _documents(path: str, stream: MemberStream, framing: Framing, stat: StatFn) -> Iterator[Document]:
    # Until one record parses we cannot tell "damaged WARC" from "not a WARC at
    # all", so early rejects wait here; a file with no record at all becomes a
    # single unusable-file document instead of a pile of fragments.
    pending: list[Skipped] = []
    parsed_any = False
    for event in iter_records(stream, framing):
        if isinstance(event, Skipped):
            if parsed_any:
                yield _skipped_doc(path, event)
            else:
                pending.append(event)
            continue
        if not parsed_any:
            parsed_any = True
            for skipped in pending:
                yield _skipped_doc(path, skipped)
            pending.clear()
        doc = record_to_document(event, path, stat)
        if doc is not None:
            yield doc
    if not parsed_any:
        damage = next((s for s in pending if s.reason in ("corrupt_gzip", "truncated_file")), None)
        if damage is not None:
            yield unusable_file_doc(path, damage.reason, damage.detail, content_type="text/html")
        else:
            detail = f"no {framing.name} record found: {pending[0].detail if pending else 'file holds only whitespace'}"
            yield unusable_file_doc(path, "not_warc", detail, content_type="text/html")


def _skipped_doc(path: str, skipped: Skipped) -> Document:
    metadata = base_metadata(path, content_type="text/html")
    return reject_doc(file_doc_id(path, skipped.offset), "", metadata, skipped.reason, skipped.detail)


def skipped_stat(rec_type: str) -> str:
    """The stat counting a skipped record of this type, from a fixed set of names."""
    if not rec_type:
        return "skipped_untyped"
    return f"skipped_{rec_type}" if rec_type in SKIPPED_TYPES else "skipped_other_type"


def record_to_document(record: RawRecord, path: str, stat: StatFn) -> Document | None:
    """One record -> good document, reject document, or None (a counted non-content record)."""
    headers = record.headers
    rec_type = headers.get("warc-type", "").strip().lower()
    if rec_type not in CONTENT_RECORD_TYPES and record.problem is None:
        stat(skipped_stat(rec_type))
        return None
    doc_id = headers.get("warc-record-id") or file_doc_id(path, record.offset)
    url = headers.get("warc-target-uri")
    if url and url.startswith("<") and url.endswith(">"):
        url = url[1:-1]
    date = headers.get("warc-date") or None
    metadata = base_metadata(path, url=url or None, date=date, content_type=default_content_type(rec_type))

    if rec_type not in CONTENT_RECORD_TYPES:  # a damaged non-content record: report the damage only
        assert record.problem is not None
        reason, detail = record.problem
        return reject_doc(doc_id, "", metadata, reason, f"{rec_type or 'untyped'} record: {detail}")
    outcome = read_payload(rec_type, headers, record.block)
    if isinstance(outcome, Rejected):
        reason, detail = record.problem or outcome
        return reject_doc(doc_id, "", metadata, reason, detail)

    decoded = outcome.decoded
    metadata["content_type"] = outcome.content_type
    note_decoding(decoded, metadata, stat)
    if record.problem is not None:
        return reject_doc(doc_id, decoded.text, metadata, *record.problem)
    if decoded.reject_reason is not None:
        detail = decoded.reject_detail or decoded.reject_reason
        if outcome.encoding_note and decoded.reject_reason == "binary_body":
            detail = f"{detail} ({outcome.encoding_note})"
        return reject_doc(doc_id, decoded.text, metadata, decoded.reject_reason, detail)
    return good_doc(doc_id, decoded.text, metadata)
