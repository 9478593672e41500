"""ARC v1 framing: the Internet Archive's format before WARC, read as WARC-like records.

An ARC file is a ``filedesc://`` record (the file's own description) followed
by one record per capture, each a single header line
``URL IP-address Archive-date Content-type Archive-length``, then
``Archive-length`` bytes (usually a whole HTTP response), then a newline; a
``.arc.gz`` holds one gzip member per record.

ARC goes through the same damage-tolerant splitter as WARC
(:mod:`warc_records` over :mod:`warc_stream`) rather than warcio's
``ArchiveIterator(arc2warc=True)``: that shares warcio's WARC loader and, as
measured with warcio 1.8.1, silently drops the record cut by a truncation,
raises at the first corrupt gzip member (losing every record after it) and lets
a too-long length swallow the next record. Here damage becomes a reject with
its offset and the records around it are kept.

Headers are renamed the way warcio's ``arc2warc`` does, so the rest of the
reader treats an ARC capture exactly like a WARC ``response`` record and the
``filedesc`` record like ``warcinfo``. ARC records carry no record id; the
reader then uses the record's offset, which is stable across runs.
"""

from __future__ import annotations

import re
from datetime import datetime

from pipelines.ingest.readers.warc_records import Framing
from pipelines.ingest.readers.warc_stream import MemberStream

# URL IP-address Archive-date Content-type Archive-length; the URL may hold spaces (warcio splits from the right).
_HEADER_LINE = rb"(\S[^\r\n]*) (\S+) (\d{14}) (\S+) (\d+)\r?\n"
ARC_HEADER = re.compile(_HEADER_LINE)


def read_arc_head(stream: MemberStream, offset: int, first: bytes) -> dict[str, str]:
    """The ARC header line as the WARC headers ``arc2warc`` gives it (the line is the whole header)."""
    match = ARC_HEADER.match(first)
    assert match is not None, "iter_records only passes lines that match ARC_HEADER"
    url, ip, date, content_type, length = (part.decode("utf-8", "replace") for part in match.groups())
    headers = {
        "warc-type": "warcinfo" if url.startswith("filedesc://") else "response",
        "warc-target-uri": url,
        "warc-ip-address": ip,
        # The ARC line names the payload's type, as WARC-Identified-Payload-Type does in WARC.
        "warc-identified-payload-type": content_type,
        "content-length": length,
    }
    if (iso := _iso_date(date)) is not None:
        headers["warc-date"] = iso
    return headers


def _iso_date(stamp: str) -> str | None:
    """``19961104142103`` -> ``1996-11-04T14:21:03Z`` (WARC-Date's form); None for an impossible date."""
    fields = (stamp[0:4], stamp[4:6], stamp[6:8], stamp[8:10], stamp[10:12], stamp[12:14])
    try:
        return datetime(*map(int, fields)).strftime("%Y-%m-%dT%H:%M:%SZ")  # fixed widths: strptime's are not
    except ValueError:
        return None


ARC_FRAMING = Framing(
    name="ARC",
    file_start=b"filedesc://",
    record_start=ARC_HEADER,
    next_record=re.compile(rb"\r?\n(" + _HEADER_LINE + rb")"),
    read_head=read_arc_head,
)
