"""The payload of a content record (response, resource, conversion): HTML, plain text, or why neither.

The three record types differ only in where the payload and its declared type
sit, so they share one policy after that:

* ``response``: the block is an HTTP message; its body is the payload and the
  HTTP ``Content-Type`` its type (an ARC capture is read as a response).
* ``resource`` (how wget, Browsertrix and pywb store pages and files) and
  ``conversion`` (text derived from another record, e.g. WET): there is no
  envelope, the block is the payload and the WARC ``Content-Type`` its type.

Every payload then goes through the same sniffing and decoding: (X)HTML becomes
a ``text/html`` document, whatever else is ``not_html``. Only a conversion may
be plain text: a text/plain (or unlabelled) conversion is the extracted text
of a page and becomes a ``text/plain`` document, trusted as text without
sniffing (WET text may mention tags). A text/plain response or resource is
``not_html`` like any other non-page capture (robots.txt, a crawler's log such
as wget's ``wget.log`` resource, Browsertrix's ``urn:text:`` copies of pages
whose HTML is archived too), so it is set aside rather than taken as corpus text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

from pipelines.ingest.readers.decoding import DecodedBody, decode_body, http_charset
from pipelines.ingest.readers.documents import ContentType
from pipelines.ingest.readers.sniffing import classify_html, mime_of, specific_type
from pipelines.ingest.readers.warc_http import HttpParseError, parse_http_response

CONTENT_RECORD_TYPES = frozenset({"response", "resource", "conversion"})


class Rejected(NamedTuple):
    reason: str
    detail: str


@dataclass(frozen=True)
class Payload:
    """A payload as declared: its bytes, its types (most trusted first), its charset label."""

    body: bytes
    labels: tuple[str | None, ...]
    charset: str | None
    encoding_note: str | None = None  # why an HTTP transfer/content encoding could not be undone


@dataclass(frozen=True)
class ReadPayload:
    """A payload judged usable as text: what it is and its decoded body (which may still be a reject)."""

    content_type: ContentType
    decoded: DecodedBody
    encoding_note: str | None


def default_content_type(rec_type: str) -> ContentType:
    """What a record of this type is taken to hold before its payload is read (also for its rejects)."""
    return "text/plain" if rec_type == "conversion" else "text/html"


def read_payload(rec_type: str, headers: Mapping[str, str], block: bytes) -> ReadPayload | Rejected:
    """Decode the payload of a content record, or say why it is not a document (``not_http``, ``not_html``, …)."""
    payload = _payload(rec_type, headers, block)
    if isinstance(payload, Rejected):
        return payload
    content_type = _content_type(rec_type, payload)
    if isinstance(content_type, Rejected):
        return content_type
    decoded = decode_body(payload.body, declared_charset=payload.charset, markup=content_type == "text/html")
    return ReadPayload(content_type, decoded, payload.encoding_note)


def _payload(rec_type: str, headers: Mapping[str, str], block: bytes) -> Payload | Rejected:
    identified = headers.get("warc-identified-payload-type")
    if rec_type != "response":
        declared = headers.get("content-type")
        return Payload(block, (identified, declared), http_charset(declared))
    try:
        http = parse_http_response(block)
    except HttpParseError as error:
        return Rejected("not_http", str(error))
    declared = http.headers.get("content-type")
    return Payload(http.body, (identified, declared), http_charset(declared), http.encoding_problem)


def _content_type(rec_type: str, payload: Payload) -> ContentType | Rejected:
    if rec_type == "conversion" and _declared_plain_text(payload.labels):
        return "text/plain"
    body = payload.body
    if not body or body.isspace():
        specific = specific_type(payload.labels)
        if specific is not None and "html" not in specific:
            return Rejected("not_html", f"payload type is {specific}")
        return Rejected("empty_body", f"body is {'empty' if not body else 'only whitespace'}")
    reason = classify_html(payload.labels, body)
    return "text/html" if reason is None else Rejected("not_html", reason)


def _declared_plain_text(labels: tuple[str | None, ...]) -> bool:
    """Every declared type is text/plain, or none is declared (WET writers may omit it)."""
    return all(mime_of(label) == "text/plain" for label in labels if mime_of(label))
