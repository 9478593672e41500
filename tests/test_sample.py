"""pipelines.ingest.sample: HTML folders packed into one deterministic, atomically written WARC."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from loguru import logger
from warcio.archiveiterator import ArchiveIterator

from pipelines.ingest import sample
from pipelines.ingest.sample import (
    DEBIAN_DOC_PACKAGES,
    DEFAULT_MAX_PAGES_PER_FOLDER,
    SampleSourceMissing,
    default_sources,
    pack_html,
    select_pages,
)

MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z

# relative path -> (raw bytes, charset the WARC must declare, payload type)
PAGES: dict[str, tuple[bytes, str, str]] = {
    "index.html": (
        b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Home</title></head>'
        b"<body><p>Hello</p></body></html>",
        "utf-8",
        "text/html",
    ),
    "caf\u00e9 men\u00fc \u00fc.html": (
        '<html><head><meta charset="UTF-8"></head><body>Café — 東京</body></html>'.encode(),
        "utf-8",
        "text/html",
    ),
    "latin1.htm": (
        b'<html><head><meta charset="iso-8859-1"></head><body>Caf\xe9 cr\xe8me</body></html>',
        "iso-8859-1",
        "text/html",
    ),
    "sjis.html": (
        b'<html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">'
        b"</head><body>" + "日本語のページ".encode("shift_jis") + b"</body></html>",
        "shift_jis",
        "text/html",
    ),
    "page.xhtml": (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml">'
        b"<head><title>X</title></head><body><p>XHTML</p></body></html>",
        "utf-8",
        "application/xhtml+xml",
    ),
    "sub/nested/deep.html": (b"<html><body>No charset</body></html>", "utf-8", "text/html"),
    "late-meta.html": (  # like browsers, only the first 1024 bytes are searched
        b"<html><head><!--" + b" " * 1024 + b'--><meta charset="iso-8859-1"></head></html>',
        "utf-8",
        "text/html",
    ),
}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A small folder of HTML pages in several charsets, plus files that are not pages."""
    root = tmp_path / "site"
    for relative, (content, _, _) in PAGES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.utime(path, (MTIME, MTIME))
    (root / "notes.txt").write_text("not a page")
    (root / "style.css").write_text("p {}")
    (root / "folder.html").mkdir()  # a directory named like a page is not one
    return root


def read_records(warc: Path) -> list[tuple[str, dict[str, str], dict[str, str] | None, bytes]]:
    """(type, WARC headers, HTTP headers, payload) of every record, as a reader sees them."""
    with warc.open("rb") as stream:
        return [
            (
                record.rec_type,
                dict(record.rec_headers.headers),
                dict(record.http_headers.headers) if record.http_headers else None,
                record.content_stream().read(),
            )
            for record in ArchiveIterator(stream)
        ]


def responses(warc: Path) -> dict[str, tuple[dict[str, str], dict[str, str] | None, bytes]]:
    """The response records by target URI."""
    return {
        warc_headers["WARC-Target-URI"]: (warc_headers, http_headers, payload)
        for rec_type, warc_headers, http_headers, payload in read_records(warc)
        if rec_type == "response"
    }


def uri_of(path: Path) -> str:
    return "http://localhost" + path.resolve().as_uri().removeprefix("file://")


def test_warcinfo_then_one_response_per_page(site: Path, tmp_path: Path) -> None:
    report = pack_html([site], tmp_path / "out" / "sample.warc.gz")

    records = read_records(Path(report.warc_path))
    assert [r[0] for r in records] == ["warcinfo"] + ["response"] * len(PAGES)
    assert report.pages == len(PAGES)
    assert report.bytes == sum(len(content) for content, _, _ in PAGES.values())
    assert report.skipped == 0
    assert report.by_folder == {str(site): len(PAGES)}
    record_ids = [warc_headers["WARC-Record-ID"] for _, warc_headers, _, _ in records]
    assert len(set(record_ids)) == len(records)
    assert all(rid.startswith("<urn:uuid:") and rid.endswith(">") for rid in record_ids)


def test_headers_name_the_page_its_type_and_charset(site: Path, tmp_path: Path) -> None:
    by_uri = responses(Path(pack_html([site], tmp_path / "s.warc.gz").warc_path))

    assert set(by_uri) == {uri_of(site / relative) for relative in PAGES}
    assert uri_of(site / "café menü ü.html").endswith("/caf%C3%A9%20men%C3%BC%20%C3%BC.html")
    for relative, (content, charset, media_type) in PAGES.items():
        warc_headers, http_headers, _ = by_uri[uri_of(site / relative)]
        assert warc_headers["WARC-Identified-Payload-Type"] == media_type
        assert warc_headers["WARC-Date"] == "2023-11-14T22:13:20Z"
        assert http_headers is not None, "http:// target URIs let readers parse HTTP headers"
        assert http_headers["Content-Type"] == f"{media_type}; charset={charset}"
        assert http_headers["Content-Length"] == str(len(content))


def test_payload_is_the_raw_file(site: Path, tmp_path: Path) -> None:
    by_uri = responses(Path(pack_html([site], tmp_path / "s.warc.gz").warc_path))

    for relative, (content, charset, _) in PAGES.items():
        payload = by_uri[uri_of(site / relative)][2]
        assert payload == content  # no HTTP header block, no re-encoding
        payload.decode(charset)


def test_same_input_gives_identical_bytes(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.warc.gz"
    pack_html([site], out)
    first = out.read_bytes()
    pack_html([site], out)

    assert out.read_bytes() == first


def test_failed_write_leaves_no_partial_file(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "out"
    out = out_dir / "s.warc.gz"
    pack_html([site], out)
    previous = out.read_bytes()
    build_record = sample._response_record
    calls = []

    def fail_from_third_page(*args: object) -> object:
        calls.append(args)
        if len(calls) >= 3:
            raise RuntimeError("disk full")
        return build_record(*args)

    monkeypatch.setattr(sample, "_response_record", fail_from_third_page)
    with pytest.raises(RuntimeError, match="disk full"):
        pack_html([site], out)

    assert out.read_bytes() == previous
    assert sorted(p.name for p in out_dir.iterdir()) == ["s.warc.gz"]
    with pytest.raises(RuntimeError):
        pack_html([site], out_dir / "new.warc.gz")
    assert sorted(p.name for p in out_dir.iterdir()) == ["s.warc.gz"]


def test_unreadable_pages_are_skipped_and_logged(site: Path, tmp_path: Path) -> None:
    (site / "gone.html").symlink_to(site / "missing-target.html")
    messages: list[str] = []
    handler = logger.add(messages.append, level="WARNING", format="{message}")
    try:
        report = pack_html([site], tmp_path / "s.warc.gz")
    finally:
        logger.remove(handler)

    assert report.skipped == 1
    assert report.pages == len(PAGES)
    assert uri_of(site / "gone.html") not in responses(Path(report.warc_path))
    assert any("gone.html" in message for message in messages)


def test_progress_counts_every_page(site: Path, tmp_path: Path) -> None:
    (site / "gone.html").symlink_to(site / "missing-target.html")
    calls: list[tuple[int, int]] = []
    pack_html([site], tmp_path / "s.warc.gz", progress=lambda *call: calls.append(call))

    total = len(PAGES) + 1
    assert calls == [(done, total) for done in range(total + 1)]


def test_cap_applies_per_language_group_and_spreads_evenly(tmp_path: Path) -> None:
    manual = tmp_path / "manual"  # debian-reference layout: translations side by side
    manual.mkdir()
    for chapter in range(10):
        for lang in ("en", "ja", "zh-cn"):
            (manual / f"ch{chapter:02}.{lang}.html").write_text(f"<p>{chapter} {lang}</p>")
    (manual / "index.html").write_text("<p>choose a language</p>")
    tree = tmp_path / "tree"  # python3-doc layout: one language, nested folders
    for name in ("a/one.html", "a/two.html", "b/three.html", "c/four.html", "c/os.path.html"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("<p>page</p>")

    picked = select_pages([manual, tree], max_pages_per_folder=2)

    assert [p.relative_to(tmp_path).as_posix() for p in picked] == [
        "manual/ch00.en.html",
        "manual/ch00.ja.html",
        "manual/ch00.zh-cn.html",
        "manual/ch05.en.html",
        "manual/ch05.ja.html",
        "manual/ch05.zh-cn.html",
        "manual/index.html",
        "tree/a/one.html",
        "tree/b/three.html",
    ]
    assert len(select_pages([manual, tree], None)) == 31 + 5


@pytest.mark.parametrize(
    ("head", "xhtml", "charset"),
    [
        (b"\xef\xbb\xbf<meta charset='iso-8859-1'>", False, "utf-8"),  # a BOM wins
        (b"\xff\xfe<\x00h\x00", False, "utf-16le"),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><meta charset="utf-8">', False, "utf-8"),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><meta charset="utf-8">', True, "iso-8859-1"),
        (b'<?xml version="1.0" encoding="EUC-JP"?><html>', False, "euc-jp"),
        (b'<meta charset="no-such-charset"><meta charset="koi8-r">', False, "koi8-r"),
        (b"<html><body><code>Content-Type: text/plain; charset=ISO-2022-JP</code>", False, "utf-8"),
    ],
)
def test_charset_sniffing(head: bytes, xhtml: bool, charset: str) -> None:
    assert sample._detect_charset(head, xml_first=xhtml) == charset


def test_folder_without_html_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty folder"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pages here")

    with pytest.raises(SampleSourceMissing, match="empty folder"):
        pack_html([empty], tmp_path / "s.warc.gz")
    with pytest.raises(SampleSourceMissing, match="does-not-exist"):
        select_pages([tmp_path / "does-not-exist"], None)
    with pytest.raises(SampleSourceMissing):
        select_pages([], None)
    assert not (tmp_path / "s.warc.gz").exists()


def test_missing_debian_docs_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DEBIAN_REFERENCE_DIR", "DEBIAN_HANDBOOK_DIR", "PYTHON_DOC_DIR"):
        monkeypatch.setattr(sample, name, tmp_path / "absent" / name)

    with pytest.raises(SampleSourceMissing) as error:
        default_sources()

    message = str(error.value)
    assert "apt-get install" in message and "folder" in message
    assert all(package in message for package in DEBIAN_DOC_PACKAGES)


@pytest.mark.skipif(
    not sample.DEBIAN_REFERENCE_DIR.is_dir(),
    reason="Debian documentation not installed (apt-get install debian-reference-en ...)",
)
def test_real_debian_docs(tmp_path: Path) -> None:
    folders = default_sources()
    reference = select_pages([sample.DEBIAN_REFERENCE_DIR], None)
    languages = {sample._language_group(page) for page in reference} - {""}
    locales = {folder.name for folder in folders if folder.parent == sample.DEBIAN_HANDBOOK_DIR}

    assert sample.DEBIAN_REFERENCE_DIR in folders and len(languages) >= 2
    if len(languages) == 8 and len(locales) == 26 and sample.PYTHON_DOC_DIR.is_dir():
        # every package of DEBIAN_DOC_PACKAGES installed: the default sample is in range
        assert 1200 <= len(select_pages(folders, DEFAULT_MAX_PAGES_PER_FOLDER)) <= 1600

    report = pack_html(folders, tmp_path / "debian.warc.gz", max_pages_per_folder=2)

    assert report.skipped == 0
    assert set(report.by_folder) == {str(folder) for folder in folders}
    assert report.pages == len(select_pages(folders, 2)) == sum(report.by_folder.values())
    by_uri = responses(Path(report.warc_path))
    assert len(by_uri) == report.pages
    for page in select_pages(folders, 2):
        warc_headers, http_headers, payload = by_uri[uri_of(page)]
        assert payload == page.read_bytes()
        assert http_headers is not None
        assert http_headers["Content-Type"] == "text/html; charset=utf-8"
