"""JSON Lines files (``.jsonl``, ``.jsonl.gz``, ...) -> Documents.

Lines are read as *bytes*: datatrove's JsonlReader reads in text mode, so one
invalid UTF-8 byte raises UnicodeDecodeError and the rest of the file is lost.
Here every line is judged on its own (``invalid_utf8``, ``invalid_json``,
``not_an_object``, then the shared record rules), blank lines are skipped, and
a gzip stream that breaks mid-file keeps the lines read before the break.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any, BinaryIO, Iterator

from datatrove.data import Document

from pipelines.ingest.inputs import InputItem
from pipelines.ingest.readers.documents import StatFn, file_damage_doc, unusable_file_doc
from pipelines.ingest.readers.files import not_gzip_detail, open_binary, sniff_compression
from pipelines.ingest.readers.records import RecordChecker

try:  # orjson is a datatrove dependency and much faster; json is the tolerant fallback
    import orjson

    _fast_loads: Any = orjson.loads
except ImportError:  # pragma: no cover
    _fast_loads = json.loads

_UTF8_BOM = b"\xef\xbb\xbf"


def read_jsonl(item: InputItem, stat: StatFn) -> Iterator[Document]:
    """Yield one Document per non-blank line of ``item``, plus file-level rejects."""
    with open_binary(item.path) as raw:
        compression = sniff_compression(raw, item.path, (b"{", b"[", b"\n", b"\r"))
        if compression == "empty":
            yield unusable_file_doc(item.path, "empty_file", "file has zero bytes")
            return
        if compression == "not_gzip":
            yield unusable_file_doc(item.path, "not_gzip", not_gzip_detail(raw))
            return
        if compression == "misnamed_plain":
            stat("misnamed_gzip")
        if compression == "gzip":
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield from _lines(item.path, stream, stat, gzipped=True)
        else:
            yield from _lines(item.path, raw, stat, gzipped=False)


def _lines(path: str, stream: BinaryIO, stat: StatFn, *, gzipped: bool) -> Iterator[Document]:
    checker = RecordChecker(path)
    lines_read = 0
    try:
        for index, line in enumerate(stream):
            lines_read = index + 1
            doc = line_to_document(line, index, checker)
            if doc is None:
                stat("blank_lines")
            else:
                yield doc
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as error:
        if not gzipped:
            raise
        reason = "truncated_file" if isinstance(error, EOFError) else "corrupt_gzip"
        where = f"after line {lines_read}" if lines_read else "before the first line"
        detail = f"gzip stream breaks {where}: {error}; the rest of the file is lost"
        if lines_read == 0:
            yield unusable_file_doc(path, reason, detail)
        else:
            yield file_damage_doc(path, reason, detail)


def line_to_document(line: bytes, index: int, checker: RecordChecker) -> Document | None:
    """One raw line -> Document (good or reject); None for a blank line."""
    lineno = index + 1
    if index == 0 and line.startswith(_UTF8_BOM):
        line = line[len(_UTF8_BOM) :]
    line = line.strip()
    if not line:
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        salvaged = line.decode("utf-8", "replace")
        record = _parse(salvaged)
        detail = f"line {lineno}: invalid UTF-8 at byte {error.start}"
        if isinstance(record, dict):
            value = record.get("text")
            return checker.reject(index, "invalid_utf8", detail, value if isinstance(value, str) else "", record)
        return checker.reject(index, "invalid_utf8", detail, salvaged)
    try:
        record = _fast_loads(text)
    except ValueError:
        try:
            record = json.loads(text)  # accepts what orjson refuses: NaN, huge ints, lone surrogates
        except ValueError as error:
            return checker.reject(index, "invalid_json", f"line {lineno}: {error}", text)
        if isinstance(record, dict) and isinstance(record.get("text"), str) and _has_surrogates(record["text"]):
            salvage = record["text"].encode("utf-8", "replace").decode("utf-8")
            detail = f"line {lineno}: 'text' contains unpaired UTF-16 surrogate escapes"
            return checker.reject(index, "invalid_utf8", detail, salvage, record)
    if not isinstance(record, dict):
        kind = "an array" if isinstance(record, list) else f"a {type(record).__name__}"
        return checker.reject(index, "not_an_object", f"line {lineno}: JSON {kind} instead of an object", text)
    return checker.to_document(record, index, f"line {lineno}")


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
