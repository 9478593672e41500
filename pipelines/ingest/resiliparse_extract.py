"""The fast extraction path: resiliparse's HTML2Text as a datatrove extractor.

Why: trafilatura dominates extraction cost; resiliparse's rule-based main-content extraction
(a C++ DOM parser) is what DCLM chose for its pool, ~8× faster there at similar downstream
quality. Measured by `bench/extract.py` on the 1417-page Debian sample (one core, busy machine):
113 vs 9.0 docs/s (12.6×) for extraction alone, no empty page and no timeout (trafilatura: 2
empty, 26 timeouts at 1 s in the anchor); median character agreement with trafilatura 0.91.
It keeps tables of contents trafilatura drops and drops link-dense tables trafilatura keeps.

It plugs into `SandboxedExtraction` like trafilatura: same subprocess sandbox, same per-document
timeout, same `tidy_lines` on its output, so the two paths differ only in the extractor.

Settings follow DCLM / datatrove's own `Resiliparse` step: main content only, block structure
kept as line breaks (the repetition and line filters count lines), list bullets, no alt texts,
link targets, form fields or `<noscript>`; comment sections count as content (as in datatrove).
"""

from __future__ import annotations

from datatrove.pipeline.extractors.base import BaseExtractor

from pipelines.ingest.extract import tidy_lines


class Resiliparse(BaseExtractor):
    """`extract(html) -> text`: resiliparse main-content plain text, tidied line by line.

    `extract` takes decoded HTML (our readers decode it); bytes are decoded with resiliparse's
    encoding detection. It returns "" when the page has no main text (`SandboxedExtraction`
    then sets the document aside as `no_text_extracted`); resiliparse's parser errors propagate
    (`extraction_error`).
    """

    name = "⛏ Resiliparse"
    _requires_dependencies = ["resiliparse"]

    def __init__(
        self,
        timeout: float = 1.0,
        main_content: bool = True,
        list_bullets: bool = True,
        comments: bool = True,
        skip_elements: list[str] | None = None,
    ) -> None:
        super().__init__(timeout)
        self.main_content = main_content
        self.list_bullets = list_bullets
        self.comments = comments
        self.skip_elements = skip_elements

    def extract(self, text: str | bytes) -> str:
        from resiliparse.extract.html2text import extract_plain_text

        if isinstance(text, bytes):
            from resiliparse.parse.encoding import bytes_to_str, detect_encoding

            text = bytes_to_str(text, detect_encoding(text))
        if not text.strip():
            return ""
        extracted = extract_plain_text(
            text,
            preserve_formatting=True,
            main_content=self.main_content,
            list_bullets=self.list_bullets,
            alt_texts=False,
            links=False,
            form_fields=False,
            noscript=False,
            comments=self.comments,
            skip_elements=self.skip_elements,
        )
        return tidy_lines(extracted)
