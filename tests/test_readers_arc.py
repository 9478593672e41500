"""Specification tests for ARC files (`.arc`, `.arc.gz`): read like WARC, one document or reject per capture,
damage set aside with its offset while the records around it survive.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from reader_helpers import (
    arc_filedesc,
    arc_pages,
    arc_record,
    good,
    http_response,
    page,
    read_all,
    rejects,
    stat,
    url,
    write_warc,
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
