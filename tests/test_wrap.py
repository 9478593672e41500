"""pipelines.synthetic.wrap and .mix: WRAP prompts, multilingual chunking, cleaning of answers, the real:synthetic mix."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from pipelines.synthetic.mix import parse_ratio, select_mix
from pipelines.synthetic.wrap import (
    PROMPT_VERSION,
    REASONS,
    STYLES,
    chunk_document,
    clean_rephrase,
    rephrase_rejection,
    wrap_messages,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
O200K = DATA / "tokenizers" / "o200k_base.tiktoken"
FLORES = DATA / "flores200-dev"

PASSAGE = "The river floods every spring. Farmers plant rice after the water recedes."
SENTENCE_END = re.compile(r"[.!?。！？][\"'”’»)\]」』）]*$")


def words(text: str) -> int:
    """A tokenizer stand-in for exact arithmetic: one token per whitespace-separated word."""
    return len(text.split())


def characters(text: str) -> int:
    """One token per character, for text without spaces."""
    return len(text)


def assert_covers(chunks: list[str], text: str) -> None:
    """The chunks are non-empty, in order, spans of `text` with only whitespace left between them."""
    assert chunks and all(chunk and chunk == chunk.strip() for chunk in chunks)
    position = 0
    for chunk in chunks:
        found = text.index(chunk, position)
        assert not text[position:found].strip(), f"text lost before chunk: {text[position:found]!r}"
        position = found + len(chunk)
    assert not text[position:].strip()


# ------------------------------------------------------------------------------------------------ prompts


def test_prompt_holds_the_passage_and_differs_per_style():
    prompts = {style: wrap_messages(style, PASSAGE) for style in STYLES}
    for messages in prompts.values():
        assert [message["role"] for message in messages] == ["system", "user"]
        assert PASSAGE in messages[-1]["content"]
        assert "only" in messages[-1]["content"]  # answer with the rephrasing only
    assert len({messages[-1]["content"] for messages in prompts.values()}) == len(STYLES)
    assert "child" in prompts["easy"][-1]["content"] and "Wikipedia" in prompts["medium"][-1]["content"]
    assert "scholarly" in prompts["hard"][-1]["content"] and "Question" in prompts["qa"][-1]["content"]
    assert PROMPT_VERSION == "wrap-v1"


def test_unknown_style_names_the_valid_ones():
    with pytest.raises(ValueError, match="easy, medium, hard, qa"):
        wrap_messages("pirate", PASSAGE)


# ------------------------------------------------------------------------------------------------ chunking


@pytest.fixture(scope="module")
def o200k():
    if not (O200K.is_file() and FLORES.is_dir()):
        pytest.skip("needs ../shared/data (the o200k_base rank file and FLORES-200 dev beside the checkout)")
    from tokenizer_training.loading import load_tokenizer

    tokenizer = load_tokenizer(O200K)
    return lambda text: len(tokenizer.encode_batch([text])[0])


def flores_document(lang: str, sentences: int = 120, per_paragraph: int = 6) -> str:
    """Real sentences as paragraphs; CJK sentences follow each other with no space, as written."""
    lines = (FLORES / f"{lang}.txt").read_text(encoding="utf-8").splitlines()[:sentences]
    joiner = "" if lang in ("zho_Hans", "jpn_Jpan") else " "
    return "\n\n".join(joiner.join(lines[i : i + per_paragraph]) for i in range(0, len(lines), per_paragraph))


@pytest.mark.parametrize("lang", ["eng_Latn", "fra_Latn", "zho_Hans", "jpn_Jpan"])
def test_real_text_chunks_near_target_on_sentence_ends_and_nothing_lost(o200k, lang):
    document = flores_document(lang)
    calls = []
    chunks = chunk_document(document, lambda text: calls.append(text) or o200k(text), target_tokens=300)
    sizes = [o200k(chunk) for chunk in chunks]
    assert_covers(chunks, document)
    assert len(chunks) >= 8
    assert max(sizes) <= 450, sizes  # never past 1.5 x target: no FLORES sentence is that long
    assert min(sizes[:-1]) >= 150, sizes  # about the target, not fragments
    assert all(SENTENCE_END.search(chunk) for chunk in chunks), [chunk[-20:] for chunk in chunks]
    assert len(calls) <= 1.5 * 120  # about one call per sentence (a FLORES line holds one or two), not per character


def every_sentence_fills_a_chunk(text: str) -> int:
    """A counter that makes each sentence a chunk of its own, so the chunks show where sentences end."""
    return 10


def test_cjk_sentences_end_at_full_stops_without_spaces():
    chunks = chunk_document("第一句。第二句！第三句？」最后", every_sentence_fills_a_chunk, target_tokens=10)
    assert chunks == ["第一句。", "第二句！", "第三句？」", "最后"]
    chunks = chunk_document("日本語の文です。次の文です。", every_sentence_fills_a_chunk, target_tokens=10)
    assert chunks == ["日本語の文です。", "次の文です。"]


def test_western_sentences_end_at_punctuation_and_paragraphs_but_not_abbreviations():
    text = "Il pleut. Vraiment ? « Oui ! » Puis\n\nun paragraphe sans point\nsur deux lignes Voir p. ex. la note."
    assert chunk_document(text, every_sentence_fills_a_chunk, target_tokens=10) == [
        "Il pleut.",
        "Vraiment ?",
        "« Oui ! »",
        "Puis",
        "un paragraphe sans point\nsur deux lignes Voir p. ex. la note.",  # a lowercase word follows "p." and "ex."
    ]


def test_long_sentence_is_split_on_whitespace_with_few_counts():
    sentence = " ".join(f"word{i}" for i in range(200))
    calls = []
    chunks = chunk_document(sentence, lambda text: calls.append(text) or words(text), target_tokens=30)
    assert_covers(chunks, sentence)
    assert " ".join(chunks).split() == sentence.split()  # cut between words, never inside one
    assert all(words(chunk) <= 45 for chunk in chunks)
    assert len(calls) < 40  # not one call per word


def test_long_text_without_spaces_is_split_on_characters():
    text = "あいうえおかきくけこ" * 30  # 300 characters, no spaces, no sentence end
    calls = []
    chunks = chunk_document(text, lambda piece: calls.append(piece) or characters(piece), target_tokens=40)
    assert "".join(chunks) == text
    assert all(len(chunk) <= 60 for chunk in chunks)
    assert len(calls) < 50  # not one call per character


def test_tiny_tail_joins_the_previous_chunk():
    nine = "one two three four five six seven eight nine."
    chunks = chunk_document(f"{nine} {nine} The end.", words, target_tokens=10)
    assert chunks == [nine, f"{nine} The end."]


def test_tail_stays_apart_when_joining_would_pass_the_ceiling():
    ten = "A B C D E F G H I J."
    chunks = chunk_document(f"Four words right here. {ten} The end.", words, target_tokens=10)
    assert chunks == [f"Four words right here. {ten}", "The end."]  # 14 + 2 > 15


def test_blank_text_has_no_chunks_and_target_must_be_positive():
    assert chunk_document(" \n\n \t", words) == []
    with pytest.raises(ValueError, match="target_tokens"):
        chunk_document(PASSAGE, words, target_tokens=0)


# ------------------------------------------------------------------------------------------------ cleaning


@pytest.mark.parametrize(
    "raw",
    [
        f"Here is a paraphrase:\n\n{PASSAGE}",
        f"Here's the rephrased text:\n{PASSAGE}",
        f"Sure! Here is the passage in simple language:\n\n{PASSAGE}",
        f"Paraphrased text:\n{PASSAGE}",
        f"Rephrased passage: {PASSAGE}",
        f"Certainly, here’s a rephrased version of the passage:\n\n{PASSAGE}",
        f"Certainly! Below is the rephrased text in a scholarly style:\n\n{PASSAGE}\n\nI hope this helps!",
        f'Sure, here you go:\n"{PASSAGE}"',
        f"**Paraphrase:**\n{PASSAGE}",
        f"Sure!\n\nHere is the rewritten passage:\n{PASSAGE}\n\nLet me know if you need any further changes.",
        f"Okay, here is the rewritten passage.\n\n{PASSAGE}",
        f"“{PASSAGE}”",
        f"```\n{PASSAGE}\n```",
        f"  {PASSAGE} I hope this helps!  ",
    ],
)
def test_clean_rephrase_strips_preambles_wrappers_and_sign_offs(raw):
    assert clean_rephrase(raw) == PASSAGE


def test_clean_rephrase_keeps_qa_labels_after_a_preamble():
    qa = "Question: When does the river flood?\nAnswer: Every spring."
    assert clean_rephrase(f"Here is the text rephrased as questions and answers:\n\n{qa}") == qa


@pytest.mark.parametrize(
    "legitimate",
    [
        "Paraphrasing is a skill that students learn early: it helps them understand texts.",
        "Question: When does the river flood?\nAnswer: Every spring.",
        "Here is a list of the oldest cities in Europe: Athens, Rome and Plovdiv.",
        "Sure enough, the river flooded: the farmers lost their crops.",
        'The mayor said "yes" and the council said "no".',
        "Opening hours are on the door.\nIf you have any questions, call the museum.",
        "Text messages were first sent in 1992.",
    ],
)
def test_clean_rephrase_keeps_legitimate_text(legitimate):
    assert clean_rephrase(legitimate) == legitimate


@pytest.mark.parametrize(
    ("text", "finish_reason", "reason"),
    [
        (PASSAGE, "length", "truncated"),
        ("", "length", "truncated"),  # a cut answer is set aside as cut, whatever is left
        ("", "stop", "empty_output"),
        ("   \n", None, "empty_output"),
        ("I'm sorry, but I can't help with that request.", "stop", "refusal"),
        ("I’m sorry, but I cannot rephrase this passage.", "stop", "refusal"),
        ("As an AI language model, I do not rewrite text.", "stop", "refusal"),
        ("I cannot paraphrase this text.", "stop", "refusal"),
        (PASSAGE, "stop", None),
        ("As an AI researcher, she studied floods for years.", "stop", None),
        (PASSAGE, None, None),
    ],
)
def test_rephrase_rejection_reasons(text, finish_reason, reason):
    assert rephrase_rejection(text, finish_reason) == reason
    assert reason is None or reason in REASONS


def test_reasons_are_documented():
    assert set(REASONS) == {"truncated", "empty_output", "refusal"}
    assert all(explanation.strip() for explanation in REASONS.values())


# ------------------------------------------------------------------------------------------------ mix


def documents(prefix: str, count: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(f"{prefix}{i:04d}", rng.randint(200, 5000)) for i in range(count)]


def chars(ids: list[str], docs: list[tuple[str, int]]) -> int:
    sizes = dict(docs)
    return sum(sizes[doc_id] for doc_id in ids)


@pytest.mark.parametrize("ratio", [(1, 1), (2, 1), (1, 3)])
@pytest.mark.parametrize("real_count", [40, 400])
def test_select_mix_meets_the_ratio_within_one_document(ratio, real_count):
    real, synthetic = documents("r", real_count, 1), documents("s", 120, 2)
    real_ids, synthetic_ids = select_mix(real, synthetic, ratio, seed=7)
    real_total, synthetic_total = sum(n for _, n in real), sum(n for _, n in synthetic)
    if real_total * ratio[1] >= synthetic_total * ratio[0]:  # real is abundant: all synthetic, some real
        assert synthetic_ids == sorted(doc_id for doc_id, _ in synthetic)
        target, picked, largest = synthetic_total * ratio[0] / ratio[1], chars(real_ids, real), max(n for _, n in real)
    else:
        assert real_ids == sorted(doc_id for doc_id, _ in real)
        target, picked = real_total * ratio[1] / ratio[0], chars(synthetic_ids, synthetic)
        largest = max(n for _, n in synthetic)
    assert abs(picked - target) <= largest
    assert 0 < len(real_ids) <= len(real) and 0 < len(synthetic_ids) <= len(synthetic)


def test_select_mix_is_deterministic_and_independent_of_input_order():
    real, synthetic = documents("r", 300, 3), documents("s", 100, 4)
    first = select_mix(real, synthetic, seed=5)
    assert select_mix(real, synthetic, seed=5) == first
    shuffled_real, shuffled_synthetic = real[:], synthetic[:]
    random.Random(0).shuffle(shuffled_real)
    random.Random(1).shuffle(shuffled_synthetic)
    assert select_mix(shuffled_real, shuffled_synthetic, seed=5) == first
    assert select_mix(real, synthetic, seed=6)[0] != first[0]  # the seed picks the subset


def test_select_mix_refuses_an_empty_side_and_bad_ratios():
    with pytest.raises(ValueError, match="both sides"):
        select_mix([("r1", 100)], [], (1, 1))
    with pytest.raises(ValueError, match="positive"):
        select_mix([("r1", 100)], [("s1", 100)], (0, 1))


def test_parse_ratio():
    assert parse_ratio("1:1") == (1, 1)
    assert parse_ratio(" 2 : 3 ") == (2, 3)


@pytest.mark.parametrize("bad", ["0:1", "1:0", "a:b", "1:2:3", "1", "", "-1:1", "1.5:1"])
def test_parse_ratio_rejects_bad_text(bad):
    with pytest.raises(ValueError, match="REAL:SYNTHETIC"):
        parse_ratio(bad)
