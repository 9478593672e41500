"""Turn a text/HTML body (bytes) into str, or say why it cannot be used.

Shared by WARC records and standalone HTML files so both follow one policy:

1. empty / whitespace-only  -> ``empty_body``
2. binary (signature or many control bytes) -> ``binary_body``
3. stray NUL bytes are stripped (counted by the caller), the page is kept
4. charset, first strict decode wins:
   BOM -> UTF-8 (also "almost UTF-8": a few broken bytes among many valid
   multi-byte sequences) -> HTTP ``charset`` -> ``<meta charset>`` / ``http-equiv`` /
   XML declaration -> detection (cchardet if confident, else
   charset-normalizer). A declared catch-all single-byte charset
   (latin-1/windows-1252/ascii) decodes *anything*, so it loses to a confident
   multi-byte detection (Shift_JIS, EUC-JP, GB18030, Big5, EUC-KR).
5. nothing strict -> best guess with ``errors="replace"``; ``invalid_encoding``
   when more than 1% of the characters had to be replaced.

Labels are mapped to the superset codecs browsers actually use (WHATWG), e.g.
latin-1 -> windows-1252, Shift_JIS -> cp932, GB2312/GBK -> GB18030.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from pipelines.ingest.readers.sniffing import binary_reason

MAX_REPLACEMENT_RATIO = 0.01
_DETECT_SAMPLE = 1 << 21  # cchardet is C and fast; 2 MB is plenty
_NORMALIZER_SAMPLE = 1 << 16  # charset-normalizer is slower; 64 KB
_CONFIDENT = 0.6
_CONFIDENT_MULTIBYTE = 0.5
_PRESCAN_BYTES = 4096

_CATCH_ALL = frozenset({"cp1252", "iso8859-1"})
_MULTIBYTE = frozenset({"cp932", "euc_jp", "gb18030", "big5hkscs", "cp949", "iso2022_jp"})
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "shift_jis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
}
_EXTRA_LABELS = {
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "ms_kanji": "cp932",
    "x-euc-jp": "euc_jp",
    "uhc": "cp949",
    "x-gbk": "gb18030",
}
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([a-z0-9_.:\-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([a-z0-9_.:\-]+)""", re.IGNORECASE)
_HTTP_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([^\s;"']+)""", re.IGNORECASE)


@dataclass(frozen=True)
class DecodedBody:
    """Result of :func:`decode_body`; ``reject_reason`` is None for usable text."""

    text: str
    charset: str | None
    reject_reason: str | None = None
    reject_detail: str | None = None
    nul_bytes: int = 0
    replacements: int = 0


@lru_cache(maxsize=256)
def normalize_charset(label: str | None) -> str | None:
    """Python codec name for a charset label (browser superset), or None if unusable."""
    if not label:
        return None
    key = label.strip().strip("\"'").lower()
    name = _EXTRA_LABELS.get(key)
    if name is None:
        try:
            name = codecs.lookup(key).name
        except LookupError:
            return None
    name = _SUPERSETS.get(name, name)
    if name in ("utf-7", "utf_7"):
        return None  # never trust it: a classic XSS vector and never what a page really is
    try:
        b"".decode(name)  # rejects bytes-to-bytes codecs such as base64 / rot13
    except LookupError:
        return None
    return name


def http_charset(content_type: str | None) -> str | None:
    """The ``charset=`` parameter of a Content-Type header value, if any."""
    match = _HTTP_CHARSET.search(content_type or "")
    return match.group(1) if match else None


def markup_charset(body: bytes) -> str | None:
    """Charset declared inside the document: XML declaration or ``<meta>``."""
    head = body[:_PRESCAN_BYTES]
    match = _XML_ENCODING.search(head) or _META_CHARSET.search(head)
    if not match:
        return None
    label = match.group(1).decode("ascii", "ignore")
    # A meta tag cannot truthfully claim UTF-16/32: it was read as ASCII (WHATWG rule).
    return "utf-8" if label.lower().replace("_", "-").startswith(("utf-16", "utf-32")) else label


def decode_body(body: bytes, *, declared_charset: str | None, markup: bool) -> DecodedBody:
    """Apply the module's policy to ``body``; ``markup`` enables in-document charset lookups."""
    if not body or body.isspace():
        return DecodedBody("", None, "empty_body", f"body is {'empty' if not body else 'only whitespace'}")
    for bom, name in _BOMS:
        if body.startswith(bom):
            return _finish(body[len(bom) :], name, 0)
    if reason := binary_reason(body):
        return DecodedBody("", None, "binary_body", reason)
    nul_bytes = body.count(0)
    if nul_bytes:
        body = body.replace(b"\x00", b"")
        if not body or body.isspace():
            return DecodedBody("", None, "empty_body", "body holds only NUL bytes and whitespace", nul_bytes)
    return _decode_unknown(body, declared_charset, markup, nul_bytes)


def _finish(body: bytes, charset: str, nul_bytes: int) -> DecodedBody:
    """Decode with a known charset, falling back to replacement characters."""
    try:
        return _checked(body.decode(charset), charset, nul_bytes, 0)
    except UnicodeDecodeError:
        text = body.decode(charset, "replace")
        return _checked(text, charset, nul_bytes, text.count("\ufffd"))


def _decode_unknown(body: bytes, declared: str | None, markup: bool, nul_bytes: int) -> DecodedBody:
    try:
        return _checked(body.decode("utf-8"), "utf-8", nul_bytes, 0)
    except UnicodeDecodeError:
        pass
    if (mostly := _mostly_utf8(body, nul_bytes)) is not None:
        return mostly
    tried: list[str] = ["utf-8"]
    cchardet_guess = _Lazy(lambda: _cchardet(body))
    for label in (declared, markup_charset(body) if markup else None):
        charset = normalize_charset(label)
        if charset is None or charset in tried:
            continue
        tried.append(charset)
        if charset in _CATCH_ALL:
            detected, confidence = cchardet_guess.get()
            if detected in _MULTIBYTE and confidence >= _CONFIDENT_MULTIBYTE:
                if (text := _strict(body, detected)) is not None:
                    return _checked(text, detected, nul_bytes, 0)
        if (text := _strict(body, charset)) is not None:
            return _checked(text, charset, nul_bytes, 0)
        if charset == "cp1252" and (text := _strict(body, "iso8859-1")) is not None:
            return _checked(text, "iso8859-1", nul_bytes, 0)  # cp1252 leaves 5 bytes undefined
    detected, confidence = cchardet_guess.get()
    if detected is None or confidence < _CONFIDENT:
        detected = _normalizer(body) or detected
    if detected is not None and detected not in tried:
        tried.append(detected)
        if (text := _strict(body, detected)) is not None:
            return _checked(text, detected, nul_bytes, 0)
    # Nothing decodes strictly: take the candidate needing the fewest replacements.
    best_text, best_charset, best_count = "", "utf-8", -1
    for charset in tried:
        text = body.decode(charset, "replace")
        count = text.count("\ufffd")
        if best_count < 0 or count < best_count:
            best_text, best_charset, best_count = text, charset, count
    return _checked(best_text, best_charset, nul_bytes, best_count)


def _mostly_utf8(body: bytes, nul_bytes: int) -> DecodedBody | None:
    """UTF-8 with a few broken bytes stays UTF-8 (with replacements).

    Otherwise a detector happily picks a single-byte charset that decodes
    "strictly" and turns every correct non-ASCII character into mojibake.
    Valid multi-byte UTF-8 sequences rarely occur by chance in legacy
    encodings, so many of them next to few errors is strong evidence.
    """
    text = body.decode("utf-8", "replace")
    replacements = text.count("\ufffd")
    valid_non_ascii = len(text) - len(text.encode("ascii", "ignore")) - replacements
    if replacements / len(text) <= MAX_REPLACEMENT_RATIO and valid_non_ascii >= 4 * replacements:
        return _checked(text, "utf-8", nul_bytes, replacements)
    return None


def _checked(text: str, charset: str, nul_bytes: int, replacements: int) -> DecodedBody:
    if not text or text.isspace():
        return DecodedBody(text, charset, "empty_body", "body decodes to only whitespace", nul_bytes, replacements)
    if replacements and replacements / len(text) > MAX_REPLACEMENT_RATIO:
        share = replacements * 100 / len(text)
        detail = f"{replacements} of {len(text)} characters ({share:.1f}%) undecodable as {charset}"
        return DecodedBody(text, charset, "invalid_encoding", detail, nul_bytes, replacements)
    return DecodedBody(text, charset, None, None, nul_bytes, replacements)


def _strict(body: bytes, charset: str) -> str | None:
    try:
        return body.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return None


def _cchardet(body: bytes) -> tuple[str | None, float]:
    import cchardet

    result = cchardet.detect(body[:_DETECT_SAMPLE])
    return normalize_charset(result.get("encoding")), float(result.get("confidence") or 0.0)


def _normalizer(body: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(body[:_NORMALIZER_SAMPLE]).best()
    return normalize_charset(best.encoding) if best is not None else None


class _Lazy:
    """Compute an expensive value (charset detection) at most once, only if needed."""

    def __init__(self, compute: Callable[[], tuple[str | None, float]]) -> None:
        self._compute = compute
        self._value: tuple[str | None, float] | None = None

    def get(self) -> tuple[str | None, float]:
        if self._value is None:
            self._value = self._compute()
        return self._value
