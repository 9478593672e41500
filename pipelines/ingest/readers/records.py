"""Per-record rules shared by the JSONL, parquet and HF-dataset readers.

These three sources all hold dict-like records with a ``text`` field, so they
must agree on ids, metadata and what makes a record unusable. One
:class:`RecordChecker` per file also remembers ids to reject duplicates within
that file (only ids of records that were otherwise good are remembered, so a
broken first copy does not cost us a good second one).
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any, Mapping

from datatrove.data import Document

from pipelines.ingest.readers.documents import base_metadata, good_doc, reject_doc

# Metadata keys owned by the reader; record fields of these names are ignored.
RESERVED_KEYS = frozenset(
    {"source", "content_type", "reject_reason", "reject_detail", "unusable_file", "charset", "split"}
)
_SKIP = object()


def scalar(value: Any) -> Any:
    """The value if it can be stored as flat metadata, a str for dates, else ``_SKIP``."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return _SKIP


class RecordChecker:
    """Turns the records of one file into good or reject Documents."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._first_seen: dict[str, str] = {}

    def record_id(self, record: Mapping[str, Any] | None, index: int) -> tuple[str, bool]:
        """(id, explicit): the record's own ``id`` if it has one, else ``<path>#<index>``."""
        value = record.get("id") if record is not None else None
        if value is None or isinstance(value, (dict, list)):
            return f"{self.source}#{index}", False
        return str(value), True

    def metadata(self, record: Mapping[str, Any] | None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Base keys plus the record's scalar fields (top level wins over a nested ``metadata``)."""
        record = record or {}
        nested = record.get("metadata")
        merged: dict[str, Any] = {}
        for source in (nested if isinstance(nested, Mapping) else {}, record):
            for key, value in source.items():
                if key in ("text", "id", "metadata") or key in RESERVED_KEYS or not isinstance(key, str):
                    continue
                if (flat := scalar(value)) is not _SKIP:
                    merged[key] = flat
        url = merged.pop("url", None)
        when = merged.pop("date", None)
        metadata = base_metadata(
            self.source,
            url=url if isinstance(url, str) else None,
            date=str(when) if when is not None else None,
            content_type="text/plain",
        )
        metadata.update(merged)
        if extra:
            metadata.update(extra)
        return metadata

    def to_document(
        self, record: Mapping[str, Any], index: int, where: str, extra: Mapping[str, Any] | None = None
    ) -> Document:
        """Apply the text/id rules to one parsed record."""
        doc_id, explicit = self.record_id(record, index)
        metadata = self.metadata(record, extra)
        if "text" not in record:
            fields = ", ".join(sorted(map(str, record))) or "none"
            return reject_doc(doc_id, "", metadata, "missing_text", f"{where}: no 'text' field (fields: {fields})")
        text = record["text"]
        if text is None:
            return reject_doc(doc_id, "", metadata, "null_text", f"{where}: 'text' is null")
        if not isinstance(text, str):
            salvage = str(text) if isinstance(text, (int, float)) else ""
            detail = f"{where}: 'text' is a {type(text).__name__}, not a string"
            return reject_doc(doc_id, salvage, metadata, "text_not_string", detail)
        if not text or text.isspace():
            detail = f"{where}: 'text' is {'empty' if not text else 'only whitespace'}"
            return reject_doc(doc_id, text, metadata, "empty_text", detail)
        if explicit:
            first = self._first_seen.get(doc_id)
            if first is not None:
                detail = f"{where}: id {doc_id!r} already used on {first}"
                return reject_doc(doc_id, text, metadata, "duplicate_id", detail)
            self._first_seen[doc_id] = where
        return good_doc(doc_id, text, metadata)

    def reject(
        self,
        index: int,
        reason: str,
        detail: str,
        text: str = "",
        record: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Document:
        """A reject for a record that could not be fully parsed (ids/metadata best effort)."""
        doc_id, _ = self.record_id(record, index)
        return reject_doc(doc_id, text, self.metadata(record, extra), reason, detail)
