"""Builders and lookups shared by the reader tests: WARC and ARC records made byte by byte, reader runs."""

from __future__ import annotations

import io
import random
import re
import zlib
from pathlib import Path
from typing import Any

from datatrove.data import Document
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipelines.ingest.inputs import resolve_inputs
from pipelines.ingest.readers import REJECT_REASONS, InputReader

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


def without_header(record: bytes, name: str) -> bytes:
    """The record with one WARC header line removed (the block and its length are untouched)."""
    head, sep, rest = record.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(name.lower().encode() + b":")]
    return b"\r\n".join(lines) + sep + rest


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


# --------------------------------------------------------------------------- ARC v1, written by hand

ARC_DATE = "19961104142103"


def arc_filedesc(name: str = "test.arc") -> bytes:
    """The filedesc record an ARC v1 file starts with: the file's description, not a capture."""
    block = b"1 0 Alexa Internet\nURL IP-address Archive-date Content-type Archive-length\n"
    return f"filedesc://{name} 0.0.0.0 {ARC_DATE} text/plain {len(block)}\n".encode() + block + b"\n"


def arc_record(target: str, block: bytes, content_type: str = "text/html") -> bytes:
    """One ARC v1 record: ``URL IP-address Archive-date Content-type Archive-length``, the block, a newline."""
    return f"{target} 93.184.216.34 {ARC_DATE} {content_type} {len(block)}\n".encode() + block + b"\n"


def http_response(body: bytes, content_type: str | None = "text/html") -> bytes:
    """An HTTP/1.0 response as 1990s crawlers stored it in ARC files."""
    head = "HTTP/1.0 200 OK\r\nServer: NCSA/1.5\r\n"
    if content_type:
        head += f"Content-type: {content_type}\r\n"
    return f"{head}Content-length: {len(body)}\r\n\r\n".encode() + body


def arc_pages(n: int) -> list[bytes]:
    """An ARC file's records: the filedesc, then ``n`` HTML captures of ``url("p<i>")``."""
    return [arc_filedesc()] + [arc_record(url(f"p{i}"), http_response(page(f"old page {i}").encode())) for i in range(n)]


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


JAPANESE = "日本語のページです。これは文字コードのテストです。東京都の天気は晴れです。" * 3

XHTML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
    "<head><title>XHTML page</title></head>\n<body><p>Strict XHTML content &amp; more.</p></body>\n</html>\n"
)
RUSSIAN_PAGE = page(
    "Русская страница для проверки", '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
)
