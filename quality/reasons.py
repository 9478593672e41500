"""The reasons lmforge's stages set rows aside for, by stage and step: what the `rejected` gate
accepts. A reason outside this table means a stage changed without its contract, or rows written by
something else; tests/test_quality.py checks the table against what the stages really write.

The ingest filters' reasons are datatrove's own (datatrove 0.10: Gopher, C4, FineWeb filters);
steps that only ever have one reason use the step's name (`RejectedWriter`'s fallback).
"""

from __future__ import annotations

import re

_INGEST = {
    "read": "bad_content_length|binary_body|corrupt_gzip|corrupt_parquet|empty_body|empty_file|invalid_json|invalid_utf8"
    "|missing_text|not_an_object|not_html|not_http|null_text|truncated_file|unusable_file|read",
    "extract": "extraction_timeout|extraction_crashed|extraction_error|no_text_extracted|extract",
    "language": "language_score_below_threshold|language",
    "gopher_repetition": r"dup_line_frac|dup_para_frac|dup_line_char_frac|dup_para_char_frac|top_\d+_gram"
    r"|duplicated_\d+_n_grams|empty",
    "gopher_quality": "gopher_short_doc|gopher_long_doc|gopher_below_avg_threshold|gopher_above_avg_threshold"
    "|gopher_too_many_hashes|gopher_too_many_ellipsis|gopher_too_many_bullets|gopher_too_many_end_ellipsis"
    "|gopher_enough_stop_words|gopher_below_alpha_threshold",
    "c4_quality": r"curly_bracket|document_removed_with_badwords|lorem_ipsum|too_few_sentences|< \d+ paragraphs"
    "|javascript|policy",
    "fineweb_quality": "line_punct_ratio|short_line_ratio|char_dup_ratio|list_ratio|empty",
}
_DEDUP = {"exact": "exact_duplicate", "url": "url_duplicate", "near": "near_duplicate"}
_REQUEST = "request_failed|bad_request"
_SYNTHETIC = {
    "wrap": f"truncated|empty_output|refusal|{_REQUEST}",
    "self_instruct": "too_short|too_long|blacklisted_keyword|write_a_program|leading_punctuation|non_ascii_start"
    f"|similar_to_pool|no_instance_parsed|empty_output|copied_demonstration|input_equals_output|ends_with_colon"
    f"|truncated|{_REQUEST}",
    "preferences": f"gap_below_margin|responses_truncated|judge_invalid|identical_texts|too_few_usable|{_REQUEST}",
    "best_of_n": f"too_few_usable|scores_tied|identical_texts|truncated|empty|judge_invalid|{_REQUEST}",
}
KNOWN: dict[str, dict[str, str]] = {"ingest": _INGEST, "dedup": _DEDUP, "synthetic": _SYNTHETIC}


def known_reasons_pattern() -> str:
    """One regular expression over `stage/step/reason` that matches exactly the known triples."""
    alternatives = [
        f"{re.escape(stage)}/{re.escape(step)}/(?:{reasons})" for stage, steps in KNOWN.items() for step, reasons in steps.items()
    ]
    return "^(?:" + "|".join(alternatives) + ")$"
