"""A byte reader over a plain or gzip-member WARC (or ARC) that survives damage.

Why not ``warcio.ArchiveIterator``? Measured with warcio 1.8.1 it (a) stops
silently at a truncated gzip, losing the cut record without any error, (b)
raises ``ArchiveLoadFailed`` at the first corrupt gzip member and loses every
record after it, (c) hands out a record with a too-long Content-Length that
swallows the next record's header and then fails, and (d) refuses gzip files
that are not one-member-per-record. Its ARC support (``arc2warc``) shares the
same loader and fails the same way on damaged ``.arc.gz`` files. This reader
decompresses gzip members one by one itself, so it always knows the compressed
offset of the current member, can report damage with that offset, and can
resync to the next gzip member.

Reads never cross the end of the current gzip member: with the usual
one-record-per-member layout, a record whose Content-Length is too long stops
at its own member instead of eating the next record. Plain WARCs are one big
"member"; resyncing there is done by the record parser (next ``WARC/`` line).

All buffers grow by appending to a ``bytearray`` and are compacted only at the
start of a read, so reading a 30 MB record is linear, not quadratic.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import BinaryIO

_RAW_CHUNK = 1 << 20
_MAX_OUT = 8 << 20  # cap on bytes produced by one zlib call (decompression bombs)
_COMPACT_AT = 1 << 20
_GZIP_MEMBER_START = b"\x1f\x8b\x08"
_RESYNC_PROBE = 1 << 16
_PROBE_OUT = 1 << 16  # enough output for a record's whole first line (an ARC header line holds a URL)


@dataclass(frozen=True)
class Damage:
    """Damage found in the compressed stream; ``offset`` is the member's file offset."""

    offset: int
    reason: str  # "corrupt_gzip" or "truncated_file"
    detail: str


class MemberStream:
    """Line/block reader over one WARC or ARC file, one gzip member at a time.

    ``record_start`` matches the first line of a record of the file's format;
    after a corrupt member, reading resumes at the next member that
    decompresses to such a line.
    """

    def __init__(self, raw: BinaryIO, *, gzipped: bool, record_start: re.Pattern[bytes]) -> None:
        self._raw = raw
        self.gzipped = gzipped
        self._record_start = record_start
        self._buf = bytearray()
        self._pos = 0
        self._buf_offset = 0  # plain files: file offset of _buf[0]
        self._pending = b""  # compressed bytes read but not yet fed to zlib
        self._raw_offset = 0  # file offset of _pending[0]
        self._member_offset = 0
        self._member_fed = False
        self._member_done = False
        self._file_done = False
        self._damage: Damage | None = None
        self._zlib = zlib.decompressobj(31) if gzipped else None

    # ------------------------------------------------------------------ public API

    def position(self) -> int:
        """Offset to report for the next byte: gzip member start, or plain file offset."""
        return self._member_offset if self.gzipped else self._buf_offset + self._pos

    def at_file_end(self) -> bool:
        return self._file_done and self._pos >= len(self._buf)

    def take_damage(self) -> Damage | None:
        """Damage seen since the last call (it ended the current member early)."""
        damage, self._damage = self._damage, None
        return damage

    def readline(self, limit: int) -> bytes:
        """Next line incl. newline, at most ``limit`` bytes; ``b""`` at member end."""
        self._compact()
        scan_from = self._pos
        while True:
            stop = self._pos + limit
            newline = self._buf.find(b"\n", scan_from, stop)
            if newline >= 0:
                end = newline + 1
                break
            if len(self._buf) >= stop:
                end = stop
                break
            scan_from = len(self._buf)
            if not self._fill():
                end = len(self._buf)
                break
        line = bytes(self._buf[self._pos : end])
        self._pos = end
        return line

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer only at the end of the member (or damage)."""
        self._compact()
        while len(self._buf) - self._pos < size and self._fill():
            pass
        end = min(self._pos + size, len(self._buf))
        data = bytes(self._buf[self._pos : end])
        self._pos = end
        return data

    def unread(self, data: bytes) -> None:
        """Push bytes back so the next read returns them first."""
        if not data:
            return
        self._buf[self._pos : self._pos] = data
        self._buf_offset -= len(data)

    def next_member(self) -> bool:
        """Move to the next gzip member; False at end of file (always for plain files)."""
        if not self.gzipped or self._file_done:
            self._file_done = True
            return False
        self._buf.clear()
        self._pos = 0
        if not self._pending:
            self._pending = self._raw.read(_RAW_CHUNK)
            if not self._pending:
                self._file_done = self._member_done = True
                return False
        self._member_offset = self._raw_offset
        self._zlib = zlib.decompressobj(31)
        self._member_fed = False
        self._member_done = False
        return True

    # ------------------------------------------------------------------ internals

    def _compact(self) -> None:
        if self._pos >= _COMPACT_AT or (self._pos and self._pos == len(self._buf)):
            del self._buf[: self._pos]
            self._buf_offset += self._pos
            self._pos = 0

    def _fill(self) -> bool:
        """Append more bytes of the current member to the buffer; False when none are left."""
        if self._member_done:
            return False
        if not self.gzipped:
            chunk = self._raw.read(_RAW_CHUNK)
            if not chunk:
                self._member_done = self._file_done = True
                return False
            self._buf += chunk
            return True
        assert self._zlib is not None
        while True:
            if not self._pending:
                self._pending = self._raw.read(_RAW_CHUNK)
                if not self._pending:
                    self._member_done = self._file_done = True
                    if self._member_fed:
                        self._damage = Damage(
                            self._member_offset,
                            "truncated_file",
                            f"file ends inside the gzip member that starts at byte {self._member_offset}",
                        )
                    return False
            data = self._pending
            try:
                out = self._zlib.decompress(data, _MAX_OUT)
            except zlib.error as error:
                self._resync(str(error))
                return False
            self._member_fed = True
            rest = self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail
            self._raw_offset += len(data) - len(rest)
            self._pending = rest
            if self._zlib.eof:
                self._member_done = True
            if out:
                self._buf += out
                return True
            if self._member_done:
                return False

    def _resync(self, error: str) -> None:
        """Record a corrupt member and position the raw stream at the next good one."""
        start = self._member_offset
        self._member_done = True
        found = self._find_member(start + 1)
        if found is None:
            self._file_done = True
            self._pending = b""
            end = self._file_size()
            skipped = f"the remaining {end - start} bytes" if end is not None else "the rest of the file"
            detail = f"gzip member at byte {start} is corrupt ({error}); no later member found, {skipped} skipped"
        else:
            self._raw.seek(found)
            self._raw_offset = found
            self._pending = b""
            detail = f"gzip member at byte {start} is corrupt ({error}); skipped {found - start} bytes to byte {found}"
        self._damage = Damage(start, "corrupt_gzip", detail)

    def _find_member(self, offset: int) -> int | None:
        """File offset of the next gzip member at/after ``offset`` that decompresses to a record."""
        seekable = getattr(self._raw, "seekable", lambda: False)()
        if not seekable:
            return None
        position = offset
        while True:
            self._raw.seek(position)
            chunk = self._raw.read(_RAW_CHUNK)
            if len(chunk) < len(_GZIP_MEMBER_START):
                return None
            index = chunk.find(_GZIP_MEMBER_START)
            while index >= 0:
                candidate = position + index
                if self._probe(candidate):
                    return candidate
                index = chunk.find(_GZIP_MEMBER_START, index + 1)
            position += len(chunk) - (len(_GZIP_MEMBER_START) - 1)

    def _probe(self, offset: int) -> bool:
        self._raw.seek(offset)
        try:
            out = zlib.decompressobj(31).decompress(self._raw.read(_RESYNC_PROBE), _PROBE_OUT)
        except zlib.error:
            return False
        return self._record_start.match(out) is not None

    def _file_size(self) -> int | None:
        try:
            return self._raw.seek(0, 2)
        except (OSError, ValueError):
            return None
