"""Specification tests for pipelines.readers.InputReader on small, deliberately broken inputs.

Every test builds its own files in tmp_path and runs the real reader. Bad records
must come out as reject documents (never dropped, never raising) while the good
records in the same file survive.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest
from datatrove.data import Document
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipelines.inputs import InputItem, resolve_inputs
from pipelines.readers import KIND_READERS, REJECT_REASONS, InputReader

BASE_KEYS = {"source", "url", "date", "content_type"}

# --------------------------------------------------------------------------- helpers


def read_all(*paths: Path | str) -> tuple[list[Document], InputReader]:
    """Resolve paths, run the reader as rank 0 of 1, and check invariants on every document."""
    reader = InputReader(resolve_inputs([str(p) for p in paths]))
    docs = list(reader.run(None, rank=0, world_size=1))
    for doc in docs:
        assert isinstance(doc.id, str) and isinstance(doc.text, str)
        assert BASE_KEYS <= doc.metadata.keys(), doc.metadata
        assert doc.metadata["content_type"] in ("text/html", "text/plain")
        if "reject_reason" in doc.metadata:
            assert doc.metadata["reject_reason"] in REJECT_REASONS
            detail = doc.metadata["reject_detail"]
            assert isinstance(detail, str) and detail and "\n" not in detail
    return docs, reader


def good(docs: list[Document]) -> list[Document]:
    return [d for d in docs if "reject_reason" not in d.metadata]


def rejects(docs: list[Document]) -> list[tuple[str, str]]:
    return [(d.id, d.metadata["reject_reason"]) for d in docs if "reject_reason" in d.metadata]


def stat(reader: InputReader, name: str) -> int:
    return reader.stats.stats[name].total if name in reader.stats.stats else 0


def page(text: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head>{head}<title>t</title></head><body><p>{text}</p></body></html>"


def rid(name: str) -> str:
    return f"<urn:test:{name}>"


def url(name: str) -> str:
    return f"http://example.com/{name}"


def _write(record_builder: Any) -> bytes:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    writer.write_record(record_builder(writer))
    return buf.getvalue()


def response(
    name: str,
    body: bytes,
    content_type: str | None = "text/html; charset=utf-8",
    payload_type: str | None = None,
    http_headers: list[tuple[str, str]] | None = None,
) -> bytes:
    """An uncompressed WARC response record written by warcio."""
    headers = [("Content-Type", content_type)] if content_type else []
    headers += http_headers or []
    warc_headers = {"WARC-Record-ID": rid(name), "WARC-Date": "2024-01-02T03:04:05Z"}
    if payload_type:
        warc_headers["WARC-Identified-Payload-Type"] = payload_type
    return _write(
        lambda w: w.create_warc_record(
            url(name),
            "response",
            payload=io.BytesIO(body),
            http_headers=StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1"),
            warc_headers_dict=warc_headers,
        )
    )


def other(name: str, rec_type: str, payload: bytes, target: str | None = None, content_type: str = "") -> bytes:
    """A non-response record (request, metadata, revisit, conversion, ...)."""
    return _write(
        lambda w: w.create_warc_record(
            target or url(name),
            rec_type,
            payload=io.BytesIO(payload),
            warc_content_type=content_type,
            warc_headers_dict={"WARC-Record-ID": rid(name), "WARC-Date": "2024-01-02T03:04:05Z"},
        )
    )


def warcinfo() -> bytes:
    return _write(lambda w: w.create_warcinfo_record("test.warc.gz", {"software": "tests"}))


def gz_member(data: bytes, level: int = 6) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def write_warc(path: Path, records: list[bytes], gz: bool) -> list[int]:
    """Write records (one gzip member each when gz) and return their byte offsets."""
    out = bytearray()
    offsets = []
    for record in records:
        offsets.append(len(out))
        out += gz_member(record) if gz else record
    path.write_bytes(bytes(out))
    return offsets


def with_content_length(record: bytes, delta: int) -> bytes:
    head, sep, rest = record.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    return re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % (length + delta), head) + sep + rest


def pages(n: int, size: int = 2000) -> list[bytes]:
    rng = random.Random(n)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return [
        response(f"p{i}", page(f"page {i} " + " ".join(rng.choice(words) for _ in range(size // 6))).encode())
        for i in range(n)
    ]


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
@pytest.mark.parametrize("delta", [-40, +40, +5000], ids=["too_short", "too_long", "far_too_long"])
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


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


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


JAPANESE = "日本語のページです。これは文字コードのテストです。東京都の天気は晴れです。" * 3
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


# --------------------------------------------------------------------------- JSONL


def write_lines(path: Path, lines: list[bytes], gz: bool = False) -> None:
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)


def test_jsonl_bad_lines_are_rejected_with_reasons_and_good_lines_survive(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good_record = {"id": "a", "text": "good one", "url": "http://x/a", "date": "2024-01-01", "dump": "CC-1",
                   "score": 0.5, "tags": ["x"], "metadata": {"lang": "en", "dump": "ignored"}}
    write_lines(
        path,
        [
            json.dumps(good_record).encode(),
            b'{"id": "b", "text": broken',
            b"",
            b'{"id": "c", "text": "bad \xff byte"}',
            b'{"id": "d"}',
            b'{"id": "e", "text": null}',
            b'{"id": "f", "text": 42}',
            b'["not", "an", "object"]',
            b'{"id": "a", "text": "dup of a"}',
            b'{"text": "no id here"}',
            b'{"id": "g", "text": "   "}',
        ],
    )
    docs, reader = read_all(path)
    assert [(d.id, d.metadata.get("reject_reason")) for d in docs] == [
        ("a", None),
        (f"{path}#1", "invalid_json"),
        ("c", "invalid_utf8"),
        ("d", "missing_text"),
        ("e", "null_text"),
        ("f", "text_not_string"),
        (f"{path}#7", "not_an_object"),
        ("a", "duplicate_id"),
        (f"{path}#9", None),
        ("g", "empty_text"),
    ]
    details = {d.metadata.get("reject_reason"): d.metadata.get("reject_detail") for d in docs}
    assert details["invalid_json"].startswith("line 2: Expecting")
    assert details["invalid_utf8"] == "line 4: invalid UTF-8 at byte 25"
    assert details["duplicate_id"] == "line 9: id 'a' already used on line 1"
    assert docs[0].metadata == {"source": str(path), "url": "http://x/a", "date": "2024-01-01",
                                "content_type": "text/plain", "dump": "CC-1", "score": 0.5, "lang": "en"}
    assert docs[2].text == "bad \ufffd byte" and docs[1].text == '{"id": "b", "text": broken'
    assert docs[8].text == "no id here"
    assert stat(reader, "blank_lines") == 1 and stat(reader, "rejected") == 8


def test_truncated_jsonl_gz_keeps_the_lines_before_the_cut(tmp_path: Path) -> None:
    rng = random.Random(1)
    lines = [json.dumps({"id": i, "text": rng.randbytes(300).hex()}).encode() for i in range(400)]
    path = tmp_path / "cut.jsonl.gz"
    write_lines(path, lines, gz=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    docs, _ = read_all(path)
    kept = good(docs)
    assert 0 < len(kept) < 400 and [d.id for d in kept] == [str(i) for i in range(len(kept))]
    assert rejects(docs) == [(f"file:{path}", "truncated_file")]
    assert "unusable_file" not in docs[-1].metadata


def test_jsonl_gz_that_is_not_gzip_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "fake.jsonl.gz"
    path.write_bytes(b"Access denied\n")
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "not_gzip")] and docs[0].metadata["unusable_file"] is True


def test_plain_jsonl_misnamed_gz_is_read_as_plain(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl.gz"
    write_lines(path, [b'{"id": 1, "text": "one"}'])
    docs, _ = read_all(path)
    assert [(d.id, d.text) for d in docs] == [("1", "one")]


def test_zero_byte_jsonl_is_an_unusable_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "empty_file")] and docs[0].metadata["unusable_file"] is True


# --------------------------------------------------------------------------- parquet


def test_parquet_rows_become_documents_with_per_row_rejects(tmp_path: Path) -> None:
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": ["r0", "r1", "r2", "r0", None],
            "text": ["zero", None, "two", "dup", "no id"],
            "url": ["http://x/0", None, None, None, None],
            "date": [datetime.datetime(2024, 1, 2, 3, 4, 5)] * 5,
            "dump": ["CC"] * 5,
            "image": [b"\x89PNG"] * 5,
        }
    )
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path, row_group_size=2)
    docs, _ = read_all(path)
    assert [(d.id, d.metadata.get("reject_reason")) for d in docs] == [
        ("r0", None), ("r1", "null_text"), ("r2", None), ("r0", "duplicate_id"), (f"{path}#4", None)
    ]
    assert docs[0].metadata == {"source": str(path), "url": "http://x/0", "date": "2024-01-02T03:04:05",
                                "content_type": "text/plain", "dump": "CC"}
    assert docs[3].metadata["reject_detail"] == "row 3: id 'r0' already used on row 0"


@pytest.mark.parametrize("columns", [{"content": ["a"]}, {"text": [1]}], ids=["missing", "not_string"])
def test_parquet_without_a_string_text_column_is_unusable(tmp_path: Path, columns: dict[str, list[Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "schema.parquet"
    pq.write_table(pa.table(columns), path)
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "no_text_column")] and docs[0].metadata["unusable_file"] is True


def test_parquet_with_a_corrupt_footer_is_unusable(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "footer.parquet"
    pq.write_table(pa.table({"text": ["a", "b"]}), path)
    data = bytearray(path.read_bytes())
    data[-40:-8] = b"\xff" * 32
    path.write_bytes(bytes(data))
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "corrupt_parquet")] and docs[0].metadata["unusable_file"] is True


def test_zero_byte_parquet_is_an_unusable_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")
    docs, _ = read_all(path)
    assert rejects(docs) == [(f"file:{path}", "empty_file")]


# --------------------------------------------------------------------------- HF dataset folders


def test_hf_dataset_folder_rows_become_documents(tmp_path: Path) -> None:
    from datasets import Dataset

    folder = tmp_path / "ds"
    rows = {"id": [1, 2, 1], "text": ["one", None, "again"], "dump": ["a", "b", "c"]}
    Dataset.from_dict(rows).save_to_disk(str(folder))
    docs, _ = read_all(folder)
    assert [(d.id, d.text, d.metadata.get("reject_reason")) for d in docs] == [
        ("1", "one", None), ("2", "", "null_text"), ("1", "again", "duplicate_id")
    ]
    assert docs[0].metadata["dump"] == "a" and docs[0].metadata["source"] == str(folder)


def test_hf_dataset_dict_reads_every_split_and_records_it(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    folder = tmp_path / "dd"
    DatasetDict(
        {"train": Dataset.from_dict({"text": ["t0", "t1"]}), "test": Dataset.from_dict({"text": ["x0"]})}
    ).save_to_disk(str(folder))
    docs, _ = read_all(folder)
    assert [(d.id, d.text, d.metadata["split"]) for d in docs] == [
        (f"{folder}#0", "t0", "train"), (f"{folder}#1", "t1", "train"), (f"{folder}#2", "x0", "test")
    ]


def test_hf_dataset_without_text_column_is_unusable(tmp_path: Path) -> None:
    from datasets import Dataset

    folder = tmp_path / "notext"
    Dataset.from_dict({"content": ["a"]}).save_to_disk(str(folder))
    docs, _ = read_all(folder)
    assert rejects(docs) == [(f"file:{folder}", "no_text_column")] and docs[0].metadata["unusable_file"] is True


def test_unreadable_hf_dataset_folder_is_unusable(tmp_path: Path) -> None:
    folder = tmp_path / "broken_ds"
    folder.mkdir()
    (folder / "state.json").write_text("{ not json")
    (folder / "dataset_info.json").write_text("{}")
    docs, _ = read_all(folder)
    assert rejects(docs) == [(f"file:{folder}", "unreadable_file")] and docs[0].metadata["unusable_file"] is True


# --------------------------------------------------------------------------- HTML files, odd paths, URLs


def test_html_file_is_one_document_with_its_path_as_id_and_file_uri(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_bytes(page("Grüße", '<meta charset="utf-8">').encode())
    [doc], _ = read_all(path)
    assert (doc.id, doc.text) == (str(path), page("Grüße", '<meta charset="utf-8">'))
    assert doc.metadata == {"source": str(path), "url": path.as_uri(), "date": None,
                            "content_type": "text/html", "charset": "utf-8"}


def test_html_files_follow_the_same_body_rules_as_warc(tmp_path: Path) -> None:
    (tmp_path / "image.html").write_bytes(PNG)
    (tmp_path / "blank.htm").write_bytes(b" \n\n ")
    (tmp_path / "empty.html").write_bytes(b"")
    (tmp_path / "sjis.xhtml").write_bytes(page(JAPANESE, '<meta charset="shift_jis">').encode("shift_jis"))
    docs, _ = read_all(tmp_path)
    assert [(Path(d.id.removeprefix("file:")).name, d.metadata.get("reject_reason")) for d in docs] == [
        ("blank.htm", "empty_body"), ("empty.html", "empty_file"), ("image.html", "binary_body"), ("sjis.xhtml", None)
    ]
    assert docs[3].metadata["charset"] == "cp932" and JAPANESE in docs[3].text


def test_paths_with_spaces_and_non_ascii_names_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "dir with spaces" / "données 日本"
    folder.mkdir(parents=True)
    html = folder / "ma page été.html"
    html.write_text(page("été"), encoding="utf-8")
    warc = folder / "crawl été.warc.gz"
    write_warc(warc, pages(1, 100), gz=True)
    docs, _ = read_all(tmp_path / "dir with spaces")
    assert [d.id for d in docs] == [rid("p0"), str(html)]
    assert docs[1].metadata["url"] == html.as_uri() and "%20" in docs[1].metadata["url"]


def test_file_urls_are_read_through_fsspec(tmp_path: Path) -> None:
    folder = tmp_path / "url inputs"
    folder.mkdir()
    write_warc(folder / "a.warc.gz", pages(2, 100), gz=True)
    write_lines(folder / "b.jsonl", [b'{"id": "j", "text": "from jsonl"}'])
    (folder / "c.html").write_text(page("html"))
    docs, _ = read_all(folder.as_uri())  # percent-encoded file:// URL
    assert [d.id for d in docs] == [rid("p0"), rid("p1"), "j", f"file://{folder}/c.html"]
    assert all(d.metadata["source"].startswith("file://") for d in docs)


# --------------------------------------------------------------------------- robustness and the executor


def test_unexpected_reader_errors_lose_only_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def flaky(item: InputItem, stat: Any) -> Iterator[Document]:
        yield Document(text="first", id="ok", metadata={"source": item.path, "url": None, "date": None,
                                                       "content_type": "text/plain"})
        raise RuntimeError("boom")

    monkeypatch.setitem(KIND_READERS, "jsonl", flaky)
    write_lines(tmp_path / "a.jsonl", [b"{}"])
    (tmp_path / "b.html").write_text(page("still read"))
    docs, _ = read_all(tmp_path)
    assert [(d.id, d.metadata.get("reject_reason")) for d in docs] == [
        ("ok", None), (f"file:{tmp_path / 'a.jsonl'}", "unreadable_file"), (str(tmp_path / "b.html"), None)
    ]


def test_file_deleted_after_resolving_becomes_an_unusable_document(tmp_path: Path) -> None:
    path = tmp_path / "gone.jsonl"
    write_lines(path, [b'{"text": "x"}'])
    reader = InputReader(resolve_inputs([str(path)]))
    path.unlink()
    docs = list(reader.run(None, rank=0, world_size=1))
    assert rejects(docs) == [(f"file:{path}", "unreadable_file")] and docs[0].metadata["unusable_file"] is True


def test_default_metadata_is_added_without_overriding_reader_keys(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_lines(path, [b'{"id": "x", "text": "t"}'])
    reader = InputReader(resolve_inputs([str(path)]), default_metadata={"dataset": "demo", "source": "nope"})
    [doc] = list(reader.run(None, rank=0, world_size=1))
    assert doc.metadata["dataset"] == "demo" and doc.metadata["source"] == str(path)


def test_local_executor_shards_items_across_tasks_and_records_stats(tmp_path: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.writers import JsonlWriter

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_warc(inputs / "a.warc.gz", pages(3, 100), gz=True)
    write_lines(inputs / "b.jsonl", [b'{"id": "j1", "text": "one"}', b"{oops"])
    (inputs / "c.html").write_text(page("html file"))
    (inputs / "d.jsonl").write_bytes(b"")
    items = resolve_inputs([str(inputs)])
    executor = LocalPipelineExecutor(
        pipeline=[InputReader(items), JsonlWriter(str(tmp_path / "out"), compression=None)],
        tasks=2,
        workers=1,
        logging_dir=str(tmp_path / "logs"),
    )
    executor.run()
    per_task = [
        [json.loads(line)["id"] for line in (tmp_path / "out" / f"{rank:05d}.jsonl").read_text().splitlines()]
        for rank in range(2)
    ]
    # items sorted: a.warc.gz, b.jsonl, c.html, d.jsonl -> rank 0 gets a + c, rank 1 gets b + d
    assert per_task[0] == [rid("p0"), rid("p1"), rid("p2"), str(inputs / "c.html")]
    assert per_task[1] == ["j1", f"{inputs / 'b.jsonl'}#1", f"file:{inputs / 'd.jsonl'}"]
    stats = json.loads((tmp_path / "logs" / "stats.json").read_text())
    reader_stats = next(s for s in stats if "Inputs" in s["name"])["stats"]
    totals = {k: v if isinstance(v, (int, float)) else v["total"] for k, v in reader_stats.items()}
    assert totals["input_files"] == 4 and totals["input_files_jsonl"] == 2
    assert totals["documents"] == 5 and totals["documents_warc"] == 3
    assert totals["rejected_invalid_json"] == 1 and totals["rejected_empty_file"] == 1
    assert totals["unusable_files"] == 1
