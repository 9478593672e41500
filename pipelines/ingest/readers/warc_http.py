"""Parse the HTTP response stored in a WARC ``response`` record's block.

Kept deliberately small and forgiving: status line, headers, body. Chunked
transfer encoding and gzip/deflate content encoding are undone when the
headers still announce them (Common Crawl usually stores decoded payloads and
renames those headers to ``X-Crawler-*``); if undoing fails the raw body is
kept and ``encoding_problem`` says why, so a later ``binary_body`` reject
explains itself.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

_MAX_HEAD = 256 * 1024
_MAX_INFLATED = 256 << 20


class HttpParseError(ValueError):
    """The block is not an HTTP response message."""


@dataclass(frozen=True)
class HttpResponse:
    status: int | None
    headers: dict[str, str]  # lower-cased names, first occurrence wins
    body: bytes
    encoding_problem: str | None = None


def parse_http_response(block: bytes) -> HttpResponse:
    """Split an HTTP response into status, headers and decoded body."""
    if not block.startswith(b"HTTP/"):
        start = block[:16]
        raise HttpParseError(f"block starts with {start!r}, not an HTTP status line")
    end, separator = _head_end(block)
    if end < 0:
        raise HttpParseError(f"no blank line ends the HTTP headers within {min(len(block), _MAX_HEAD)} bytes")
    lines = block[:end].decode("iso-8859-1").splitlines()
    status = _status(lines[0])
    headers: dict[str, str] = {}
    last: str | None = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and last is not None:
            headers[last] = f"{headers[last]} {line.strip()}"
            continue
        name, colon, value = line.partition(":")
        key = name.strip().lower()
        last = None
        if colon and key and key not in headers:
            headers[key] = value.strip()
            last = key
    body, problem = _decode_transfer(block[end + separator :], headers)
    return HttpResponse(status, headers, body, problem)


def _head_end(block: bytes) -> tuple[int, int]:
    crlf = block.find(b"\r\n\r\n", 0, _MAX_HEAD)
    lf = block.find(b"\n\n", 0, _MAX_HEAD)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return (lf, 2) if lf >= 0 else (-1, 0)


def _status(line: str) -> int | None:
    parts = line.split(None, 2)
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None


def _decode_transfer(body: bytes, headers: dict[str, str]) -> tuple[bytes, str | None]:
    problem = None
    if "chunked" in headers.get("transfer-encoding", "").lower():
        dechunked = _dechunk(body)
        if dechunked is None:
            problem = "Transfer-Encoding says chunked but the body is not"
        else:
            body = dechunked
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflated = _inflate(body)
        if inflated is None:
            problem = f"Content-Encoding {encoding} could not be decoded"
        else:
            body = inflated
    elif encoding and encoding not in ("identity", "none", "utf-8", "text", "binary"):
        problem = f"Content-Encoding {encoding} is not supported"
    return body, problem


def _dechunk(body: bytes) -> bytes | None:
    """Undo chunked transfer encoding; None when the body is not chunked after all."""
    parts: list[bytes] = []
    position = 0
    view = memoryview(body)
    while position < len(body):
        line_end = body.find(b"\n", position, position + 1024)
        if line_end < 0:
            return None
        size_text = body[position:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return None
        if size == 0:
            break
        start = line_end + 1
        parts.append(bytes(view[start : start + size]))
        position = start + size
        if body[position : position + 2] == b"\r\n":
            position += 2
        elif body[position : position + 1] == b"\n":
            position += 1
    return b"".join(parts)


def _inflate(body: bytes) -> bytes | None:
    """gzip, zlib or raw deflate; None when none of them works."""
    for wbits in (47, -15):  # 47: auto-detect gzip/zlib header; -15: raw deflate
        try:
            inflater = zlib.decompressobj(wbits)
            out = inflater.decompress(body, _MAX_INFLATED)
            return out + inflater.flush()
        except zlib.error:
            continue
    return None
