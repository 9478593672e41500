"""HTML → text, in datatrove's sandbox, with nothing lost.

datatrove's `BaseExtractor.run` runs the extractor in a subprocess with a per-document timeout
(bad HTML cannot take the run down), but drops the documents it could not extract with only a
counter. This step keeps the sandbox and the extractor and sends those documents to the
exclusion dataset with their reason (`extraction_timeout`, `extraction_crashed`,
`extraction_error`, `no_text_extracted`). Plain-text documents (WET, JSONL, parquet) pass through.

Extracted text is tidied line by line (trailing whitespace and blank lines dropped; indentation
kept, code needs it): trafilatura
keeps the source's indentation inside paragraphs, and on real XHTML (the Debian handbook) the
resulting tab-only lines made a third of a page "duplicate lines" for Gopher's repetition filter.
"""

from __future__ import annotations

import signal

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.extractors.base import BaseExtractor, ExtractorSandbox
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.typeshelper import StatHints

HTML = "text/html"


def tidy_lines(text: str) -> str:
    """Drop trailing whitespace and blank lines; the filters count lines, and blank ones are noise."""
    return "\n".join(kept for line in text.splitlines() if (kept := line.rstrip()))


class _Sandbox(ExtractorSandbox):
    """datatrove's sandbox, whose process dies quietly when datatrove stops it.

    The sandbox is forked from the task's process and inherits its Python signal handlers. Where
    that process runs a Prefect flow (`lmforge ingest` with one worker, `lmforge run`), Prefect's
    SIGTERM handler raises `TerminationSignal` in the sandbox when datatrove terminates it at the
    end of the task, and multiprocessing prints its traceback after a successful run.
    """

    def _worker(self, conn, extract_fn) -> None:  # noqa: ANN001
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        super()._worker(conn, extract_fn)


class SandboxedExtraction(PipelineStep):
    """Runs `extractor.extract` on HTML documents; sets aside every document it cannot turn into text."""

    type = "🛢 - EXTRAC"

    def __init__(self, extractor: BaseExtractor, exclusion_writer: DiskWriter) -> None:
        self.name = f"{extractor.name} (sandboxed, {extractor.timeout:g}s/doc)"  # names the step's stats
        super().__init__()
        self.extractor = extractor
        self.exclusion_writer = exclusion_writer

    def _extract(self, sandbox: ExtractorSandbox, doc: Document) -> tuple[str, str] | None:
        """Returns (reason, detail) when the document must be set aside, else None (doc.text replaced)."""
        try:
            text = sandbox.process_document(doc.text, self.extractor.extract)
        except TimeoutError:
            return "extraction_timeout", f"no result within {self.extractor.timeout:g}s"
        except EOFError:
            return "extraction_crashed", "the extractor process died (e.g. out of memory)"
        except Exception as e:  # the extractor raised on this document
            return "extraction_error", f"{type(e).__name__}: {e}"[:500]
        text = tidy_lines(text or "")
        if not text:
            return "no_text_extracted", "the extractor found no main text"
        doc.text = text
        return None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with _Sandbox(timeout=self.extractor.timeout) as sandbox, self.exclusion_writer as excluded:
            for doc in data:
                if doc.metadata.get("content_type") != HTML:
                    yield doc
                    continue
                self.stat_update(StatHints.total)
                with self.track_time():
                    failure = self._extract(sandbox, doc)
                if failure is None:
                    self.stat_update(StatHints.forwarded)
                    self.update_doc_stats(doc)
                    yield doc
                    continue
                reason, detail = failure
                self.stat_update(StatHints.dropped, f"dropped_{reason}")
                doc.metadata.update(reject_reason=reason, reject_detail=detail)
                excluded.write(doc, rank)
