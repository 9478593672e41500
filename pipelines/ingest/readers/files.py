"""Opening input files, local or fsspec, and the checks every file kind shares.

Local paths use the builtin ``open`` (fast, no extra dependency at run time);
URLs go through fsspec so ``s3://``/``hf://``/``file://`` inputs work the same
way. The gzip check lives here because WARC and JSONL both need the same
decision: a ``.gz`` name with non-gzip content is either a misnamed plain file
(read it as plain) or garbage (reject the whole file as ``not_gzip``).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Literal

from pipelines.ingest.inputs import is_url

GZIP_MAGIC = b"\x1f\x8b"

Compression = Literal["gzip", "plain", "misnamed_plain", "not_gzip", "empty"]


def open_binary(path: str) -> BinaryIO:
    """Open a local path or fsspec URL for binary reading (caller closes it)."""
    if is_url(path):
        import fsspec

        return fsspec.open(path, "rb").open()
    return open(path, "rb")


def file_uri(path: str) -> str:
    """URL for a document read from a whole file: a ``file://`` URI for local paths."""
    return path if is_url(path) else Path(path).as_uri()


def sniff_compression(f: BinaryIO, path: str, plain_prefixes: tuple[bytes, ...]) -> Compression:
    """Decide how to read ``f`` from its first bytes; leaves ``f`` at offset 0.

    ``plain_prefixes`` are the (whitespace-stripped) starts that prove a file
    named ``.gz`` is really an uncompressed file of the expected format.
    """
    head = f.read(512)
    f.seek(0)
    if not head:
        return "empty"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if not path.lower().endswith(".gz"):
        return "plain"
    if head.lstrip().startswith(plain_prefixes):
        return "misnamed_plain"
    return "not_gzip"


def not_gzip_detail(f: BinaryIO) -> str:
    head = f.read(8)
    f.seek(0)
    return f"name ends in .gz but the file starts with {head!r}, not the gzip magic bytes 1f 8b"
