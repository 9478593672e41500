"""Split a WARC byte stream into records, checking each record's framing.

A record is ``WARC/x.y`` + header lines + blank line + ``Content-Length``
bytes + blank lines. Content-Length is trusted only when the record is
followed by a blank line and then the next ``WARC/`` line (or the end of its
gzip member). When it is not:

* too long: the block contains ``\\r\\n\\r\\nWARC/``; the block is cut there and
  the rest is pushed back, so the next record is parsed normally;
* too short: the bytes up to the next ``WARC/`` line are appended to the block;
* unparseable bytes between records are skipped up to the next ``WARC/`` line
  and reported as :class:`Skipped` with their offset.

Records with such problems are still returned (with ``problem`` set) so the
caller can emit them as rejects with whatever text is salvageable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from pipelines.ingest.readers.warc_stream import MemberStream

MAX_LINE = 64 * 1024
MAX_HEADER_BYTES = 1 << 20
MAX_SALVAGE = 64 << 20
_NEXT_RECORD = re.compile(rb"\r?\n\r?\n(WARC/\d)")


@dataclass
class RawRecord:
    """One WARC record as found in the file; ``problem`` is (reason, detail) or None."""

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


def iter_warc_records(stream: MemberStream) -> Iterator[RawRecord | Skipped]:
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
        if line.startswith(b"WARC/"):
            yield _read_record(stream, offset, line)
        else:
            yield _skip_garbage(stream, offset, line)


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


def _skip_garbage(stream: MemberStream, offset: int, first: bytes) -> Skipped:
    skipped = len(first)
    at_line_start = first.endswith(b"\n")
    while line := stream.readline(MAX_LINE):
        if at_line_start and line.startswith(b"WARC/"):
            stream.unread(line)
            break
        skipped += len(line)
        at_line_start = line.endswith(b"\n")
    detail = f"{skipped} bytes at byte {offset} are not a WARC record; skipped to the next one"
    return Skipped(offset, "invalid_warc_record", detail)


def _read_record(stream: MemberStream, offset: int, first: bytes) -> RawRecord:
    lines: list[bytes] = []
    size = len(first)
    while True:
        line = stream.readline(MAX_LINE)
        if not line:
            return RawRecord(offset, parse_headers(lines), b"", _early_end(stream, offset, "inside its header"))
        if line in (b"\r\n", b"\n"):
            break
        size += len(line)
        if size > MAX_HEADER_BYTES:
            extra = _read_until_next_record(stream, b"")
            detail = f"record at byte {offset}: header over 1 MiB; skipped to the next record ({len(extra)} more bytes)"
            return RawRecord(offset, parse_headers(lines), b"", ("invalid_warc_record", detail))
        lines.append(line)
    headers = parse_headers(lines)
    declared = headers.get("content-length", "")
    try:
        length = int(declared)
        if length < 0:
            raise ValueError(declared)
    except ValueError:
        block = _read_until_next_record(stream, b"")
        detail = f"record at byte {offset} has no valid Content-Length ({declared!r}); block read up to the next record"
        return RawRecord(offset, headers, block, ("bad_content_length", detail))

    block = stream.read(length)
    if len(block) < length:
        if _NEXT_RECORD.search(block):  # a later record hides in the block: Content-Length too long
            return _too_long(stream, offset, headers, block, length, b"")
        problem = _early_end(stream, offset, f"after {len(block)} of its {length} block bytes")
        return RawRecord(offset, headers, block, problem)

    # A correct block is followed by a blank line (or the member's end, or straight by the next record).
    line = stream.readline(MAX_LINE)
    if not line or line.isspace():
        return RawRecord(offset, headers, block)
    if line.startswith(b"WARC/"):
        stream.unread(line)
        return RawRecord(offset, headers, block)
    if _NEXT_RECORD.search(block):
        return _too_long(stream, offset, headers, block, length, line)
    extra = _read_until_next_record(stream, line)
    detail = f"record at byte {offset}: Content-Length {length} is {len(extra)} bytes short of the record's end"
    return RawRecord(offset, headers, block + extra, ("bad_content_length", detail))


def _too_long(
    stream: MemberStream, offset: int, headers: dict[str, str], block: bytes, length: int, tail: bytes
) -> RawRecord:
    """Cut the block where the next record starts and push the rest back."""
    match = _NEXT_RECORD.search(block)
    assert match is not None
    stream.unread(block[match.start(1) :] + tail)
    detail = (
        f"record at byte {offset}: Content-Length {length} is too long, the next record starts "
        f"{match.start(1)} bytes into the block"
    )
    return RawRecord(offset, headers, block[: match.start()], ("bad_content_length", detail))


def _read_until_next_record(stream: MemberStream, start: bytes) -> bytes:
    """Bytes up to (not including) the next ``WARC/`` line or member end, capped."""
    parts = [start]
    kept = len(start)
    at_line_start = not start or start.endswith(b"\n")
    while line := stream.readline(MAX_LINE):
        if at_line_start and line.startswith(b"WARC/"):
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
