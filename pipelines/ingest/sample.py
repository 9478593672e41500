"""Pack a folder of real HTML pages into one gzipped WARC: the demo run's sample corpus.

The default sample is human-written, multilingual documentation that Debian ships as
packages, so the demo runs offline and reproducibly on any Debian/Ubuntu machine:

* ``debian-reference-*``: one folder, ``/usr/share/debian-reference/<chapter>.<lang>.html``
  (8 languages x 15 pages).
* ``debian-handbook``: one folder per locale, ``/usr/share/doc/debian-handbook/html/<locale>/``
  (26 locales x 127 pages).
* ``python3-doc``: one English Sphinx tree, ``/usr/share/doc/python3-doc/html`` (a symlink
  to ``python3.X/html``; ~530 pages).

All Debian pages are XHTML served as ``.html``: an ``<?xml encoding="UTF-8"?>`` declaration
plus ``<meta http-equiv="Content-Type" content="text/html; charset=UTF-8"/>``; the Python
pages are HTML5 with ``<meta charset="utf-8">``. Other folders may hold other charsets, so
the charset is sniffed per page and the raw bytes are packed untouched.

The WARC is byte-for-byte deterministic for the same files at the same place (record ids,
dates and gzip headers derive from the files, never from the clock; warcio's gzip members
carry mtime 0), so reruns of the demo start from identical input.
"""

from __future__ import annotations

import codecs
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from loguru import logger
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

DEBIAN_DOC_PACKAGES: tuple[str, ...] = (
    "debian-reference-en",
    "debian-reference-fr",
    "debian-reference-de",
    "debian-reference-it",
    "debian-reference-ja",
    "debian-reference-es",
    "debian-reference-pt",
    "debian-reference-zh-cn",
    "debian-handbook",
    "python3-doc",
)

DEBIAN_REFERENCE_DIR = Path("/usr/share/debian-reference")
DEBIAN_HANDBOOK_DIR = Path("/usr/share/doc/debian-handbook/html")
PYTHON_DOC_DIR = Path("/usr/share/doc/python3-doc/html")

DEFAULT_MAX_PAGES_PER_FOLDER = 48
"""Cap per language group for the default sample: pass it as ``max_pages_per_folder``.

The installed docs hold 3953 pages (132 MB), 84% of them the 26 handbook locales. A cap
of 48 per language group keeps all of debian-reference (8 languages x 15 pages, plus its
language chooser), 48 of the 127 pages of each handbook locale (26 x 48) and 48 of the 530
Python pages: 1417 pages, 26 locales (25 languages), 48 MB of HTML, an 11 MB WARC, packed
in ~3 s. Enough text in every language for each stage to have work, while the demo run
stays short. ``None`` means no cap.
"""

HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
WARCINFO_DATE = "2000-01-01T00:00:00Z"
"""Fixed, so that the warcinfo record (and so the file) does not change between runs."""

_RECORD_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://lmforge/pipelines/sample")
# "<chapter>.<lang>.html" as in debian-reference: a 2-letter language, maybe with a region.
_LANGUAGE_SUFFIX = re.compile(r"\.([a-z]{2}(?:[-_][a-z]{2})?)\.x?html?$", re.IGNORECASE)
# WHATWG's prescan reads only the first 1024 bytes; so do we, which also keeps a
# "charset=" quoted in the body text (debian-reference ch11 has some) from counting.
_PRESCAN_BYTES = 1024
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16le"),
    (codecs.BOM_UTF16_BE, "utf-16be"),
)
_META_TAG = re.compile(rb"<meta\b[^>]*>", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(
    rb"""^\s*<\?xml\b[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""", re.IGNORECASE
)


class SampleSourceMissing(Exception):
    """No HTML to pack: the message says what to install or which folder was empty."""


@dataclass(frozen=True)
class SampleReport:
    """What ``pack_html`` wrote; ``skipped`` counts unreadable files (each one is logged)."""

    warc_path: str
    pages: int
    bytes: int
    skipped: int
    by_folder: dict[str, int]


@dataclass(frozen=True)
class _Page:
    """A selected page with the folder it came from: record ids and URIs derive from both."""

    folder: Path
    path: Path

    @property
    def relative(self) -> str:
        return self.path.relative_to(self.folder).as_posix()


def default_sources() -> list[Path]:
    """The installed Debian documentation folders, one per language where the layout allows.

    The handbook is returned per locale so that the per-folder cap spreads over languages;
    debian-reference keeps its languages in one folder (``select_pages`` groups them by
    file suffix); the python3-doc symlink is resolved so URIs name the real files.
    """
    handbook = sorted(p for p in DEBIAN_HANDBOOK_DIR.glob("*") if p.is_dir())
    python = [PYTHON_DOC_DIR.resolve()] if PYTHON_DOC_DIR.is_dir() else []
    reference = [DEBIAN_REFERENCE_DIR] if DEBIAN_REFERENCE_DIR.is_dir() else []
    folders = reference + handbook + python
    if not folders:
        raise SampleSourceMissing(
            "No sample corpus found: install Debian's documentation with "
            f"'sudo apt-get install {' '.join(DEBIAN_DOC_PACKAGES)}', "
            "or pass a folder of HTML pages instead."
        )
    return folders


def select_pages(folders: Sequence[Path], max_pages_per_folder: int | None) -> list[Path]:
    """The pages ``pack_html`` packs: every folder's HTML, capped per language group, sorted.

    A language group is a folder, split further by a ``.<lang>.html`` file suffix when the
    folder keeps its translations side by side (debian-reference). The cap picks evenly
    spaced pages from the sorted list rather than the first ones, so a capped sample still
    spans a whole manual (the first 48 of the Python docs would be mostly C-API pages).
    Raises ``SampleSourceMissing`` naming a folder that is missing or holds no HTML.
    """
    return [page.path for page in _select(folders, max_pages_per_folder)]


def pack_html(
    folders: Sequence[Path],
    out: Path,
    *,
    max_pages_per_folder: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SampleReport:
    """Write the HTML pages under ``folders`` to ``out`` as one gzipped WARC, atomically.

    ``max_pages_per_folder=None`` packs every page; use ``DEFAULT_MAX_PAGES_PER_FOLDER`` for
    the demo sample. ``progress(done, total)`` is called once before the first page and
    after each page, skipped ones included, so ``done`` ends at ``total``.
    """
    pages = _select(folders, max_pages_per_folder)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as stream:
            report = _write_warc(stream, pages, out, progress)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report


def _select(folders: Sequence[Path], max_pages_per_folder: int | None) -> list[_Page]:
    """``select_pages``, keeping each page's folder for its record id and URI."""
    if not folders:
        raise SampleSourceMissing("No folders of HTML given to pack.")
    selected: list[_Page] = []
    for folder in map(Path, folders):
        pages = _html_files(folder)
        groups: dict[str, list[Path]] = {}
        for page in pages:
            groups.setdefault(_language_group(page), []).append(page)
        cap = max_pages_per_folder
        kept = {p for group in groups.values() for p in _evenly_spaced(group, cap)}
        selected += [_Page(folder, p) for p in pages if p in kept]
    return selected


def _html_files(folder: Path) -> list[Path]:
    """All ``*.html``/``*.htm``/``*.xhtml`` files under ``folder``, sorted by relative path.

    Broken symlinks are kept (and later skipped as unreadable) so they show up in the
    report rather than vanish; directories that happen to end in ``.html`` are not pages.
    """
    if not folder.is_dir():
        raise SampleSourceMissing(f"Not a folder of HTML pages: {folder}")
    pages = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in HTML_SUFFIXES and not p.is_dir()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not pages:
        raise SampleSourceMissing(f"No .html, .htm or .xhtml files under {folder}")
    return pages


def _language_group(page: Path) -> str:
    """The ``<lang>`` of ``<name>.<lang>.html``, or ``""`` for a page without one."""
    match = _LANGUAGE_SUFFIX.search(page.name)
    return match.group(1).lower() if match else ""


def _evenly_spaced(pages: list[Path], cap: int | None) -> list[Path]:
    """``cap`` pages spread evenly over ``pages`` (starting with the first), or all of them."""
    if cap is None or len(pages) <= cap:
        return pages
    return [pages[i * len(pages) // cap] for i in range(cap)]


def _write_warc(
    stream: BinaryIO,
    pages: list[_Page],
    out: Path,
    progress: Callable[[int, int], None] | None,
) -> SampleReport:
    """Write the warcinfo record then one response record per readable page."""
    writer = WARCWriter(stream, gzip=True)
    writer.write_record(_warcinfo_record(writer, out, pages))
    by_folder: dict[str, int] = {}
    packed = skipped = 0
    if progress:
        progress(0, len(pages))
    for done, (page, payload) in enumerate(_read_pages(pages), start=1):
        if payload is None:
            skipped += 1
        else:
            writer.write_record(_response_record(writer, page, payload))
            packed += len(payload)
            by_folder[str(page.folder)] = by_folder.get(str(page.folder), 0) + 1
        if progress:
            progress(done, len(pages))
    return SampleReport(str(out), sum(by_folder.values()), packed, skipped, by_folder)


def _read_pages(pages: list[_Page]) -> Iterator[tuple[_Page, bytes | None]]:
    """Each page with its raw bytes, or ``None`` (logged) when it cannot be read."""
    for page in pages:
        try:
            yield page, page.path.read_bytes()
        except OSError as error:
            logger.warning("Skipping unreadable page {}: {}", page.path, error)
            yield page, None


def _warcinfo_record(writer: WARCWriter, out: Path, pages: list[_Page]) -> ArcWarcRecord:
    """The leading warcinfo record, with an id and date that do not depend on the clock."""
    folders = dict.fromkeys(str(page.folder.resolve()) for page in pages)
    record = writer.create_warcinfo_record(
        out.name,
        {
            "software": "lmforge pipelines.sample",
            "format": "WARC File Format 1.0",
            "description": "HTML pages packed from: " + ", ".join(folders),
        },
    )
    record.rec_headers.replace_header("WARC-Record-ID", _record_id(f"warcinfo/{out.name}"))
    record.rec_headers.replace_header("WARC-Date", WARCINFO_DATE)
    return record


def _response_record(writer: WARCWriter, page: _Page, payload: bytes) -> ArcWarcRecord:
    """A response record as a web server would have sent the page, dated by its mtime."""
    media_type = "application/xhtml+xml" if page.path.suffix.lower() == ".xhtml" else "text/html"
    charset = _detect_charset(payload[:_PRESCAN_BYTES], xml_first=media_type != "text/html")
    http_headers = StatusAndHeaders(
        "200 OK",
        [
            ("Content-Type", f"{media_type}; charset={charset}"),
            ("Content-Length", str(len(payload))),
        ],
        protocol="HTTP/1.1",
    )
    return writer.create_warc_record(
        _target_uri(page),
        "response",
        payload=BytesIO(payload),
        length=len(payload),
        http_headers=http_headers,
        warc_headers_dict={
            "WARC-Record-ID": _record_id(f"{page.folder.name}/{page.relative}"),
            "WARC-Date": _mtime_iso(page.path),
            "WARC-Identified-Payload-Type": media_type,
        },
    )


def _target_uri(page: _Page) -> str:
    """``http://localhost`` plus the page's absolute path, percent-encoded as in a file URI.

    Not ``file://``: warcio's readers (datatrove's ``WarcReader`` among them) parse the
    HTTP headers of http(s) records only, and would otherwise hand the header block to the
    pipeline as the start of the page's text.
    """
    file_uri = (page.folder.resolve() / page.relative).as_uri()
    return "http://localhost" + file_uri.removeprefix("file://")


def _detect_charset(head: bytes, *, xml_first: bool) -> str:
    """The page's declared charset: BOM, then ``<meta>`` and XML declaration, else utf-8.

    HTML parsers ignore the XML declaration and XML parsers ignore ``<meta>``, so which of
    the two wins depends on the media type.
    """
    for bom, charset in _BOMS:
        if head.startswith(bom):
            return charset
    declared = [_xml_charset(head), _meta_charset(head)]
    if not xml_first:
        declared.reverse()
    return next((label for label in declared if label), "utf-8")


def _meta_charset(head: bytes) -> str | None:
    """The first known charset of a ``<meta charset>`` or ``<meta http-equiv>`` tag."""
    for tag in _META_TAG.finditer(head):
        match = _META_CHARSET.search(tag.group())
        if match and (label := _known_charset(match.group(1))):
            return label
    return None


def _xml_charset(head: bytes) -> str | None:
    """The known charset of an ``<?xml ... encoding="..."?>`` declaration."""
    match = _XML_ENCODING.match(head)
    return _known_charset(match.group(1)) if match else None


def _known_charset(label: bytes) -> str | None:
    """The lowercased label, or ``None`` when Python cannot decode it (so it is ignored)."""
    name = label.decode("ascii").lower()
    try:
        codecs.lookup(name)
    except LookupError:
        return None
    return name


def _mtime_iso(path: Path) -> str:
    """The file's modification time as a WARC date (UTC, whole seconds)."""
    mtime = datetime.fromtimestamp(int(path.stat().st_mtime), tz=timezone.utc)
    return datetime_to_iso_date(mtime.replace(tzinfo=None))


def _record_id(name: str) -> str:
    """A name-based uuid, so ids are stable and independent of where the folder lives."""
    return f"<urn:uuid:{uuid.uuid5(_RECORD_ID_NAMESPACE, name)}>"
