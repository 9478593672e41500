"""What a validation checks beyond the suites' fixed rules: thresholds, the languages the lake
declares, the sample size, and expectations a user adds by name."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

KINDS = ("documents", "rejected", "rephrased", "instructions", "preferences", "mix", "tokens")


class ExpectationSpec(BaseModel):
    """One more GX expectation for every dataset of a kind, by its GX name:
    `{"kind": "documents", "type": "expect_column_values_to_be_between", "kwargs": {"column": "n_words", "min_value": 50}}`."""

    kind: str
    type: str
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ValidateConfig(BaseModel):
    # A shard above this many rows is validated on a seeded sample of this many: GX on pandas handles
    # ~100k short rows in about a second per expectation group (bench/validate.py), and a defect that
    # touches 0.01% of rows still shows in such a sample with probability ~1 - e^-10. The checks across
    # shards (unique ids, exact duplicates, source ids, row counts) always read every row's keys.
    sample_rows: int = Field(100_000, ge=1)
    seed: int = 0
    languages: list[str] | None = Field(
        None, description="FLORES codes the lake may hold (e.g. eng_Latn); None: any well-formed code"
    )
    rouge_l_max: float = Field(0.7, gt=0, le=1, description="instructions: highest ROUGE-L to the rest of the pool, exclusive")
    preference_margin: float | None = Field(
        None, ge=0, description="preferences: smallest score gap; None: the margin the generating run used (else 1)"
    )
    wrap_styles: list[str] = ["easy", "medium", "hard", "qa"]
    wrap_length_ratio: tuple[float, float] = (0.2, 5.0)  # rephrasing chars / source chunk chars
    expectations: list[ExpectationSpec] = Field(default_factory=list)
    warn_only: bool = False  # report failures without stopping the stages downstream

    @field_validator("expectations")
    @classmethod
    def _known_expectations(cls, specs: list[ExpectationSpec]) -> list[ExpectationSpec]:
        """An unknown expectation fails when configured, naming the nearest GX names, not mid-run."""
        import difflib

        from great_expectations.exceptions import ExpectationNotFoundError
        from great_expectations.expectations.registry import _registered_expectations, get_expectation_impl

        for spec in specs:
            if spec.kind not in KINDS:
                raise ValueError(f"unknown dataset kind {spec.kind!r} for {spec.type}: expected one of {', '.join(KINDS)}")
            try:
                get_expectation_impl(spec.type)
            except ExpectationNotFoundError:
                near = difflib.get_close_matches(spec.type, list(_registered_expectations), n=3)
                hint = f"; did you mean {', '.join(near)}?" if near else ""
                raise ValueError(f"unknown GX expectation {spec.type!r}{hint}") from None
        return specs
