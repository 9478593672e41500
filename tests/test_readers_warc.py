"""Specification tests for reading WARC/WET/ARC files: good records, damaged files, payloads and charsets.

Every test builds its own files in tmp_path and runs the real reader. Bad records
must come out as reject documents (never dropped, never raising) while the good
records in the same file survive; every response, resource and conversion record
ends as a document or a reject, and records without content are counted by type.
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
    arc_filedesc,
    arc_pages,
    arc_record,
    good,
    gz_member,
    http_response,
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
    without_header,
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


XHTML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
    "<head><title>XHTML page</title></head>\n<body><p>Strict XHTML content &amp; more.</p></body>\n</html>\n"
)


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
RUSSIAN_PAGE = page(
    "Русская страница для проверки", '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
)
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


# --------------------------------------------------------------------------- WARC: resource and conversion records

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj"


def test_a_resource_record_holding_html_becomes_a_document(tmp_path: Path) -> None:
    html = page("Saved by wget, Browsertrix or pywb")
    path = tmp_path / "pages.warc.gz"
    write_warc(path, [warcinfo(), other("r", "resource", html.encode(), content_type="text/html; charset=utf-8")], gz=True)
    docs, reader = read_all(path)
    assert [(d.id, d.text) for d in docs] == [(rid("r"), html)]
    assert docs[0].metadata == {
        "source": str(path),
        "url": url("r"),
        "date": "2024-01-02T03:04:05Z",
        "content_type": "text/html",
        "charset": "utf-8",
    }
    assert stat(reader, "documents") == 1 and stat(reader, "skipped_resource") == 0


@pytest.mark.parametrize("rec_type", ["resource", "conversion"])
@pytest.mark.parametrize(
    "body, content_type",
    [
        pytest.param(XHTML.encode(), "application/xhtml+xml", id="xhtml"),
        pytest.param(RUSSIAN_PAGE.encode("cp1251"), "text/html", id="meta_http_equiv"),
        pytest.param(page("Café crème").encode("latin-1"), "text/html; charset=iso-8859-1", id="declared_charset"),
        pytest.param(page(JAPANESE).encode("shift_jis"), "text/html", id="shift_jis_undeclared"),
        pytest.param(page("hello\x00 world").encode(), "text/html", id="nul_bytes"),
    ],
)
def test_html_in_resource_and_conversion_records_is_read_exactly_like_a_response(
    tmp_path: Path, rec_type: str, body: bytes, content_type: str
) -> None:
    path = tmp_path / "same.warc"
    write_warc(path, [response("resp", body, content_type), other("rec", rec_type, body, content_type=content_type)], gz=False)
    [from_response, from_record], _ = read_all(path)
    assert "reject_reason" not in from_record.metadata and from_record.id == rid("rec")
    assert from_record.text == from_response.text
    assert {**from_record.metadata, "url": None} == {**from_response.metadata, "url": None}
    assert from_record.metadata["content_type"] == "text/html" and from_record.metadata["url"] == url("rec")


@pytest.mark.parametrize("rec_type", ["resource", "conversion"])
@pytest.mark.parametrize(
    "body, content_type, reason",
    [
        pytest.param(PNG, "image/png", "not_html", id="image"),
        pytest.param(PDF, "application/pdf", "not_html", id="pdf"),
        pytest.param(b'{"url": "http://example.com/", "title": "t"}', "application/json", "not_html", id="pageinfo_json"),
        pytest.param(PNG, "text/html", "binary_body", id="png_labelled_html"),
        pytest.param(b"", "image/png", "not_html", id="empty_image"),
        pytest.param(b"  \r\n", "text/html", "empty_body", id="blank_html"),
    ],
)
def test_resource_and_conversion_payloads_that_are_not_pages_are_rejected_like_responses(
    tmp_path: Path, rec_type: str, body: bytes, content_type: str, reason: str
) -> None:
    path = tmp_path / "media.warc.gz"
    records = [
        response("resp", body, content_type),
        other("rec", rec_type, body, content_type=content_type),
        other("ok", rec_type, page("kept").encode(), content_type="text/html"),
    ]
    write_warc(path, records, gz=True)
    docs, reader = read_all(path)
    assert rejects(docs) == [(rid("resp"), reason), (rid("rec"), reason)]
    assert docs[1].text == "" and docs[1].metadata["url"] == url("rec")
    assert docs[1].metadata["reject_detail"] == docs[0].metadata["reject_detail"]
    assert [d.id for d in good(docs)] == [rid("ok")]
    assert stat(reader, f"rejected_{reason}") == 2


def test_a_plain_text_resource_is_rejected_not_html_like_a_plain_text_response(tmp_path: Path) -> None:
    log = b"--2024-01-02 03:04:05--  http://example.com/\nResolving example.com... 93.184.216.34\n"
    path = tmp_path / "wget.warc"
    write_warc(path, [other("log", "resource", log, target="metadata://gnu.org/software/wget/warc/wget.log",
                            content_type="text/plain")], gz=False)
    docs, _ = read_all(path)
    assert rejects(docs) == [(rid("log"), "not_html")]
    assert docs[0].metadata["url"] == "metadata://gnu.org/software/wget/warc/wget.log"
    assert "does not look like HTML" in docs[0].metadata["reject_detail"]


def test_a_conversion_holding_html_becomes_an_html_document(tmp_path: Path) -> None:
    html = page("Converted to HTML")
    path = tmp_path / "converted.warc"
    write_warc(path, [other("c", "conversion", html.encode(), content_type="text/html")], gz=False)
    [doc], _ = read_all(path)
    assert (doc.id, doc.text, doc.metadata["content_type"]) == (rid("c"), html, "text/html")
    assert "reject_reason" not in doc.metadata


@pytest.mark.parametrize("labelled", [True, False], ids=["text_plain", "unlabelled"])
def test_plain_text_conversions_are_documents_even_when_they_mention_tags(tmp_path: Path, labelled: bool) -> None:
    text = "How to write a page: open with <html>, put the title in <head> and the text in <body><p>."
    record = other("c", "conversion", text.encode("latin-1"), content_type="text/plain; charset=iso-8859-1")
    if not labelled:
        record = without_header(record, "Content-Type")
    path = tmp_path / "text.warc.wet.gz"
    write_warc(path, [record], gz=True)
    [doc], _ = read_all(path)
    assert (doc.id, doc.text, doc.metadata["content_type"]) == (rid("c"), text, "text/plain")
    assert doc.metadata["url"] == url("c") and doc.metadata["date"] == "2024-01-02T03:04:05Z"


def test_every_content_record_ends_as_a_document_or_a_rejection(tmp_path: Path) -> None:
    content = [
        response("page", page("a page").encode()),
        response("photo", PNG, "image/png"),
        other("saved", "resource", page("saved page").encode(), content_type="text/html"),
        other("icon", "resource", PNG, content_type="image/png"),
        other("wet", "conversion", b"Extracted text of a page.", content_type="text/plain"),
        other("pdf", "conversion", PDF, content_type="application/pdf"),
    ]
    path = tmp_path / "mixed.warc.gz"
    write_warc(path, [warcinfo(), *content, other("req", "request", b"GET / HTTP/1.1\r\n\r\n")], gz=True)
    docs, reader = read_all(path)
    assert [(d.id, d.metadata.get("reject_reason")) for d in docs] == [
        (rid("page"), None),
        (rid("photo"), "not_html"),
        (rid("saved"), None),
        (rid("icon"), "not_html"),
        (rid("wet"), None),
        (rid("pdf"), "not_html"),
    ]
    assert stat(reader, "documents") + stat(reader, "rejected") == len(content)
    assert stat(reader, "skipped_warcinfo") == stat(reader, "skipped_request") == 1


# --------------------------------------------------------------------------- WARC: records that hold no document


def test_records_without_content_are_counted_by_type_in_the_step_stats(tmp_path: Path) -> None:
    records = [
        warcinfo(),
        other("req", "request", b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        other("meta", "metadata", b"fetchTimeMs: 12\r\n", content_type="application/warc-fields"),
        other("rev1", "revisit", b""),
        other("rev2", "revisit", b""),
        other("cont", "continuation", b"rest of a segmented record"),
        other("odd", "x-custom", b"a type the standard does not define"),
        without_header(other("untyped", "metadata", b"no WARC-Type header"), "WARC-Type"),
        response("ok", page("the only document").encode()),
    ]
    path = tmp_path / "kinds.warc.gz"
    write_warc(path, records, gz=True)
    docs, reader = read_all(path)
    assert [d.id for d in docs] == [rid("ok")]
    expected = {"warcinfo": 1, "request": 1, "metadata": 1, "revisit": 2, "continuation": 1, "other_type": 1, "untyped": 1}
    assert {name: stat(reader, f"skipped_{name}") for name in expected} == expected
    assert sorted(name for name in reader.stats.stats if name.startswith("skipped_")) == sorted(
        f"skipped_{name}" for name in expected
    )


# --------------------------------------------------------------------------- ARC files


@pytest.mark.parametrize("gz", [False, True], ids=["arc", "arc_gz"])
def test_an_arc_file_is_read_like_a_warc_with_one_document_or_rejection_per_capture(tmp_path: Path, gz: bool) -> None:
    records = [
        arc_filedesc(),
        arc_record(url("a"), http_response(page("Captured in 1996").encode())),
        arc_record(url("logo.gif"), http_response(b"GIF89a\x01\x00\x01\x00", "image/gif"), "image/gif"),
        arc_record("dns:example.com", b"19961104142103\nexample.com. 300 IN A 93.184.216.34\n", "text/dns"),
        arc_record(url("no-type"), http_response(page("No type anywhere").encode(), None), "no-type"),
    ]
    path = tmp_path / ("old.arc.gz" if gz else "old.arc")
    offsets = write_warc(path, records, gz=gz)
    docs, reader = read_all(path)
    assert [(d.id, d.metadata.get("reject_reason")) for d in docs] == [
        (f"file:{path}@{offsets[1]}", None),
        (f"file:{path}@{offsets[2]}", "not_html"),
        (f"file:{path}@{offsets[3]}", "not_http"),
        (f"file:{path}@{offsets[4]}", None),
    ]
    assert docs[0].text == page("Captured in 1996") and docs[3].text == page("No type anywhere")
    assert docs[0].metadata == {
        "source": str(path),
        "url": url("a"),
        "date": "1996-11-04T14:21:03Z",
        "content_type": "text/html",
        "charset": "utf-8",
    }
    assert stat(reader, "skipped_warcinfo") == 1 and stat(reader, "input_files_warc") == 1
    assert stat(reader, "documents_warc") == 2 and stat(reader, "rejected") == 2


def test_a_truncated_arc_gz_keeps_the_records_before_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "cut.arc.gz"
    offsets = write_warc(path, arc_pages(4), gz=True)
    data = path.read_bytes()
    path.write_bytes(data[: (offsets[3] + offsets[4]) // 2])
    docs, reader = read_all(path)
    assert [d.metadata["url"] for d in good(docs)] == [url("p0"), url("p1")]
    assert rejects(docs) == [(f"file:{path}@{offsets[3]}", "truncated_file")]
    assert stat(reader, "rejected_truncated_file") == 1


def test_a_corrupt_gzip_member_in_an_arc_gz_is_skipped_to_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.arc.gz"
    offsets = write_warc(path, arc_pages(4), gz=True)
    data = bytearray(path.read_bytes())
    middle = (offsets[2] + offsets[3]) // 2
    data[middle : middle + 40] = random.Random(7).randbytes(40)
    path.write_bytes(bytes(data))
    docs, _ = read_all(path)
    assert [d.metadata["url"] for d in good(docs)] == [url("p0"), url("p2"), url("p3")]
    assert rejects(docs) == [(f"file:{path}@{offsets[2]}", "corrupt_gzip")]
    assert f"skipped {offsets[3] - offsets[2]} bytes to byte {offsets[3]}" in docs[1].metadata["reject_detail"]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("delta", [-40, +40, +5000], ids=["too_short", "too_long", "far_too_long"])
def test_wrong_archive_length_in_an_arc_is_rejected_and_neighbours_survive(tmp_path: Path, gz: bool, delta: int) -> None:
    records = arc_pages(3)
    line, sep, rest = records[2].partition(b"\n")
    head, _, length = line.rpartition(b" ")
    records[2] = head + b" %d" % (int(length) + delta) + sep + rest
    path = tmp_path / ("length.arc.gz" if gz else "length.arc")
    offsets = write_warc(path, records, gz=gz)
    docs, _ = read_all(path)
    assert [d.metadata["url"] for d in good(docs)] == [url("p0"), url("p2")]
    assert rejects(docs) == [(f"file:{path}@{offsets[2]}", "bad_content_length")]
    assert "old page 1" in docs[1].text and docs[1].text.rstrip().endswith("</html>")


def test_garbage_between_plain_arc_records_is_skipped_with_its_offset(tmp_path: Path) -> None:
    records = arc_pages(2)
    junk = b"this is not an arc record\n\x00\x01\x02 garbage\n"
    path = tmp_path / "junk.arc"
    path.write_bytes(records[0] + records[1] + junk + records[2])
    docs, _ = read_all(path)
    assert [d.metadata["url"] for d in good(docs)] == [url("p0"), url("p1")]
    at = len(records[0]) + len(records[1])
    assert rejects(docs) == [(f"file:{path}@{at}", "invalid_warc_record")]
    detail = f"{len(junk)} bytes at byte {at} are not part of any ARC record; skipped to the next one"
    assert docs[1].metadata["reject_detail"] == detail


def test_a_file_named_arc_that_holds_no_arc_record_is_one_unusable_document(tmp_path: Path) -> None:
    path = tmp_path / "notes.arc"
    path.write_bytes(b"just some notes\nthat are not an ARC file\n" * 10)
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "not_warc")] and docs[0].metadata["unusable_file"] is True
    assert docs[0].metadata["reject_detail"].startswith("no ARC record found")


def test_a_plain_arc_misnamed_gz_is_read_as_plain(tmp_path: Path) -> None:
    path = tmp_path / "plain.arc.gz"
    write_warc(path, arc_pages(2), gz=False)
    docs, reader = read_all(path)
    assert [d.metadata["url"] for d in good(docs)] == [url("p0"), url("p1")] and stat(reader, "misnamed_gzip") == 1
