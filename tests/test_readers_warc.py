"""Specification tests for reading WARC/WET files: good records, damaged files, payloads and charsets.

Every test builds its own files in tmp_path and runs the real reader. Bad records
must come out as reject documents (never dropped, never raising) while the good
records in the same file survive. Record types are in test_readers_warc_types.py,
ARC files in test_readers_arc.py.
"""

from __future__ import annotations

import gzip
import random
import time
from pathlib import Path

import pytest
from reader_helpers import (
    JAPANESE,
    PNG,
    RUSSIAN_PAGE,
    XHTML,
    good,
    gz_member,
    other,
    page,
    pages,
    read_all,
    rejects,
    response,
    rid,
    stat,
    url,
    warcinfo,
    with_content_length,
    write_warc,
)

# --------------------------------------------------------------------------- WARC: good path


def test_gzip_warc_yields_decoded_html_with_warc_metadata_and_skips_non_documents(tmp_path: Path) -> None:
    path = tmp_path / "crawl.warc.gz"
    request = other("req", "request", b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n")
    records = [
        warcinfo(),
        request,
        response("a", page("Hello").encode()),
        other("meta", "metadata", b"fetchTimeMs: 12\r\n", content_type="application/warc-fields"),
        other("rev", "revisit", b""),
        response("b", page("World").encode()),
    ]
    write_warc(path, records, gz=True)
    docs, reader = read_all(path)
    assert [d.id for d in docs] == [rid("a"), rid("b")]
    assert docs[0].text == page("Hello")
    assert docs[0].metadata == {
        "source": str(path),
        "url": url("a"),
        "date": "2024-01-02T03:04:05Z",
        "content_type": "text/html",
        "charset": "utf-8",
    }
    for rec_type in ("warcinfo", "request", "metadata", "revisit"):
        assert stat(reader, f"skipped_{rec_type}") == 1
    assert stat(reader, "documents") == 2 and stat(reader, "documents_warc") == 2


def test_wet_conversion_records_are_plain_text_documents(tmp_path: Path) -> None:
    path = tmp_path / "crawl.warc.wet.gz"
    text = "Plain extracted text.\nSecond line with ünïcödé."
    write_warc(
        path, [warcinfo(), other("c1", "conversion", text.encode(), content_type="text/plain")], gz=True
    )
    docs, _ = read_all(path)
    assert [(d.id, d.text, d.metadata["content_type"]) for d in docs] == [(rid("c1"), text, "text/plain")]


def test_single_member_gzip_warc_is_read_completely(tmp_path: Path) -> None:
    path = tmp_path / "whole.warc.gz"
    path.write_bytes(gzip.compress(b"".join(pages(4, 200))))
    docs, _ = read_all(path)
    assert [d.id for d in good(docs)] == [rid(f"p{i}") for i in range(4)]


def test_chunked_and_gzip_encoded_http_bodies_are_decoded(tmp_path: Path) -> None:
    html = page("encoded body").encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (html[:10], html[10:])) + b"0\r\n\r\n"
    path = tmp_path / "enc.warc"
    write_warc(
        path,
        [
            response("chunked", chunked, http_headers=[("Transfer-Encoding", "chunked")]),
            response("gz", gzip.compress(html), http_headers=[("Content-Encoding", "gzip")]),
        ],
        gz=False,
    )
    docs, _ = read_all(path)
    assert [(d.id, d.text) for d in docs] == [(rid("chunked"), html.decode()), (rid("gz"), html.decode())]


# --------------------------------------------------------------------------- WARC: damaged files


def test_truncated_gzip_warc_keeps_records_before_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "cut.warc.gz"
    records = pages(5)
    offsets = write_warc(path, records, gz=True)
    data = path.read_bytes()
    path.write_bytes(data[: offsets[3] + (offsets[4] - offsets[3]) // 2])
    docs, reader = read_all(path)
    assert [d.id for d in good(docs)] == [rid("p0"), rid("p1"), rid("p2")]
    assert rejects(docs) == [(rid("p3"), "truncated_file")]
    assert "unusable_file" not in docs[-1].metadata
    assert f"byte {offsets[3]}" in docs[-1].metadata["reject_detail"]
    assert stat(reader, "rejected_truncated_file") == 1


def test_corrupt_bytes_in_gzip_warc_resync_to_the_next_member(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.warc.gz"
    offsets = write_warc(path, pages(5), gz=True)
    data = bytearray(path.read_bytes())
    middle = (offsets[2] + offsets[3]) // 2
    data[middle : middle + 40] = random.Random(7).randbytes(40)
    path.write_bytes(bytes(data))
    docs, _ = read_all(path)
    assert [d.id for d in good(docs)] == [rid("p0"), rid("p1"), rid("p3"), rid("p4")]
    [(bad_id, reason)] = rejects(docs)
    assert reason == "corrupt_gzip" and bad_id in (rid("p2"), f"file:{path}@{offsets[2]}")
    detail = next(d for d in docs if d.id == bad_id).metadata["reject_detail"]
    assert f"byte {offsets[2]}" in detail and f"byte {offsets[3]}" in detail


def test_garbage_gzip_member_between_records_is_skipped(tmp_path: Path) -> None:
    records = pages(3, 200)
    members = [gz_member(r) for r in records]
    junk = b"\x1f\x8b\x08\x00" + b"not really deflate data" * 3
    path = tmp_path / "junk.warc.gz"
    path.write_bytes(members[0] + junk + members[1] + members[2])
    docs, _ = read_all(path)
    assert [d.id for d in good(docs)] == [rid("p0"), rid("p1"), rid("p2")]
    assert rejects(docs) == [(f"file:{path}@{len(members[0])}", "corrupt_gzip")]


def test_garbage_between_plain_warc_records_is_skipped_with_its_offset(tmp_path: Path) -> None:
    records = pages(3, 200)
    path = tmp_path / "junk.warc"
    junk = b"this is not a warc record\r\n\x00\x01\x02 garbage\r\n"
    path.write_bytes(records[0] + junk + records[1] + records[2])
    docs, _ = read_all(path)
    assert [d.id for d in good(docs)] == [rid("p0"), rid("p1"), rid("p2")]
    assert rejects(docs) == [(f"file:{path}@{len(records[0])}", "invalid_warc_record")]


def test_corrupt_record_header_in_plain_warc_loses_only_that_record(tmp_path: Path) -> None:
    records = pages(3, 200)
    broken = b"XXXX" + records[1][4:]  # "WARC/1.0" -> "XXXX1.0": the record is unrecognisable
    path = tmp_path / "broken.warc"
    path.write_bytes(records[0] + broken + records[2])
    docs, _ = read_all(path)
    assert [d.id for d in good(docs)] == [rid("p0"), rid("p2")]
    assert rejects(docs) == [(f"file:{path}@{len(records[0])}", "invalid_warc_record")]


def test_truncated_plain_warc_keeps_records_before_the_cut(tmp_path: Path) -> None:
    records = pages(3)
    path = tmp_path / "cut.warc"
    path.write_bytes(records[0] + records[1] + records[2][: len(records[2]) - 500])
    docs, _ = read_all(path)
    assert [d.id for d in good(docs)] == [rid("p0"), rid("p1")]
    assert rejects(docs) == [(rid("p2"), "truncated_file")]
    assert docs[-1].text.startswith("<!DOCTYPE html>") and "page 2" in docs[-1].text


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    "delta", [-40, +7, +40, +5000], ids=["too_short", "ends_inside_next_warc_line", "too_long", "far_too_long"]
)
def test_wrong_content_length_is_rejected_and_neighbours_survive(tmp_path: Path, gz: bool, delta: int) -> None:
    records = pages(4, 300)
    records[1] = with_content_length(records[1], delta)
    path = tmp_path / ("cl.warc.gz" if gz else "cl.warc")
    write_warc(path, records, gz=gz)
    docs, _ = read_all(path)
    assert [d.id for d in good(docs)] == [rid("p0"), rid("p2"), rid("p3")]
    assert rejects(docs) == [(rid("p1"), "bad_content_length")]
    salvaged = docs[1].text
    assert "page 1" in salvaged and salvaged.rstrip().endswith("</html>")


def test_zero_byte_warc_is_an_unusable_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.warc.gz"
    path.write_bytes(b"")
    docs, _ = read_all(path)
    assert [(d.id, d.text, d.metadata["reject_reason"], d.metadata["unusable_file"]) for d in docs] == [
        (f"file:{path}", "", "empty_file", True)
    ]


def test_warc_gz_that_is_not_gzip_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "fake.warc.gz"
    path.write_bytes(b"<html>an error page saved under the wrong name</html>")
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "not_gzip")] and docs[0].metadata["unusable_file"] is True


def test_plain_warc_misnamed_gz_is_read_as_plain(tmp_path: Path) -> None:
    path = tmp_path / "plain.warc.gz"
    write_warc(path, pages(2, 200), gz=False)
    docs, reader = read_all(path)
    assert [d.id for d in good(docs)] == [rid("p0"), rid("p1")] and stat(reader, "misnamed_gzip") == 1


def test_file_without_any_warc_record_is_one_unusable_document(tmp_path: Path) -> None:
    path = tmp_path / "notes.warc"
    path.write_bytes(b"just some notes\nthat are not a WARC file\n" * 10)
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "not_warc")] and docs[0].metadata["unusable_file"] is True


def test_gzip_warc_corrupt_from_the_start_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "bad.warc.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + random.Random(3).randbytes(500))
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "corrupt_gzip")] and docs[0].metadata["unusable_file"] is True


# --------------------------------------------------------------------------- WARC: payloads


def test_non_http_response_records_are_rejected(tmp_path: Path) -> None:
    dns = other("dns", "response", b"20240102030405\nexample.com. 300 IN A 1.2.3.4\n", target="dns:example.com")
    raw = other("raw", "resource", b"<html><body>no HTTP headers</body></html>", content_type="text/html")
    raw = raw.replace(b"WARC-Type: resource", b"WARC-Type: response", 1)
    path = tmp_path / "nonhttp.warc"
    write_warc(path, [dns, raw, response("ok", page("fine").encode())], gz=False)
    docs, _ = read_all(path)
    assert rejects(docs) == [(rid("dns"), "not_http"), (rid("raw"), "not_http")]
    assert [d.id for d in good(docs)] == [rid("ok")]
    assert all(d.text == "" for d in docs if "reject_reason" in d.metadata)


@pytest.mark.parametrize(
    "payload_type, content_type",
    [
        ("application/xhtml+xml", "application/xhtml+xml"),
        (None, "application/xhtml+xml; charset=utf-8"),
        ("text/html", "text/xml"),
        (None, "text/xml"),  # what libmagic says; datatrove's WarcReader drops these
        (None, "application/xml"),
        (None, None),  # no payload type header and no HTTP Content-Type at all
    ],
)
def test_xhtml_pages_are_kept(tmp_path: Path, payload_type: str | None, content_type: str | None) -> None:
    path = tmp_path / "xhtml.warc.gz"
    write_warc(path, [response("x", XHTML.encode(), content_type, payload_type)], gz=True)
    docs, _ = read_all(path)
    assert [(d.id, d.text, d.metadata["charset"]) for d in docs] == [(rid("x"), XHTML, "utf-8")]


@pytest.mark.parametrize(
    "body, payload_type, content_type",
    [
        (PNG, "image/png", "image/png"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", None, "application/pdf"),
        (PNG, None, None),
        (b"body { color: red }", None, "text/css"),
    ],
)
def test_non_html_responses_are_rejected_not_html(
    tmp_path: Path, body: bytes, payload_type: str | None, content_type: str | None
) -> None:
    path = tmp_path / "media.warc"
    write_warc(path, [response("m", body, content_type, payload_type), response("ok", page("x").encode())], gz=False)
    docs, _ = read_all(path)
    assert rejects(docs) == [(rid("m"), "not_html")] and docs[0].text == ""
    assert [d.id for d in good(docs)] == [rid("ok")]


CHINESE = "这是一个中文网页，用于测试编码检测。" * 3
POLISH_PAGE = page("Strona po polsku: zażółć gęślą jaźń", '<meta charset="iso-8859-2">')
SJIS_XHTML = XHTML.replace("UTF-8", "Shift_JIS").replace("content", JAPANESE)
LATIN1 = "text/html; charset=iso-8859-1"


@pytest.mark.parametrize(
    "body, content_type, charset, expected",
    [
        pytest.param(page("Café — naïve").encode(), LATIN1, "utf-8", "Café — naïve", id="utf8_labelled_latin1"),
        pytest.param(
            page("Café crème brûlée").encode("latin-1"), "text/html; charset=utf-8", "cp1252", "Café crème brûlée",
            id="latin1_labelled_utf8",
        ),
        pytest.param(page(JAPANESE).encode("shift_jis"), "text/html", "cp932", JAPANESE, id="shift_jis_undeclared"),
        pytest.param(page(JAPANESE).encode("shift_jis"), LATIN1, "cp932", JAPANESE, id="shift_jis_labelled_latin1"),
        pytest.param(page(CHINESE).encode("gbk"), LATIN1, "gb18030", CHINESE, id="gbk_labelled_latin1"),
        pytest.param(page("Grüße aus Köln").encode(), None, "utf-8", "Grüße aus Köln", id="no_content_type"),
        pytest.param(page("Grüße aus Köln").encode(), "text/html", "utf-8", "Grüße aus Köln", id="no_charset"),
        pytest.param(RUSSIAN_PAGE.encode("cp1251"), "text/html", "cp1251", "Русская страница", id="meta_http_equiv"),
        pytest.param(POLISH_PAGE.encode("iso-8859-2"), None, "iso8859-2", "zażółć", id="meta_charset"),
        pytest.param(SJIS_XHTML.encode("shift_jis"), "application/xhtml+xml", "cp932", JAPANESE, id="xml_declaration"),
    ],
)
def test_charsets_are_detected_in_the_documented_order(
    tmp_path: Path, body: bytes, content_type: str | None, charset: str, expected: str
) -> None:
    path = tmp_path / "charset.warc"
    write_warc(path, [response("c", body, content_type)], gz=False)
    [doc], _ = read_all(path)
    assert "reject_reason" not in doc.metadata
    assert doc.metadata["charset"] == charset and expected in doc.text


def test_mixed_encoding_body_is_rejected_invalid_encoding_with_salvaged_text(tmp_path: Path) -> None:
    body = page("Grüße aus Köln und schöne Tage in München. " * 20).encode().replace("ö".encode(), b"\xf6")
    path = tmp_path / "mixed.warc"
    write_warc(path, [response("mixed", body), response("ok", page("x").encode())], gz=False)
    docs, _ = read_all(path)
    assert rejects(docs) == [(rid("mixed"), "invalid_encoding")]
    assert "Grüße" in docs[0].text and "\ufffd" in docs[0].text and docs[0].metadata["charset"] == "utf-8"


def test_almost_utf8_with_a_few_broken_bytes_stays_utf8(tmp_path: Path) -> None:
    body = page("Grüße aus Köln und schöne Tage in München. " * 20).encode() + b"\xff"
    path = tmp_path / "almost.warc"
    write_warc(path, [response("a", body, "text/html")], gz=False)
    [doc], reader = read_all(path)
    assert "reject_reason" not in doc.metadata and doc.metadata["charset"] == "utf-8" and "München" in doc.text
    assert stat(reader, "decode_replacements") == 1


@pytest.mark.parametrize(
    "body, detail",
    [(PNG, "PNG signature"), (random.Random(5).randbytes(4000), "control bytes")],
    ids=["png", "random_bytes"],
)
def test_binary_bodies_labelled_html_are_rejected(tmp_path: Path, body: bytes, detail: str) -> None:
    path = tmp_path / "binary.warc.gz"
    write_warc(path, [response("bin", body, "text/html", "text/html"), response("ok", page("x").encode())], gz=True)
    docs, _ = read_all(path)
    assert rejects(docs) == [(rid("bin"), "binary_body")] and docs[0].text == ""
    assert detail in docs[0].metadata["reject_detail"]
    assert [d.id for d in good(docs)] == [rid("ok")]


def test_nul_bytes_in_good_html_are_stripped_and_counted(tmp_path: Path) -> None:
    body = page("hello\x00 world\x00\x00").encode()
    path = tmp_path / "nul.warc"
    write_warc(path, [response("nul", body)], gz=False)
    [doc], reader = read_all(path)
    assert "reject_reason" not in doc.metadata and doc.text == page("hello world")
    assert stat(reader, "nul_bytes_stripped") == 3


@pytest.mark.parametrize("body", [b"", b"   \r\n\t  \n"], ids=["empty", "whitespace"])
def test_empty_bodies_are_rejected_empty_body(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "empty_body.warc"
    write_warc(path, [response("e", body), response("ok", page("x").encode())], gz=False)
    docs, _ = read_all(path)
    assert rejects(docs) == [(rid("e"), "empty_body")] and [d.id for d in good(docs)] == [rid("ok")]


def test_30mb_page_is_kept_and_read_in_linear_time(tmp_path: Path) -> None:
    paragraph = b"<p>" + b"lorem ipsum dolor sit amet, consectetur adipiscing elit " * 40 + b"</p>\n"
    body = b"<!DOCTYPE html><html><body>" + paragraph * (30_000_000 // len(paragraph)) + b"</body></html>"
    path = tmp_path / "huge.warc.gz"
    path.write_bytes(gz_member(response("huge", body), level=1) + gz_member(response("after", page("x").encode())))
    started = time.perf_counter()
    docs, _ = read_all(path)
    elapsed = time.perf_counter() - started
    assert [d.id for d in good(docs)] == [rid("huge"), rid("after")]
    assert len(docs[0].text) == len(body) > 29_000_000
    assert elapsed < 10, f"reading a 30 MB page took {elapsed:.1f}s"


def test_deeply_nested_html_passes_through_unchanged(tmp_path: Path) -> None:
    html = "<html><body>" + "<div>" * 10_000 + "deep" + "</div>" * 10_000 + "</body></html>"
    path = tmp_path / "deep.warc"
    write_warc(path, [response("deep", html.encode())], gz=False)
    [doc], _ = read_all(path)
    assert doc.text == html
