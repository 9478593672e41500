"""``InputReader``: the datatrove step that reads resolved :class:`InputItem` s.

One reader for every input kind, so a pipeline can mix WARCs, JSONL, parquet,
HF folders and HTML files and shard them all the same way:
``items[rank::world_size]`` in the given (sorted) order, which makes runs
deterministic and restartable per task.

Bad input data never raises out of :meth:`InputReader.run`: the kind readers
turn damage into reject documents, and anything they did not foresee is caught
here and reported as ``unreadable_file`` for that file alone.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseReader
from loguru import logger

from pipelines.ingest.inputs import InputItem, InputKind
from pipelines.ingest.readers.documents import StatFn, file_damage_doc, one_line, unusable_file_doc
from pipelines.ingest.readers.html_files import read_html_file
from pipelines.ingest.readers.jsonl import read_jsonl
from pipelines.ingest.readers.tables import read_hf_dataset, read_parquet
from pipelines.ingest.readers.warc import read_warc

KindReader = Callable[[InputItem, StatFn], Iterator[Document]]

KIND_READERS: dict[InputKind, KindReader] = {
    "warc": read_warc,
    "jsonl": read_jsonl,
    "parquet": read_parquet,
    "hf_dataset": read_hf_dataset,
    "html": read_html_file,
}


class InputReader(BaseReader):
    """Read WARC/WET/ARC, JSONL, parquet, HF dataset folders and HTML files as Documents.

    Every record becomes a Document; unusable ones carry ``reject_reason`` /
    ``reject_detail`` metadata (and ``unusable_file`` for whole-file failures)
    so a later filter can route them to the exclusion dataset.

    Stats: ``input_files[_<kind>]``, ``documents[_<kind>]`` (good ones),
    ``rejected`` and ``rejected_<reason>``, ``unusable_files``, plus per-kind
    counters such as ``skipped_<warc type>`` (non-content WARC/ARC records:
    warcinfo, request, metadata, revisit, ...) and ``nul_bytes_stripped``.
    """

    name = "📥 Inputs"

    def __init__(self, items: Sequence[InputItem], default_metadata: dict[str, Any] | None = None) -> None:
        super().__init__(default_metadata=default_metadata)
        self.items = list(items)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        for item in self.items[rank::world_size]:
            yield from self.read_item(item)

    def read_item(self, item: InputItem) -> Iterator[Document]:
        """All documents of one input, with stats; never raises for bad data."""
        self.stat_update("input_files", f"input_files_{item.kind}")
        logger.info(f"reading {item.kind} input {item.path}")
        documents = KIND_READERS[item.kind](item, self.stat_update)
        try:
            yield from self._drain(item, documents)
        finally:
            close = getattr(documents, "close", None)
            if close is not None:
                close()  # release the file handle even if the consumer stops early

    def _drain(self, item: InputItem, documents: Iterator[Document]) -> Iterator[Document]:
        yielded = 0
        while True:
            try:
                with self.track_time():
                    doc = next(documents)
            except StopIteration:
                return
            except Exception as error:  # a bug or an I/O failure: lose this file, not the run
                logger.opt(exception=error).warning(f"reading {item.path} failed after {yielded} documents")
                detail = one_line(f"{type(error).__name__}: {error} (after {yielded} documents)")
                content_type = "text/html" if item.kind in ("warc", "html") else "text/plain"
                if yielded:
                    doc = file_damage_doc(item.path, "unreadable_file", detail, content_type=content_type)
                else:
                    doc = unusable_file_doc(item.path, "unreadable_file", detail, content_type=content_type)
                yield self._account(doc, item)
                return
            yielded += 1
            yield self._account(doc, item)

    def _account(self, doc: Document, item: InputItem) -> Document:
        if self.default_metadata:
            doc.metadata = self.default_metadata | doc.metadata
        reason = doc.metadata.get("reject_reason")
        if reason is None:
            self.stat_update("documents", f"documents_{item.kind}")
            self.update_doc_stats(doc)
        else:
            self.stat_update("rejected", f"rejected_{reason}")
            if doc.metadata.get("unusable_file"):
                self.stat_update("unusable_files")
        return doc
