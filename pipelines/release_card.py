"""The dataset card of a release: the Hub's YAML metadata (`DatasetCardData`: configs, licence, languages,
sizes, tasks) and prose on how the data was made, how it was validated and what it cannot do.

Everything in it comes from the lake as it is: the manifests (runs and their parameters), the catalog
(filter, dedup and generation statistics), the validation summaries. Nothing depends on the time of
the build, so an unchanged lake gives the same card.
"""

from __future__ import annotations

import csv
import json
import posixpath
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from huggingface_hub import DatasetCard, DatasetCardData

from pipelines.lake import DOCUMENTS_CLEAN, Lake, RunRecord, lmforge_version, read_manifest
from pipelines.lake.catalog import query

if TYPE_CHECKING:
    from pipelines.release import CheckedDataset, ReleasedConfig

DESCRIPTIONS = {
    "documents": "web documents after extraction, language identification, quality filters, PII redaction and "
    "deduplication (exact, URL and MinHash near-duplicates): one copy of each",
    "documents_clean": "the same documents before deduplication: extracted, language-identified, quality-filtered, PII-redacted",
    "wrap": "WRAP rephrasings (Maini et al. 2024) of document chunks, one row per chunk and style, with the chunk "
    "they rephrase (`source_text`)",
    "self_instruct": "Self-Instruct tasks (Wang et al. 2022) with one instance each, as instruction/input/output and "
    "as chat `messages` for SFT",
    "preferences": "preference pairs: two sampled responses to one prompt, `chosen` and `rejected` by an LLM judge's scores",
    "best_of_n": "best-of-n samples: n scored responses to one prompt; the best as an SFT example (`messages`), best "
    "and worst as a preference pair",
    "pretrain_mix": "the pretraining mix: real documents and their WRAP rephrasings at a ratio of characters (`origin`)",
}
SYNTHETIC = ("wrap", "self_instruct", "preferences", "best_of_n", "pretrain_mix")
DOCUMENTS = ("documents", "documents_clean")
PRETRAINING = ("documents", "documents_clean", "wrap", "pretrain_mix")
GRADER = {"preferences": "judge", "best_of_n": "scorer"}
# what a column means to a user, where the lake schema's own note is missing or speaks of the lake
COLUMN_DOCS = {
    "id": "unique id of the row",
    "text": "the text (documents: extracted and PII-redacted; rephrasings: the model's output)",
    "url": "where the page came from",
    "lang": "language, FLORES-style code (e.g. eng_Latn)",
    "lang_score": "lid.176's confidence in `lang`",
    "n_chars": "characters in `text`",
    "date": "the source's date, when it had one",
    "minhash_cluster_size": "documents in its near-duplicate cluster (1: no near-duplicate)",
    "style": "WRAP style (easy, medium, hard, qa)",
    "finish_reason": "why generation stopped (stop, length)",
    "model": "the model that generated the row",
    "prompt_version": "the prompt template's version",
    "instruction": "the task",
    "input": "the task's input (may be empty)",
    "output": "the answer",
    "is_classification": "a classification task (generated output-first)",
    "messages": "chat turns (role, content), for SFT",
    "prompt": "the user turn",
    "chosen": "the preferred response",
    "rejected": "the other response",
    "score_chosen": "the chosen response's score",
    "score_rejected": "the rejected response's score",
}  # the column naming who scored the pairs
# the Hub's size buckets (datasets/utils/resources/size_categories.json)
SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"), (10**7, "1M<n<10M")]
SIZES += [(10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"), (10**11, "10B<n<100B"), (10**12, "100B<n<1T")]


# --- languages ---------------------------------------------------------------------------------------


@cache
def _language_table() -> dict[str, tuple[str, str]]:
    """ISO 639-3 -> (Hub code, name), from the language table datatrove ships (the one ingest's language ID
    maps its labels through): the ISO 639-1 code where there is one, as the Hub prefers, else the 639-3 code."""
    best: dict[str, tuple[int, str, str]] = {}
    with (resources.files("datatrove") / "assets" / "tokenizer_assignment.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            code_1, code_3 = row["code_1"], row["code_3"]
            rank = 2 if code_1 and row["default_code_1"] == "TRUE" else 1 if code_1 else 0
            if code_3 not in best or rank > best[code_3][0]:
                best[code_3] = (rank, code_1 or code_3, best.get(code_3, (0, "", row["name"]))[2])
    return {code: (hub, name) for code, (_, hub, name) in best.items()}


def hub_language(lang: str) -> str | None:
    """`eng_Latn` -> `en`, `cmn_Hani` -> `zh`, `ast_Latn` -> `ast`; None for an unknown language (`und_Zyyy`)."""
    code = lang.split("_")[0]
    if code == "und" or not code.isalpha() or not 2 <= len(code) <= 3:
        return None
    return _language_table().get(code, (code, code))[0]


def language_name(lang: str) -> str:
    return _language_table().get(lang.split("_")[0], ("", lang))[1]


def size_category(rows: int) -> str:
    return next((label for bound, label in SIZES if rows < bound), "n>1T")


# --- what the catalog and the manifests say ----------------------------------------------------------


@dataclass
class Facts:
    ingest_runs: list[RunRecord] = field(default_factory=list)
    dedup_runs: list[RunRecord] = field(default_factory=list)
    set_aside: list[tuple] = field(default_factory=list)  # (step, reason, documents) of ingest
    removed: list[tuple] = field(default_factory=list)  # (reason, documents) of dedup
    by_language: list[tuple] = field(default_factory=list)  # (lang, clean, deduplicated)
    generators: dict[str, list[tuple]] = field(default_factory=dict)  # dataset -> (model, prompt_version, grader, rows)
    generator_set_aside: dict[str, list[tuple]] = field(default_factory=dict)  # generator -> (reason, rows)
    mix: list[tuple] = field(default_factory=list)  # (origin, rows, chars)


def gather_facts(lake: Lake, names: list[str]) -> Facts:
    """The statistics the card reports, from the catalog (`query`, read-only) and the manifests."""
    facts = Facts()
    clean = read_manifest(lake, DOCUMENTS_CLEAN)
    facts.ingest_runs = [r for r in clean.runs if r.stage == "ingest"] if clean else []

    def rows(sql: str) -> list[tuple]:
        return query(lake, sql).rows

    if set(names) & {*DOCUMENTS, "wrap", "pretrain_mix"}:
        facts.set_aside = rows(
            "SELECT step, reason, count(*) AS n FROM rejected WHERE stage = 'ingest' GROUP BY ALL ORDER BY n DESC, step, reason"
        )
        facts.removed = rows(
            "SELECT reason, count(*) AS n FROM rejected WHERE stage = 'dedup' GROUP BY ALL ORDER BY n DESC, reason"
        )
        facts.by_language = rows(
            "SELECT lang, count(*) FILTER (d = 'c'), count(*) FILTER (d = 'd') FROM "
            "(SELECT lang, 'c' AS d FROM documents_clean UNION ALL SELECT lang, 'd' FROM documents) "
            "GROUP BY lang ORDER BY 3 DESC, 2 DESC, lang"
        )
        dedup = read_manifest(lake, "documents/dedup")
        facts.dedup_runs = [r for r in dedup.runs if r.stage == "dedup"] if dedup else []
    for name in names:
        if name in GRADER or name in ("wrap", "self_instruct"):
            grader = GRADER.get(name, "NULL")
            facts.generators[name] = rows(
                f"SELECT model, prompt_version, {grader}, count(*) AS n FROM {name} GROUP BY ALL ORDER BY n DESC, model"
            )
        if name == "pretrain_mix":
            facts.mix = rows("SELECT origin, count(*), sum(n_chars) FROM pretrain_mix GROUP BY origin ORDER BY origin")
            facts.generators[name] = rows(
                "SELECT w.model, w.prompt_version, NULL, count(*) AS n FROM pretrain_mix m LEFT JOIN wrap w USING (id) "
                "WHERE m.origin = 'synthetic' GROUP BY ALL ORDER BY n DESC, 1"
            )
    for generator, reason, n in rows(
        "SELECT step, reason, count(*) AS n FROM synthetic_rejected GROUP BY ALL ORDER BY step, n DESC, reason"
    ):
        facts.generator_set_aside.setdefault(generator, []).append((reason, n))
    return facts


# --- the card ----------------------------------------------------------------------------------------


def table(columns: list[str], rows: list[list | tuple]) -> str:
    def cell(value: object) -> str:
        text = "" if value is None else f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join([*lines, *("| " + " | ".join(cell(v) for v in r) + " |" for r in rows)])


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def card_data(checked: list[CheckedDataset], configs: list[ReleasedConfig], repo: str, license: str) -> DatasetCardData:
    names = [c.name for c in checked]
    langs = sorted({c.lang for c in configs if c.lang})
    codes = sorted({code for lang in langs if (code := hub_language(lang))})
    sizes = sorted({size_category(c.rows) for c in configs if c.lang is None}, key=[label for _, label in SIZES].index)
    tags = ["lmforge"] + (["synthetic"] if set(names) & set(SYNTHETIC) else [])
    tags += ["pretraining"] if set(names) & set(PRETRAINING) else []
    tags += ["sft"] if set(names) & {"self_instruct", "best_of_n"} else []
    tags += ["preference", "dpo"] if set(names) & {"preferences", "best_of_n"} else []
    found_in_mix = {"found"} if "pretrain_mix" in names else set()  # its real documents
    entries = []
    for i, c in enumerate(configs):
        entry = {"config_name": c.name, "data_files": [{"split": "train", "path": c.data_files}]}
        entries.append(entry | {"default": True} if i == 0 else entry)
    return DatasetCardData(
        language=codes or None,
        license=license,
        pretty_name=repo.split("/")[-1].replace("-", " ").replace("_", " "),
        size_categories=sizes,
        task_categories=["text-generation"],
        task_ids=["language-modeling"] if set(names) & set(PRETRAINING) else None,
        multilinguality="multilingual" if len(codes) > 1 else "monolingual" if codes else None,
        language_creators=sorted({"machine-generated" if n in SYNTHETIC else "found" for n in names} | found_in_mix),
        annotations_creators=["machine-generated"] if set(names) & {"preferences", "best_of_n"} else ["no-annotation"],
        source_datasets=["original"],
        tags=tags,
        configs=entries,
    )


def render_card(lake: Lake, checked: list[CheckedDataset], configs: list[ReleasedConfig], repo: str, license: str) -> str:
    """The README.md of the release: YAML metadata, then the prose."""
    from pipelines.release import DROPPED, release_schema

    names = [c.name for c in checked]
    facts = gather_facts(lake, names)
    total = sum(c.rows for c in configs if c.lang is None)
    synthetic_rows = sum(c.rows for c in configs if c.lang is None and c.dataset in SYNTHETIC and c.dataset != "pretrain_mix")
    synthetic_rows += next((n for origin, n, _ in facts.mix if origin == "synthetic"), 0)
    parts = [
        f"# {repo.split('/')[-1]}",
        f"{len(checked)} {'dataset' if len(checked) == 1 else 'datasets'} from an lmforge lake (raw web text → a lake "
        "of parquet datasets), built with "
        f"lmforge {lmforge_version()}: "
        + "; ".join(f"**{c.name}**, {DESCRIPTIONS[c.name]}" for c in checked)
        + f". {total:,} rows in all, {share(synthetic_rows, total)} of them machine-generated.",
        "## Configs",
        table(
            ["config", "rows", "parquet", "files", "language"],
            [
                [
                    f"`{c.name}`",
                    c.rows,
                    megabytes(c.bytes),
                    len(c.files),
                    f"{language_name(c.lang)} (`{c.lang}`)" if c.lang else "all",
                ]
                for c in configs
            ],
        ),
        f'`load_dataset("{repo}", "{configs[0].name}")` loads the default config; each language of a dataset is a '
        "config of its own. Every config has one split, `train`.",
        "## How it was made",
        table(
            ["dataset", "lake dataset", "fingerprint", "runs", "rows", "updated"],
            [
                [c.name, f"`{c.folder}`", f"`{c.version}`", len(c.manifest.runs), c.manifest.rows, c.manifest.updated]
                for c in checked
            ],
        ),
        "The fingerprint names the runs a dataset's manifest lists: the version that was validated and released.",
    ]
    if set(names) & {*DOCUMENTS, "wrap", "pretrain_mix"}:
        parts += documents_section(facts)
    for c in checked:
        if c.name in SYNTHETIC:
            parts += synthetic_section(c, facts)
    parts += ["### Runs", runs_table(checked, facts)]
    parts += ["## Validation", validation_section(checked)]
    parts += ["## Columns"]
    for c in checked:
        schema = release_schema(c.name)
        rows = [
            [f"`{f.name}`", str(f.type), COLUMN_DOCS.get(f.name) or (f.metadata or {}).get(b"doc", b"").decode()] for f in schema
        ]
        dropped = DROPPED.get(c.name)
        note = f" Not released: {', '.join(f'`{d}`' for d in dropped)} (lake-internal)." if dropped else ""
        parts += [f"**{c.name}**.{note}", table(["column", "type", "description"], rows)]
    parts += ["## Licence", licence_section(license), "## Known limitations", limitations(names, facts, checked, total)]
    body = "\n\n".join(parts) + "\n"
    return str(DatasetCard(f"---\n{card_data(checked, configs, repo, license).to_yaml()}\n---\n\n{body}"))


def documents_section(facts: Facts) -> list[str]:
    parts = ["### Documents"]
    inputs = sorted(
        {(posixpath.basename(i.path.rstrip("/")), i.size, i.sha256 or "") for r in facts.ingest_runs for i in r.inputs}
    )
    if inputs:
        listed = ", ".join(
            f"`{name}` ({megabytes(size)}{f', sha256 {digest[:12]}…' if digest else ''})" for name, size, digest in inputs[:20]
        )
        more = f" and {len(inputs) - 20} more" if len(inputs) > 20 else ""
        parts.append(f"Sources: {listed}{more}.")
    for run in facts.ingest_runs:
        p = run.parameters
        parts.append(
            f"Ingest (run `{run.run}`, datatrove): extraction with {p.get('extractor', '?')}, language ID with fastText "
            f"lid.176 (documents scoring ≤ {p.get('language_threshold', '?')} set aside), Gopher repetition and quality, "
            f"C4 and FineWeb quality filters, PII redaction (e-mail and IP addresses): {'on' if p.get('redact_pii') else 'off'}."
        )
    clean = sum(c for _, c, _ in facts.by_language)
    aside = sum(n for _, _, n in facts.set_aside)
    if clean or aside:
        parts.append(
            f"Of {clean + aside:,} documents read, {clean:,} were kept ({share(clean, clean + aside)}) and {aside:,} set aside:"
        )
        parts.append(table(["step", "reason", "documents"], facts.set_aside))
    for run in facts.dedup_runs:
        p = run.parameters
        kinds = {
            "exact": "exact copies (normalised text; the earliest kept)",
            "url": "copies of one normalised URL (the longest kept)",
            "minhash": f"near duplicates by MinHash LSH on word {p.get('n_grams')}-grams, {p.get('bands')} bands × "
            f"{p.get('rows')} rows, caught from a Jaccard similarity of about {p.get('threshold', 0):.2f} (the earliest kept; "
            "`minhash_cluster_size` says how many documents its cluster held)",
        }
        removes = "; ".join(text for kind, text in kinds.items() if p.get(kind)) or "nothing"
        kept = sum(d for _, _, d in facts.by_language)
        removed = ", ".join(f"{n:,} {reason.replace('_', ' ')}s" for reason, n in facts.removed) or "none"
        parts.append(
            f"Dedup (run `{run.run}`) removes {removes}. Of {clean:,} documents, {kept:,} were kept; removed: {removed}."
        )
    if facts.by_language:
        rows = [[language_name(lang), f"`{lang}`", hub_language(lang) or "", c, d] for lang, c, d in facts.by_language]
        parts.append(table(["language", "lake code", "Hub code", "clean", "deduplicated"], rows))
    return parts


def synthetic_section(checked: CheckedDataset, facts: Facts) -> list[str]:
    name = checked.name
    parts = [f"### {name} (synthetic)"]
    if name == "pretrain_mix":
        rows = {origin: (n, chars or 0) for origin, n, chars in facts.mix}
        real, synthetic = rows.get("real", (0, 0)), rows.get("synthetic", (0, 0))
        parts.append(
            f"Synthetic share: {share(synthetic[0], real[0] + synthetic[0])} of rows, "
            f"{share(synthetic[1], real[1] + synthetic[1])} of characters "
            f"({synthetic[0]:,} rephrasings, {real[0]:,} real documents)."
        )
    else:
        parts.append("Every row is machine-generated.")
    generated = facts.generators.get(name, [])
    if generated:
        grader = GRADER.get(name)
        columns = ["model", "prompt version", *([grader] if grader else []), "rows"]
        parts.append(table(columns, [[m or "(not in wrap)", v, *([g] if grader else []), n] for m, v, g, n in generated]))
    for run in checked.manifest.runs:
        parameters = {k: v for k, v in run.parameters.items() if k not in ("model", "prompt_version")}
        settings = f": `{json.dumps(parameters, sort_keys=True)}`" if parameters else ""
        parts.append(f"Run `{run.run}` ({run.stage}, lmforge {run.lmforge_version}){settings}.")
        if aside := facts.generator_set_aside.get(run.stage.split("/")[-1]):
            listed = ", ".join(f"{n:,} {reason}" for reason, n in aside)
            parts.append(f"Set aside by the generator (never written as rows): {listed}.")
    return parts


def runs_table(checked: list[CheckedDataset], facts: Facts) -> str:
    runs: dict[str, tuple[str, RunRecord]] = {}
    for c in checked:
        for r in c.manifest.runs:
            runs.setdefault(r.run, (c.name, r))
    if any(c.name in DOCUMENTS for c in checked):  # the ingest runs behind the documents
        for r in facts.ingest_runs:
            runs.setdefault(r.run, ("(its documents)", r))
    rows = [
        [name, r.stage, f"`{r.run}`", r.finished, r.lmforge_version, f"`{json.dumps(r.parameters, sort_keys=True)}`"]
        for name, r in sorted(runs.values(), key=lambda nr: (nr[1].started, nr[1].run))
    ]
    return table(["dataset", "stage", "run", "finished", "lmforge", "parameters"], rows)


def validation_section(checked: list[CheckedDataset]) -> str:
    from pipelines.release import describe_failure

    rows = []
    for c in checked:
        s = c.summary
        if s.success:
            result = "passed"
        else:
            result = "failed, not enforced (warn-only): " + "; ".join(describe_failure(f) for f in s.failed)
        sample = f"{s.rows_validated:,} of {s.rows:,}" if s.rows_validated < s.rows else f"{s.rows:,} (all)"
        rows.append([c.name, s.kind, s.validated_at, sample, s.shards, s.expectations, result])
    intro = "The quality gate of each dataset as released (Great Expectations suites per dataset kind):"
    return intro + "\n\n" + table(["dataset", "suite", "validated", "rows checked", "shards", "expectations", "result"], rows)


def licence_section(license: str) -> str:
    text = f"`{license}`."
    if license == "other":
        text += (
            " The texts keep the licences of their sources; lmforge does not relicense them. lmforge's sample corpus "
            "(`lmforge run`) is Debian's documentation: debian-reference (GPL-2+), debian-handbook (GPL-2+ or "
            "CC BY-SA 3.0) and python3-doc (PSF License). Check each source before reuse, and release with "
            "`--license <Hub licence id>` when all sources share one."
        )
    return text


def limitations(names: list[str], facts: Facts, checked: list[CheckedDataset], total: int) -> str:
    items = []
    if set(names) & {*DOCUMENTS, "pretrain_mix"}:
        items += [
            "Languages come from fastText lid.176 on the extracted text: short or mixed-language documents can be "
            "mislabelled (`lang_score` is the model's confidence).",
            "The Gopher, C4 and FineWeb filters were tuned on English web text and are applied to every language as "
            "they are: some languages lose more documents than their quality warrants (see the tables above).",
        ]
    if set(names) & {*DOCUMENTS, "wrap", "pretrain_mix"}:
        items.append(
            "PII redaction replaces e-mail addresses and public IP addresses only; names, phone numbers and postal "
            "addresses remain."
        )
    if "documents" in names or "pretrain_mix" in names:
        items.append(
            "Near-duplicate removal misses copies edited beyond the MinHash threshold; boilerplate shared across pages stays."
        )
    if set(names) & set(SYNTHETIC):
        items.append(
            "Synthetic rows were generated without human review by the models named above: facts can be wrong, and "
            "rephrasings can drift from their source."
        )
        models = {m for rows in facts.generators.values() for m, *_ in rows if m}
        if any("dequantized" in m or "Q4" in m for m in models):
            items.append(
                "The generating model's weights are 4-bit Q4_1 GGUF weights dequantized to fp32, not the original "
                "bf16 checkpoint: its outputs differ from the original model's."
            )
    if set(names) & {"preferences", "best_of_n"}:
        items.append("The chosen/rejected labels are a model's scores, not human judgements; small judges are noisy.")
    if any(not c.summary.success for c in checked):
        items.append("Some validation failures were reported but not enforced (warn-only): see Validation.")
    if total < 10_000:
        items.append(f"A small release ({total:,} rows): enough to test pipelines, not to train a model of any size.")
    return "\n".join(f"- {item}" for item in items)
