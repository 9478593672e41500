"""Split a WARC (or ARC) byte stream into records, checking each record's framing.

A WARC record is ``WARC/x.y`` + header lines + blank line + ``Content-Length``
bytes + blank lines; an ARC record is one header line + ``Archive-length``
bytes + a newline (see :mod:`arc_records`). A :class:`Framing` says how a
format starts its records and reads its header; the length checks below are
written once for both. The length is trusted only when the record is followed
by a blank line and then the next record's first line (or the end of its gzip
member). When it is not:

* too long: the block contains the next record's start; the block is cut there
  and the rest is pushed back, so the next record is parsed normally;
* too short: the bytes up to the next record's first line are appended to the block;
* unparseable bytes between records are skipped up to the next record's first
  line and reported as :class:`Skipped` with their offset.

Records with such problems are still returned (with ``problem`` set) so the
caller can emit them as rejects with whatever text is salvageable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

from pipelines.ingest.readers.warc_stream import MemberStream

MAX_LINE = 64 * 1024
MAX_HEADER_BYTES = 1 << 20
MAX_SALVAGE = 64 << 20
_WARC_START = re.compile(rb"WARC/")


@dataclass
class RawRecord:
    """One record as found in the file, with WARC header names; ``problem`` is (reason, detail) or None."""

    offset: int
    headers: dict[str, str]  # lower-cased names, first occurrence wins
    block: bytes
    problem: tuple[str, str] | None = None


@dataclass(frozen=True)
class Skipped:
    """A stretch of the file that held no usable record."""

    offset: int
    reason: str
    detail: str


# Reads a record's header after its first line: WARC-style headers, or a finished RawRecord when it is damaged.
HeadReader = Callable[[MemberStream, int, bytes], dict[str, str] | RawRecord]


@dataclass(frozen=True)
class Framing:
    """How one archive format frames its records."""

    name: str  # "WARC" or "ARC", for details
    file_start: bytes  # how an uncompressed file of the format starts (tells a misnamed .gz from garbage)
    record_start: re.Pattern[bytes]  # matches the first line of a record
    next_record: re.Pattern[bytes]  # finds a record inside a block: match.start() ends the block, group 1 starts the record
    read_head: HeadReader


def iter_records(stream: MemberStream, framing: Framing) -> Iterator[RawRecord | Skipped]:
    """Yield records and skipped stretches in file order; never raises on bad data."""
    while True:
        offset = stream.position()
        line = stream.readline(MAX_LINE)
        if not line:
            if damage := stream.take_damage():
                yield Skipped(damage.offset, damage.reason, damage.detail)
            if not stream.next_member():
                return
            continue
        if line.isspace():
            continue
        if framing.record_start.match(line):
            yield _read_record(stream, offset, line, framing)
        else:
            yield _skip_garbage(stream, offset, line, framing)


def parse_headers(lines: list[bytes]) -> dict[str, str]:
    """RFC-822-ish header lines -> dict; tolerant of junk lines and folding."""
    headers: dict[str, str] = {}
    last: str | None = None
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line[:1] in (" ", "\t") and last is not None:
            headers[last] = f"{headers[last]} {line.strip()}"
            continue
        name, colon, value = line.partition(":")
        key = name.strip().lower()
        if not colon or not key:
            last = None
            continue
        if key in headers:
            last = None
            continue
        headers[key] = value.strip()
        last = key
    return headers


def _skip_garbage(stream: MemberStream, offset: int, first: bytes, framing: Framing) -> Skipped:
    skipped = len(first)
    at_line_start = first.endswith(b"\n")
    while line := stream.readline(MAX_LINE):
        if at_line_start and framing.record_start.match(line):
            stream.unread(line)
            break
        skipped += len(line)
        at_line_start = line.endswith(b"\n")
    detail = f"{skipped} bytes at byte {offset} are not part of any {framing.name} record; skipped to the next one"
    return Skipped(offset, "invalid_warc_record", detail)


def read_warc_head(stream: MemberStream, offset: int, first: bytes) -> dict[str, str] | RawRecord:
    """WARC header lines up to the blank line; a damaged header ends the record here."""
    lines: list[bytes] = []
    size = len(first)
    while True:
        line = stream.readline(MAX_LINE)
        if not line:
            return RawRecord(offset, parse_headers(lines), b"", _early_end(stream, offset, "inside its header"))
        if line in (b"\r\n", b"\n"):
            return parse_headers(lines)
        size += len(line)
        if size > MAX_HEADER_BYTES:
            extra = _read_until_next_record(stream, b"", _WARC_START)
            detail = f"record at byte {offset}: header over 1 MiB; skipped to the next record ({len(extra)} more bytes)"
            return RawRecord(offset, parse_headers(lines), b"", ("invalid_warc_record", detail))
        lines.append(line)


WARC_FRAMING = Framing(
    name="WARC",
    file_start=b"WARC/",
    record_start=_WARC_START,
    next_record=re.compile(rb"\r?\n\r?\n(WARC/\d)"),
    read_head=read_warc_head,
)


def _read_record(stream: MemberStream, offset: int, first: bytes, framing: Framing) -> RawRecord:
    head = framing.read_head(stream, offset, first)
    if isinstance(head, RawRecord):
        return head
    headers = head
    declared = headers.get("content-length", "")
    try:
        length = int(declared)
        if length < 0:
            raise ValueError(declared)
    except ValueError:
        block = _read_until_next_record(stream, b"", framing.record_start)
        detail = f"record at byte {offset} has no valid Content-Length ({declared!r}); block read up to the next record"
        return RawRecord(offset, headers, block, ("bad_content_length", detail))

    block = stream.read(length)
    if len(block) < length:
        if match := framing.next_record.search(block):  # a later record hides in the block: Content-Length too long
            return _too_long(stream, offset, headers, block, length, match)
        problem = _early_end(stream, offset, f"after {len(block)} of its {length} block bytes")
        return RawRecord(offset, headers, block, problem)

    # A correct block is followed by a blank line (or the member's end, or straight by the next record).
    line = stream.readline(MAX_LINE)
    if not line or line.isspace():
        return RawRecord(offset, headers, block)
    if framing.record_start.match(line):
        stream.unread(line)
        return RawRecord(offset, headers, block)
    # The block may end inside the next record's first line (a whole ARC header line is needed to see it).
    if match := framing.next_record.search(block + line):
        return _too_long(stream, offset, headers, block + line, length, match)
    extra = _read_until_next_record(stream, line, framing.record_start)
    detail = f"record at byte {offset}: Content-Length {length} is {len(extra)} bytes short of the record's end"
    return RawRecord(offset, headers, block + extra, ("bad_content_length", detail))


def _too_long(
    stream: MemberStream, offset: int, headers: dict[str, str], data: bytes, length: int, match: re.Match[bytes]
) -> RawRecord:
    """Cut ``data`` (the block and what was read after it) where the next record starts; push the rest back."""
    stream.unread(data[match.start(1) :])
    detail = (
        f"record at byte {offset}: Content-Length {length} is too long, the next record starts "
        f"{match.start(1)} bytes into the block"
    )
    return RawRecord(offset, headers, data[: match.start()], ("bad_content_length", detail))


def _read_until_next_record(stream: MemberStream, start: bytes, record_start: re.Pattern[bytes]) -> bytes:
    """Bytes up to (not including) the next record's first line or the member's end, capped."""
    parts = [start]
    kept = len(start)
    at_line_start = not start or start.endswith(b"\n")
    while line := stream.readline(MAX_LINE):
        if at_line_start and record_start.match(line):
            stream.unread(line)
            break
        if kept < MAX_SALVAGE:
            parts.append(line)
            kept += len(line)
        at_line_start = line.endswith(b"\n")
    return b"".join(parts).rstrip(b"\r\n")


def _early_end(stream: MemberStream, offset: int, where: str) -> tuple[str, str]:
    """Why a record stopped early: stream damage, end of file, or a short gzip member."""
    if damage := stream.take_damage():
        return damage.reason, f"record at byte {offset} cut {where}: {damage.detail}"
    if stream.at_file_end():
        return "truncated_file", f"record at byte {offset} cut {where}: the file ends there"
    return "bad_content_length", f"record at byte {offset} cut {where}: its gzip member ends before Content-Length"
