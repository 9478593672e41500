"""Is this payload HTML, and is it text at all?

datatrove's WarcReader asks libmagic, which calls XHTML ``text/xml`` and so
silently drops XHTML pages. Here the declared types are trusted first (any
label containing "html" means HTML), and sniffing is only a fallback for
missing or generic labels; it errs on the side of keeping anything that looks
like (X)HTML, because the extractor downstream copes with false positives but
a dropped page is lost for good.

Binary detection is separate because a body *labelled* text/html can still be
a PNG or random bytes; those are rejected as ``binary_body`` rather than being
decoded into mojibake.
"""

from __future__ import annotations

import re
from typing import Sequence

# Labels that say nothing useful about the payload; sniff instead.
_GENERIC_TYPES = frozenset(
    {
        "",
        "text/plain",
        "text/xml",
        "application/xml",
        "application/octet-stream",
        "binary/octet-stream",
        "application/unknown",
        "unknown/unknown",
        "application/x-unknown-content-type",
        "text/x-unknown",
        "text/*",
        "*/*",
        "none",
        "no-type",  # what ARC files write when the server sent no type
    }
)

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"%PDF-", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "RAR"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE2 (MS Office)"),
    (b"\x7fELF", "ELF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"OggS", "Ogg"),
    (b"fLaC", "FLAC"),
    (b"wOFF", "WOFF font"),
    (b"wOF2", "WOFF2 font"),
)

# Control bytes that never occur in text. Tab, LF, FF, CR and ESC (used by
# ISO-2022 encodings) are allowed; NUL is counted separately because stray NULs
# in otherwise good HTML are stripped rather than rejected.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (0, 9, 10, 12, 13, 27))
MAX_CONTROL_RATIO = 0.02
MAX_NUL_RATIO = 0.10

_SNIFF_BYTES = 4096
_HTML_START = (b"<!doctype html", b"<html")
_HTML_TAG = re.compile(
    rb"<(?:html|head|body|title|meta|link|script|style|div|span|p|br|a|table|h[1-6]|ul|ol|li|form|iframe|img|nav"
    rb"|header|footer|section|article)[\s/>]"
)
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def mime_of(label: str | None) -> str:
    """``"Text/HTML; charset=x"`` -> ``"text/html"``."""
    return (label or "").split(";", 1)[0].strip().lower()


def is_html_label(label: str | None) -> bool:
    return "html" in mime_of(label)


def signature_of(body: bytes) -> str | None:
    """Name of a well-known binary format the body starts with, if any."""
    for magic, name in _SIGNATURES:
        if body.startswith(magic):
            return name
    if body[:4] == b"RIFF" and body[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return f"RIFF {body[8:12].decode().strip()}"
    if body[4:8] == b"ftyp":
        return "ISO media (MP4)"
    return None


def binary_reason(body: bytes) -> str | None:
    """Why ``body`` is binary rather than text, or None when it looks like text.

    Linear time: ``bytes.translate``/``count`` run in C, so a 30 MB body costs
    milliseconds.
    """
    if body.startswith(_UTF16_BOMS):
        return None
    if name := signature_of(body):
        return f"body starts with a {name} signature"
    size = len(body)
    if not size:
        return None
    nul = body.count(0)
    control = size - len(body.translate(None, _CONTROL_BYTES))
    if control / size > MAX_CONTROL_RATIO:
        return f"body is {(control + nul) * 100 // size}% control bytes"
    if nul / size > MAX_NUL_RATIO:
        return f"body is {nul * 100 // size}% NUL bytes"
    return None


def looks_like_html(body: bytes) -> bool:
    """Conservative (keep-leaning) check that a payload is HTML or XHTML."""
    head = body[:_SNIFF_BYTES]
    if head.startswith(_UTF16_BOMS):
        head = head.decode("utf-16", "ignore").encode("ascii", "ignore")
    elif head.startswith(_UTF8_BOM):
        head = head[len(_UTF8_BOM) :]
    if signature_of(head):
        return False
    head = head.replace(b"\x00", b"").lstrip().lower()
    if head.startswith(_HTML_START):
        return True
    if head.startswith(b"<?xml") or head.startswith(b"<!doctype"):
        return b"xhtml" in head or b"<html" in head or b"<!doctype html" in head
    return _HTML_TAG.search(head) is not None


def specific_type(labels: Sequence[str | None]) -> str | None:
    """First declared type that actually says something (not generic/unknown)."""
    for label in labels:
        mime = mime_of(label)
        if mime and ("html" in mime or mime not in _GENERIC_TYPES):
            return mime
    return None


def classify_html(labels: Sequence[str | None], body: bytes) -> str | None:
    """None when the payload should be treated as HTML, else why it is not.

    ``labels`` are declared types in order of trust (e.g. the WARC
    ``WARC-Identified-Payload-Type``, then the HTTP ``Content-Type``).
    """
    mimes = [mime_of(label) for label in labels if label and mime_of(label)]
    if any("html" in mime for mime in mimes):
        return None
    specific = [mime for mime in mimes if mime not in _GENERIC_TYPES]
    if specific:
        return f"payload type is {specific[0]}"
    if looks_like_html(body):
        return None
    declared = f"labelled {mimes[0]}" if mimes else "unlabelled"
    if name := signature_of(body):
        return f"{declared} payload is a {name} file"
    return f"{declared} payload does not look like HTML"
