"""Aligned text: one `<lang>.txt` per language, line N of each translating the same sentence (FLORES).

Every file is checked to be UTF-8 and all to have the same number of lines, so a bad folder is refused
before anything is counted. The tokenizer report reads it with Petrov et al.'s recipe (every newline
becomes a space: `read_parallel`); model evaluation scores each line as a document (`read_parallel_lines`).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from pipelines.common.errors import UserError


class ParallelTextError(UserError, ValueError):
    """The aligned text cannot be measured (invalid UTF-8, unaligned files, no files, no English)."""


REFERENCE_LANGUAGE = "eng_Latn"


def read_parallel_lines(folder: str | os.PathLike, languages: list[str] | None = None) -> dict[str, list[str]]:
    """Every `<lang>.txt` of `folder` (or only `languages`, each of which must be there) as its lines.

    Raises ParallelTextError as `read_parallel` does, and naming a requested language the folder lacks.
    """
    contents = _read_checked(Path(folder))
    missing = sorted(set(languages or []) - set(contents))
    if missing:
        raise ParallelTextError(
            f"no aligned text for {', '.join(missing)} in {folder}: expected {', '.join(f'{m}.txt' for m in missing)} "
            f"beside the {len(contents)} files there"
        )
    # Split on "\n" only, as the line count was taken: str.splitlines would also split on U+2028 and the like.
    return {lang: text.removesuffix("\n").split("\n") for lang, text in contents.items() if not languages or lang in languages}


def read_parallel(folder: str | os.PathLike) -> dict[str, str]:
    """The text of every `<lang>.txt` in `folder`, sorted by language, newlines replaced by single spaces.

    That is Petrov et al.'s recipe (a file's final newline becomes a final space). Every file is read
    and checked before anything is returned. Raises ParallelTextError on invalid UTF-8 (file, line,
    byte offset), on files with different line counts, and on a folder with no .txt files.
    """
    return {lang: text.replace("\n", " ") for lang, text in _read_checked(Path(folder)).items()}


def _read_checked(folder: Path) -> dict[str, str]:
    files = sorted(file for file in folder.glob("*.txt") if file.is_file()) if folder.is_dir() else []
    if not files:
        raise ParallelTextError(f"no <lang>.txt files in {folder}: expected one UTF-8 file per language, aligned by line")
    contents = {file.stem: _read_utf8(file) for file in files}
    _check_aligned(folder, {lang: _line_count(text) for lang, text in contents.items()})
    return contents


def _read_utf8(file: Path) -> str:
    """The file decoded as strict UTF-8; where it is not, the error says the line and the byte."""
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ParallelTextError(
            f"{file}: invalid UTF-8 at line {line}, byte offset {error.start} (byte 0x{data[error.start]:02x}: {error.reason})"
        ) from error


def _line_count(text: str) -> int:
    """Lines as an editor counts them: a last line without a newline still counts."""
    return text.count("\n") + (bool(text) and not text.endswith("\n"))


def _check_aligned(folder: Path, lines: dict[str, int]) -> None:
    """Raise ParallelTextError naming the files whose line count differs from the majority's (English's on a tie)."""
    tally = Counter(lines.values())
    if len(tally) == 1:
        return
    top = max(tally.values())
    candidates = [count for count, files in tally.items() if files == top]
    english = lines.get(REFERENCE_LANGUAGE)
    majority = english if english in candidates else candidates[0]
    agreeing = [lang for lang, count in lines.items() if count == majority]
    witness = REFERENCE_LANGUAGE if REFERENCE_LANGUAGE in agreeing else agreeing[0]
    others = f" and {len(agreeing) - 1} other files have" if len(agreeing) > 1 else " has"
    odd = ", ".join(f"{lang}.txt has {count}" for lang, count in lines.items() if count != majority)
    raise ParallelTextError(
        f"unaligned parallel files in {folder}: {witness}.txt{others} {majority} lines, but {odd}; "
        "line N of every file must translate the same sentence"
    )
