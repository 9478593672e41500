"""When two documents count as the same text: the rule dedup removes by and the quality gate checks
after it, kept in one place so the two can never disagree."""

from __future__ import annotations

import unicodedata


def normalised_text(text: str) -> str:
    """What two texts must share to be exact duplicates: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
