"""Facts about writing systems that the filters, MinHash and the tokenizer report all rely on."""

from __future__ import annotations

# ISO 15924 scripts written without spaces between words (the part of `lang` after "_"): there a
# whitespace "word" is a phrase or a sentence, so word-based rules and fertility do not apply.
UNSPACED_SCRIPTS = frozenset({"Hani", "Hans", "Hant", "Hira", "Kana", "Jpan", "Thai", "Khmr", "Mymr", "Laoo", "Tibt"})


def script_of(lang: str) -> str:
    """The ISO 15924 script of a FLORES-style code: `Thai` for `tha_Thai`."""
    return lang.rpartition("_")[2]


def is_spaced(lang: str) -> bool:
    """Whether a FLORES-style code (`tha_Thai`, `cmn_Hani`) names a language written with spaces between words."""
    return script_of(lang) not in UNSPACED_SCRIPTS
