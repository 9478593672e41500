"""Standalone ``.html``/``.htm``/``.xhtml`` files -> one Document each.

The bytes go through exactly the same policy as WARC response bodies
(:func:`pipelines.ingest.readers.decoding.decode_body`): no labels to trust here, so
the charset comes from a BOM, UTF-8, the document's own declaration or
detection, and binary/empty files are rejected the same way.
"""

from __future__ import annotations

from typing import Iterator

from datatrove.data import Document

from pipelines.ingest.inputs import InputItem
from pipelines.ingest.readers.decoding import decode_body
from pipelines.ingest.readers.documents import StatFn, base_metadata, good_doc, note_decoding, reject_doc, unusable_file_doc
from pipelines.ingest.readers.files import file_uri, open_binary


def read_html_file(item: InputItem, stat: StatFn) -> Iterator[Document]:
    """Yield the file as one text/html Document (id = path), or a reject."""
    with open_binary(item.path) as raw:
        body = raw.read()
    if not body:
        yield unusable_file_doc(item.path, "empty_file", "file has zero bytes", content_type="text/html")
        return
    metadata = base_metadata(item.path, url=file_uri(item.path), content_type="text/html")
    decoded = decode_body(body, declared_charset=None, markup=True)
    note_decoding(decoded, metadata, stat)
    if decoded.reject_reason is not None:
        detail = decoded.reject_detail or decoded.reject_reason
        yield reject_doc(item.path, decoded.text, metadata, decoded.reject_reason, detail)
        return
    yield good_doc(item.path, decoded.text, metadata)
