"""WARC / WET files -> Documents (HTML responses and WET text conversions).

``response`` records become ``text/html`` documents holding the decoded HTML;
``conversion`` records (WET) become ``text/plain`` documents. Other record
types (warcinfo, request, metadata, revisit, resource) are not documents: they
are counted as ``skipped_<type>`` and not yielded. Anything damaged comes out
as a reject document, never silently dropped; see :mod:`warc_records` for how
framing problems are found and :mod:`decoding` for the charset policy.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

from datatrove.data import Document

from pipelines.ingest.inputs import InputItem
from pipelines.ingest.readers.decoding import DecodedBody, decode_body, http_charset
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
from pipelines.ingest.readers.sniffing import classify_html, specific_type
from pipelines.ingest.readers.warc_http import HttpParseError, parse_http_response
from pipelines.ingest.readers.warc_records import RawRecord, Skipped, iter_warc_records
from pipelines.ingest.readers.warc_stream import MemberStream

DOCUMENT_TYPES = ("response", "conversion")


def read_warc(item: InputItem, stat: StatFn) -> Iterator[Document]:
    """Yield one Document per response/conversion record of ``item``, plus rejects."""
    with open_binary(item.path) as raw:
        compression = sniff_compression(raw, item.path, (b"WARC/",))
        if compression == "empty":
            yield unusable_file_doc(item.path, "empty_file", "file has zero bytes", content_type="text/html")
            return
        if compression == "not_gzip":
            yield unusable_file_doc(item.path, "not_gzip", not_gzip_detail(raw), content_type="text/html")
            return
        if compression == "misnamed_plain":
            stat("misnamed_gzip")
        stream = MemberStream(raw, gzipped=compression == "gzip")
        yield from _documents(item.path, stream, stat)


def _documents(path: str, stream: MemberStream, stat: StatFn) -> Iterator[Document]:
    # Until one record parses we cannot tell "damaged WARC" from "not a WARC at
    # all", so early rejects wait here; a file with no record at all becomes a
    # single unusable-file document instead of a pile of fragments.
    pending: list[Skipped] = []
    parsed_any = False
    for event in iter_warc_records(stream):
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
            detail = pending[0].detail if pending else "file holds only whitespace"
            yield unusable_file_doc(path, "not_warc", f"no WARC record found: {detail}", content_type="text/html")


def _skipped_doc(path: str, skipped: Skipped) -> Document:
    metadata = base_metadata(path, content_type="text/html")
    return reject_doc(file_doc_id(path, skipped.offset), "", metadata, skipped.reason, skipped.detail)


def record_to_document(record: RawRecord, path: str, stat: StatFn) -> Document | None:
    """One WARC record -> good document, reject document, or None (not a document type)."""
    headers = record.headers
    rec_type = headers.get("warc-type", "").strip().lower() or "untyped"
    if rec_type not in DOCUMENT_TYPES and record.problem is None:
        stat(f"skipped_{rec_type}")
        return None
    doc_id = headers.get("warc-record-id") or file_doc_id(path, record.offset)
    url = headers.get("warc-target-uri")
    if url and url.startswith("<") and url.endswith(">"):
        url = url[1:-1]
    content_type = "text/plain" if rec_type == "conversion" else "text/html"
    metadata = base_metadata(path, url=url or None, date=headers.get("warc-date") or None, content_type=content_type)

    if rec_type not in DOCUMENT_TYPES:  # a damaged non-document record: report the damage only
        assert record.problem is not None
        reason, detail = record.problem
        return reject_doc(doc_id, "", metadata, reason, f"{rec_type} record: {detail}")
    if rec_type == "conversion":
        decoded = decode_body(record.block, declared_charset=http_charset(headers.get("content-type")), markup=False)
        encoding_note = None
    else:
        outcome = _response_body(record, headers)
        if isinstance(outcome, _Rejected):
            reason, detail = record.problem or outcome
            return reject_doc(doc_id, "", metadata, reason, detail)
        decoded, encoding_note = outcome

    note_decoding(decoded, metadata, stat)
    if record.problem is not None:
        return reject_doc(doc_id, decoded.text, metadata, *record.problem)
    if decoded.reject_reason is not None:
        detail = decoded.reject_detail or decoded.reject_reason
        if encoding_note and decoded.reject_reason == "binary_body":
            detail = f"{detail} ({encoding_note})"
        return reject_doc(doc_id, decoded.text, metadata, decoded.reject_reason, detail)
    return good_doc(doc_id, decoded.text, metadata)


class _Rejected(NamedTuple):
    reason: str
    detail: str


def _response_body(record: RawRecord, headers: dict[str, Any]) -> tuple[DecodedBody, str | None] | _Rejected:
    """Decoded HTML of a response record (plus any HTTP encoding note), or why it is rejected."""
    try:
        http = parse_http_response(record.block)
    except HttpParseError as error:
        return _Rejected("not_http", str(error))
    content_type = http.headers.get("content-type")
    labels = (headers.get("warc-identified-payload-type"), content_type)
    if not http.body or http.body.isspace():
        specific = specific_type(labels)
        if specific is not None and "html" not in specific:
            return _Rejected("not_html", f"payload type is {specific}")
        return _Rejected("empty_body", f"HTTP body is {'empty' if not http.body else 'only whitespace'}")
    reason = classify_html(labels, http.body)
    if reason is not None:
        return _Rejected("not_html", reason)
    decoded = decode_body(http.body, declared_charset=http_charset(content_type), markup=True)
    return decoded, http.encoding_problem
