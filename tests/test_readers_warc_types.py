"""Specification tests for WARC record types: every response, resource and conversion record ends as a
document or a reject with its reason, and records without content are counted by type in the step stats.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reader_helpers import (
    JAPANESE,
    PNG,
    RUSSIAN_PAGE,
    XHTML,
    good,
    other,
    page,
    read_all,
    rejects,
    response,
    rid,
    stat,
    url,
    warcinfo,
    without_header,
    write_warc,
)

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
