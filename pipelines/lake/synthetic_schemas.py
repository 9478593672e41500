"""The synthetic datasets' names and schemas (DESIGN §3), beside the documents' in `contract.py`.

Every generated row records what made it: the model, the prompt version and the sampling
parameters (JSON), so rows from different models or prompts can be told apart, filtered and cited.
What a generator set aside (failed requests, empty or truncated outputs, filtered instructions,
malformed judge answers, best-of-n prompts without two different scores) goes to
`synthetic/rejected/<generator>/` in the rejections' schema.
"""

from __future__ import annotations

import pyarrow as pa

SYNTHETIC_WRAP = "synthetic/wrap"
SYNTHETIC_SELF_INSTRUCT = "synthetic/self_instruct"
SYNTHETIC_PREFERENCES = "synthetic/preferences"
SYNTHETIC_MIX = "synthetic/mix"
SYNTHETIC_BEST_OF_N = "synthetic/best_of_n"
SYNTHETIC_REJECTED = "synthetic/rejected"

_PROVENANCE = [
    pa.field("model", pa.string(), nullable=False),
    pa.field("prompt_version", pa.string(), nullable=False),
    pa.field("sampling", pa.string(), metadata={"doc": "sampling parameters, JSON"}),
    pa.field("run", pa.string(), metadata={"doc": "fingerprint of the run that generated it"}),
]

MESSAGES = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))

# rephrased: one WRAP rephrasing of one ~300-token chunk of a document, in one style
WRAP_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False, metadata={"doc": "the document's id in documents"}),
        pa.field("chunk", pa.int32(), metadata={"doc": "the chunk's position in its document"}),
        pa.field("style", pa.string(), nullable=False),
        pa.field("lang", pa.string()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("source_text", pa.string(), metadata={"doc": "the chunk that was rephrased"}),
        pa.field("n_chars", pa.int32()),
        pa.field("n_tokens", pa.int32(), metadata={"doc": "completion tokens"}),
        pa.field("finish_reason", pa.string()),
        *_PROVENANCE,
    ]
)

# instructions: Self-Instruct tasks with one instance each, as SFT-ready chat messages
SELF_INSTRUCT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("input", pa.string()),
        pa.field("output", pa.string(), nullable=False),
        pa.field("is_classification", pa.bool_()),
        pa.field("rouge_l_max", pa.float32(), metadata={"doc": "highest ROUGE-L to the pool when accepted"}),
        pa.field("messages", MESSAGES),
        *_PROVENANCE,
    ]
)

# preferences: two responses to one prompt, the better one by an LLM judge's 1-10 score
PREFERENCES_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), metadata={"doc": "the instruction's id"}),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
        pa.field("score_chosen", pa.int32()),
        pa.field("score_rejected", pa.int32()),
        pa.field("judge", pa.string(), metadata={"doc": "judge model and rubric version"}),
        pa.field("n_responses", pa.int32()),
        *_PROVENANCE,
    ]
)

# best-of-n: n sampled responses to one prompt, each scored (a reward model or an LLM judge); the best is an
# SFT example (`messages`), best and worst a preference pair (`prompt`, `chosen`, `rejected`)
BEST_OF_N_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), metadata={"doc": "the instruction's id"}),
        pa.field("prompt", pa.string(), nullable=False, metadata={"doc": "the user turn: instruction, then input if any"}),
        pa.field("n", pa.int32(), metadata={"doc": "responses asked for"}),
        pa.field("candidates", pa.list_(pa.string()), nullable=False, metadata={"doc": "every response that came back"}),
        pa.field("finish_reasons", pa.list_(pa.string()), metadata={"doc": "each candidate's; length: cut by max_tokens"}),
        pa.field(
            "scores",
            pa.list_(pa.float64()),
            nullable=False,
            metadata={"doc": "each candidate's score; null: not scored (cut, empty, beyond the scorer's window, no verdict)"},
        ),
        pa.field("chosen", pa.string(), nullable=False, metadata={"doc": "the best-scored candidate"}),
        pa.field("rejected", pa.string(), nullable=False, metadata={"doc": "the worst-scored candidate"}),
        pa.field("score_chosen", pa.float64()),
        pa.field("score_rejected", pa.float64()),
        pa.field("messages", MESSAGES, metadata={"doc": "the prompt and the best answer, for SFT"}),
        pa.field("scorer", pa.string(), metadata={"doc": "reward checkpoint (and weights digest), or judge model and rubric"}),
        *_PROVENANCE,
    ]
)

# the pretraining mix: real documents and WRAP rephrasings at a given ratio of characters
MIX_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False, metadata={"doc": "real | synthetic"}),
        pa.field("source_id", pa.string()),
        pa.field("style", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("n_chars", pa.int32()),
    ]
)

SYNTHETIC_SCHEMAS: dict[str, pa.Schema] = {
    SYNTHETIC_WRAP: WRAP_SCHEMA,
    SYNTHETIC_SELF_INSTRUCT: SELF_INSTRUCT_SCHEMA,
    SYNTHETIC_PREFERENCES: PREFERENCES_SCHEMA,
    SYNTHETIC_BEST_OF_N: BEST_OF_N_SCHEMA,
    SYNTHETIC_MIX: MIX_SCHEMA,
}
