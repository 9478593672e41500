"""WRAP rephrasing (Maini et al. 2024, "Rephrasing the Web"): prompts, chunking, and cleaning of the answers.

The paper rephrases web documents in ~300-token chunks into four styles (easy, medium, hard, Q&A) and
trains on real and rephrased text mixed 1:1. This module is the pure part: which messages to send, how a
document is cut, how a model's answer is cleaned, and why an answer is set aside. The HTTP side calls it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

STYLES = ("easy", "medium", "hard", "qa")

# Bump when any prompt text below changes: every row records it, and the resume checkpoints hash it,
# so answers to an old prompt are never mixed with answers to a new one.
PROMPT_VERSION = "wrap-v1"

_SYSTEM = "You rewrite passages of text in a requested style. You never add information and never leave any out."

# Our own wording of the paper's four styles (not the paper's prompts).
_STYLE_TASKS = {
    "easy": "Rewrite the passage below in very simple words and short sentences, so that a young child could understand it.",
    "medium": (
        "Rewrite the passage below as clear, well-written English prose in the neutral, informative style of an "
        "encyclopedia article such as one on Wikipedia."
    ),
    "hard": (
        "Rewrite the passage below in terse, abstruse, scholarly language: compact sentences, specialist vocabulary "
        "and the register of an academic journal."
    ),
    "qa": (
        "Turn the passage below into a conversation of questions and answers. Each question asks about something the "
        "passage says and its answer gives that information; together they cover everything in the passage. "
        "Write each pair as 'Question: ...' on one line and 'Answer: ...' on the next."
    ),
}

_RULES = (
    "Keep every fact, name and number from the passage. Add nothing that the passage does not say. "
    "Reply with the rewritten text only: no introduction, title or closing remark."
)

REASONS: dict[str, str] = {
    "truncated": "the answer hit the token limit (finish_reason 'length'), so its end is missing",
    "empty_output": "nothing was left once preambles, quotes and sign-offs were removed",
    "refusal": "the model declined the task ('I'm sorry, but I can't ...', 'As an AI language model ...')",
}


def wrap_messages(style: str, chunk: str) -> list[dict]:
    """OpenAI chat messages asking for `chunk` rephrased in `style`; ValueError for a style not in STYLES."""
    if style not in _STYLE_TASKS:
        raise ValueError(f"unknown WRAP style {style!r}: expected one of {', '.join(STYLES)}")
    user = f"{_STYLE_TASKS[style]} {_RULES}\n\nPassage:\n{chunk.strip()}"
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


# ---------------------------------------------------------------------------------------------- chunking

# A sentence ends after . ! ? (and Devanagari/Arabic/Urdu stops) plus closing quotes (French "« Oui ! »" has a
# space before its »), then whitespace not followed by a lowercase letter ("e.g. the" is no end); after CJK
# 。！？ with no space needed; or at a paragraph break. The possessive `\s++` keeps the lowercase check from
# backtracking into the whitespace.
_SENTENCE_END = re.compile(r"[.!?…।؟۔](?:[ \u00a0\u202f]?[\"'”’»)\]])*\s++(?![a-z])|[。！？][」』）”’\"]*\s*|\n\s*\n\s*")
# Ways to cut a sentence longer than the target, tried in order: lines, then words (characters come last).
_FINER = (re.compile(r"\s*\n\s*"), re.compile(r"\s+"))

_MAX_FACTOR = 1.5  # a chunk grows past the target by at most this factor (unless one piece alone does)
_TAIL_FACTOR = 0.25  # a last chunk smaller than this share of the target joins the previous one


def _cut_after(text: str, pattern: re.Pattern[str]) -> list[str]:
    """`text` cut after every match of `pattern`; the pieces concatenate back to `text` exactly."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if match.start() > start and match.end() < len(text):
            pieces.append(text[start : match.end()])
            start = match.end()
    pieces.append(text[start:])
    return [piece for piece in pieces if piece]


def _split_long(
    piece: str, tokens: int, count_tokens: Callable[[str], int], target: int, level: int = 0
) -> list[tuple[str, int]]:
    """Cut one over-long sentence into (text, tokens) pieces of at most `target` tokens.

    Lines first, then words, then characters (for text without spaces). Rather than counting every word or
    character, the piece is cut into ceil(tokens / target) parts of equal length in characters, each part
    counted once and cut again only if still too long: a handful of calls per sentence.
    """
    if tokens <= target or len(piece) <= 1:
        return [(piece, tokens)]
    units: list[str] = []
    while level < len(_FINER) and len(units := _cut_after(piece, _FINER[level])) < 2:
        level += 1
    if level == len(_FINER):
        units = list(piece)
    goal = len(piece) / math.ceil(tokens / target)
    parts, current = [], ""
    for unit in units:
        if current and len(current) + len(unit) > goal:
            parts.append(current)
            current = ""
        current += unit
    parts.append(current)
    out: list[tuple[str, int]] = []
    for part in parts:
        out.extend(_split_long(part, count_tokens(part.strip()), count_tokens, target, level))
    return out


def chunk_document(text: str, count_tokens: Callable[[str], int], target_tokens: int = 300) -> list[str]:
    """Consecutive chunks of about `target_tokens` tokens, cut at sentence boundaries (the paper's ~300).

    A chunk's size is the sum of its sentences' counts (the tokens of the joined text differ by a few at
    most). It exceeds 1.5 x target only if one sentence does and cannot be cut (a single character); longer
    sentences are cut on lines, whitespace, or characters for CJK text. The chunks are spans of `text`,
    stripped at their edges and never empty, so joined back they hold all of it but that whitespace. A
    last chunk under a quarter of the target joins the one before if that stays within 1.5 x target.
    `count_tokens` is called per sentence (and per part of a sentence that is cut), never per character.
    """
    if target_tokens < 1:
        raise ValueError(f"target_tokens must be at least 1, got {target_tokens}")
    pieces: list[tuple[str, int]] = []
    for sentence in _cut_after(text, _SENTENCE_END):
        if sentence.strip():  # only a blank text has a blank "sentence"
            pieces.extend(_split_long(sentence, count_tokens(sentence.strip()), count_tokens, target_tokens))
    ceiling = _MAX_FACTOR * target_tokens
    chunks: list[tuple[str, int]] = []
    current, tokens = "", 0
    for piece, n in pieces:
        if current.strip() and tokens + n > target_tokens:
            # Close before or after this piece, whichever lands nearer the target, never past the ceiling.
            overshoot, undershoot = tokens + n - target_tokens, target_tokens - tokens
            if overshoot < undershoot and tokens + n <= ceiling:
                chunks.append((current + piece, tokens + n))
                current, tokens = "", 0
                continue
            chunks.append((current, tokens))
            current, tokens = "", 0
        current, tokens = current + piece, tokens + n
    if current.strip():
        chunks.append((current, tokens))
    if len(chunks) > 1 and chunks[-1][1] < _TAIL_FACTOR * target_tokens and chunks[-2][1] + chunks[-1][1] <= ceiling:
        (previous, n_previous), (last, n_last) = chunks[-2], chunks.pop()
        chunks[-1] = (previous + last, n_previous + n_last)
    return [chunk.strip() for chunk, _ in chunks if chunk.strip()]


# ---------------------------------------------------------------------------------------------- cleaning

_INTERJECTION = r"(?:sure|certainly|of course|okay|ok|absolutely|alright|all right|great|no problem)"
_LEAD = r"(?:here(?:'s|\s+is|\s+are|\s+it\s+is|\s+you\s+go)|below\s+is|the\s+following\s+is|this\s+is|i(?:'ve|\s+have)\s+\w+)"
_CUE = r"(?:paraphras|rephras|rewrit|reword|restat|simplif|version|passage|text|you\s+go|requested|format|style)"
# A bare interjection line ("Sure!"), any line that opens with one and ends in ':' ("Certainly, ...:"), and
# "Here is ..." / "Below is ..." with a word about rephrasing, ending in ':' (or '.' when the line is alone).
_INTERJECTION_LINE = re.compile(rf"{_INTERJECTION}\W*", re.I)
_INTERJECTION_COLON = re.compile(rf"{_INTERJECTION}[!,.]\s.*:", re.I)
_LEAD_COLON = re.compile(rf"(?=.*\b{_CUE})(?:{_INTERJECTION}[!,.]\s*)?{_LEAD}\b.*:", re.I)
_LEAD_SENTENCE = re.compile(rf"(?:{_INTERJECTION}[!,.]\s*)?{_LEAD}\b.*\b(?:paraphras|rephras|rewrit|reword|restat).*[.!]", re.I)
# A short label of rephrasing words: "Paraphrased text:", "**Rephrased passage:**", "Paraphrase (easy):".
_LABEL = re.compile(
    r"(?:the\s+|a\s+|my\s+)?(?:paraphrased|rephrased|rewritten|reworded|simplified)?\s*"
    r"(?:text|passage|version|paraphrase|rephrasing|rewrite|output)\s*(?:\([^)]{0,40}\))?\s*:",
    re.I,
)
# A closing remark on the last line, as a line or as its last sentences: only phrasings a model uses about its
# own answer, so a passage that ends "If you have questions, call us." keeps its last line.
_SIGN_OFF = re.compile(
    r"(?:^|(?<=[.!?。]))[ \t]*(?:(?:i\s+)?hope\s+(?:this|that|it)\s+helps|is\s+there\s+anything\s+else|"
    r"let\s+me\s+know\s+if\b.{0,80}\b(?:further|more|else|other|changes?|adjust|modif|help|assist|clarif|tweak)|"
    r"feel\s+free\s+to\s+(?:ask|let\s+me\s+know|reach\s+out|request)|if\s+you\b.{0,80}\b(?:let\s+me\s+know|feel\s+free)|"
    r"i(?:'d|’d|\s+would)\s+be\s+(?:happy|glad)\s+to|\(?note:.{0,300}\b(?:paraphras|rephras|rewrit|original|simplif))[^\n]*\Z",
    re.I | re.M,
)
_FENCE = re.compile(r"^```[\w-]*\n(.*)\n```$", re.S)
_QUOTES = (('"', '"'), ("“", "”"), ("«", "»"), ("「", "」"), ("'", "'"))


def _is_preamble(line: str, alone: bool) -> bool:
    """Whether `line` (markdown emphasis removed) introduces the answer rather than being part of it.

    `alone` says the line is the whole first line (not a prefix up to ':' with text after it); only then may a
    bare interjection or a 'Here is the rephrased text.' ending in '.' count.
    """
    core = line.strip().strip("*_#").strip().replace("’", "'")
    if len(core) > 160:
        return False
    if alone and (_INTERJECTION_LINE.fullmatch(core) or _LEAD_SENTENCE.fullmatch(core)):
        return True
    if alone and _INTERJECTION_COLON.fullmatch(core):
        return True
    return bool(_LEAD_COLON.fullmatch(core) or _LABEL.fullmatch(core))


def _strip_preamble(text: str) -> str:
    first, newline, rest = text.partition("\n")
    if _is_preamble(first, alone=True):
        return rest
    prefix, colon, after = first.partition(":")
    if colon and after.strip() and _is_preamble(prefix + colon, alone=False):
        return after + newline + rest
    return text


def _strip_wrappers(text: str) -> str:
    if fenced := _FENCE.match(text):
        return fenced.group(1)
    for left, right in _QUOTES:
        if len(text) > 2 and text[0] == left and text[-1] == right and sum(map(text.count, {left, right})) == 2:
            return text[1:-1]
    return text


def clean_rephrase(text: str) -> str:
    """The rephrasing alone: leading preambles ("Sure! Here is the paraphrase:"), wrapping quotes or code
    fences, trailing sign-offs ("I hope this helps!") and surrounding whitespace removed.

    Only a first line (or the part of it up to ':') that matches a preamble pattern is removed, so a real first
    sentence that mentions paraphrasing stays; Q&A labels like "Question:" are never preambles.
    """
    previous = None
    text = text.strip()
    while text != previous:
        previous = text
        text = _strip_preamble(text).strip()
        text = _SIGN_OFF.sub("", text).strip()
        text = _strip_wrappers(text).strip()
    return text


_REFUSAL = re.compile(
    r"\W*(?:(?:i'm|i\s+am)\s+(?:sorry|afraid),?\s+(?:but\s+)?i\s+(?:can't|cannot|can\s+not|am\s+unable|am\s+not\s+able|won't)\b"
    r"|\W*(?:unfortunately,?\s+)?i\s+(?:can't|cannot|can\s+not|am\s+unable\s+to|am\s+not\s+able\s+to|won't)\s+"
    r"(?:help|assist|comply|fulfil|fulfill|rephrase|paraphrase|rewrite|provide|complete|process|generate)\b"
    r"|.{0,200}?\bas\s+(?:an\s+ai\s+(?:language\s+)?(?:model|assistant)|a\s+language\s+model)\b)",
    re.I | re.S,
)


def rephrase_rejection(text: str, finish_reason: str | None) -> str | None:
    """Why a cleaned answer (`clean_rephrase`'s output) is set aside, a key of REASONS, or None to keep it.

    Truncation is checked first: a cut answer is never usable, whatever it says.
    """
    if finish_reason == "length":
        return "truncated"
    if not text.strip():
        return "empty_output"
    if _REFUSAL.match(text.replace("’", "'")):
        return "refusal"
    return None
