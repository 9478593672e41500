"""`lmforge ablate`: the tiny model from the same seeds on each data mix, for the same token budget, every
arm measured on the same held-out text. Real parts only: a small lake (documents, their cleaned superset,
a few synthetic rephrasings, two tokenizers), real training runs of a few steps, the real Prefect flows
and the CLI; the report, its resumption, and the faults a user meets."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from builders import LANGS, PROSE, documents_lake, list_run, run_id, tokenized_lake
from pydantic import ValidationError
from test_console import lmforge

from flows.ablate import ABLATION_REPORTS, ablate_flow
from model.ablate import AblationConfig, Arm, parse_arm, run_configs
from model.data import DataError
from model.evaluate import EvalConfig
from model.tasks import token_manifest
from model.tokens import TokenizeError
from pipelines.lake import DOCUMENTS_CLEAN, Lake, write_table
from pipelines.lake.quality_record import current_quality_summary
from pipelines.lake.synthetic_schemas import SYNTHETIC_WRAP, WRAP_SCHEMA

TOKENIZER, OTHER = "tok", "other"
SEQ_LEN, BATCH = 32, 8
STEPS = 4
TOKENS = STEPS * SEQ_LEN * BATCH  # 1,024 training tokens per run: four steps of 8×32
HELDOUT_BYTES, LINES = 3000, 6


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model's matrices are too small to share between threads: on 2 cores with another process busy,
    a second thread (here and in the CLI's process) spins against it and an ablation takes ten times as long."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    """`documents` (210 documents, ~36k training tokens with `tok`), `documents/clean` (its superset: what
    dedup would have removed), `synthetic/wrap` (six rephrasings, a few hundred tokens: a budget reads it
    more than once) and a second tokenizer, `other`; beside the lake, aligned lines in three languages."""
    from tokenizer_training.train import TokenizerConfig, train_tokenizer

    root = tmp_path_factory.mktemp("ablate")
    lake = tokenized_lake(root / "lake", TOKENIZER)
    documents_lake(root / "lake", {"eng_Latn": 150, "fra_Latn": 75, "deu_Latn": 40}, dataset=DOCUMENTS_CLEAN)
    rows = [
        {
            "id": f"wrap-{i}",
            "source_id": f"eng_Latn-{i}",
            "chunk": 0,
            "style": "wikipedia",
            "lang": "eng_Latn",
            "text": f"In short: {PROSE['en'][i]}",
            "source_text": PROSE["en"][i],
            "model": "test",
            "prompt_version": "wrap-v1",
        }
        for i in range(6)
    ]
    run = run_id("wrap")
    write_table(lake, SYNTHETIC_WRAP, f"{run}_00000.parquet", pa.Table.from_pylist(rows, schema=WRAP_SCHEMA))
    list_run(lake, run, SYNTHETIC_WRAP, stage="synthesize")
    train_tokenizer(lake, TokenizerConfig(name=OTHER, vocab_size=300))
    aligned = root / "aligned"
    aligned.mkdir()
    for code in ("eng_Latn", "fra_Latn", "deu_Latn"):
        (aligned / f"{code}.txt").write_text("\n".join(PROSE[LANGS[code]]) + "\n")
    return lake


def aligned_folder(lake: Lake) -> str:
    return str(Path(lake.root).parent / "aligned")


def config(lake: Lake, name: str, *mixes: str, **changes) -> AblationConfig:
    """What `lmforge ablate --name NAME --mix … --tokens 1024 --seq-len 32 --batch-size 8 --parallel ALIGNED
    --max-lines 6 --heldout-bytes 3000` builds (the CLI's defaults for the rest)."""
    evaluation = EvalConfig(parallel=aligned_folder(lake), max_lines=LINES, heldout_bytes=HELDOUT_BYTES)
    values = dict(name=name, arms=[parse_arm(m, TOKENIZER) for m in mixes], tokens=TOKENS, seq_len=SEQ_LEN, batch_size=BATCH)
    return AblationConfig(**(values | dict(evaluation=evaluation) | changes))


def run_folder(lake: Lake, run: str) -> Path:
    return Path(lake.path("checkpoints", run))


def evaluations(lake: Lake, name: str) -> Path:
    return Path(lake.path(ABLATION_REPORTS, f".{name}.evaluations"))


def stamps(paths: list[Path]) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in paths}


# --- arms ----------------------------------------------------------------------------------------


def test_an_arm_is_a_mixture_a_tokenizer_and_overrides():
    clean = parse_arm("clean=documents/clean", TOKENIZER)
    assert clean == Arm(name="clean", mixture="documents/clean", tokenizer=TOKENIZER)
    assert clean.spec == "documents/clean@tok"
    wrap = parse_arm("wrap=documents:1,synthetic/wrap:1", TOKENIZER)
    assert wrap.mixture_names() == ["documents", "synthetic/wrap"] and wrap.tokenizer == TOKENIZER
    tok = parse_arm("tok=documents@other-tok", TOKENIZER)
    assert (tok.mixture, tok.tokenizer) == ("documents", "other-tok")
    hot = parse_arm("hot=documents;lr=0.5", TOKENIZER)
    assert (hot.mixture, hot.tokenizer, hot.overrides) == ("documents", TOKENIZER, {"lr": 0.5})
    assert hot.spec == "documents@tok;lr=0.5"
    both = parse_arm(" slow = documents:2,synthetic/wrap:1 @other ;lr=0.01;warmup=3", TOKENIZER)
    assert (both.name, both.mixture, both.tokenizer) == ("slow", "documents:2,synthetic/wrap:1", "other")
    assert both.overrides == {"lr": 0.01, "warmup": 3}

    # every run of an arm takes its overrides over the ablation's settings; the other arms keep those
    ablation = AblationConfig(name="x", arms=[parse_arm("base=documents", TOKENIZER), both], tokens=TOKENS, seq_len=SEQ_LEN)
    runs = run_configs(ablation)
    assert sorted(runs) == [("base", 0), ("base", 1), ("slow", 0), ("slow", 1)]
    assert (runs["slow", 1].run, runs["slow", 1].seed, runs["slow", 1].data) == ("ablate-x.slow-s1", 1, both.mixture)
    assert (runs["slow", 0].lr, runs["slow", 0].warmup, runs["slow", 0].tokenizer) == (0.01, 3, "other")
    assert (runs["base", 0].lr, runs["base", 0].warmup) == (ablation.lr, 0)
    assert {r.steps for r in runs.values()} == {TOKENS // (SEQ_LEN * ablation.batch_size)}


@pytest.mark.parametrize(
    ("mix", "named"),
    [
        ("documents", ["'documents'", "NAME=DATASET"]),  # no NAME=
        ("=documents", ["'=documents'", "NAME=DATASET"]),
        ("a b=documents", ["'a b=documents'", "NAME=DATASET"]),
        ("clean=", ["'clean='", "NAME=DATASET"]),
        ("wrap=documents:1,synthetic/wrap:x", ["'x'", "synthetic/wrap", "not a number"]),
        ("wrap=documents:0", ["--mix 'wrap=documents:0'", "documents", "positive"]),
        ("hot=documents;lr=fast", ["'hot=documents;lr=fast'", "lr must be a number", "'fast'"]),
        ("hot=documents;warmup=2.5", ["warmup must be a whole number", "'2.5'"]),
        ("hot=documents;steps=10", ["'steps' cannot be set per arm", "lr, warmup, weight_decay, grad_clip"]),
        # checked as the runs' settings are, here rather than once the data is tokenized
        ("hot=documents;lr=-1", ["'hot=documents;lr=-1'", "lr=-1: input should be greater than 0"]),
        ("hot=documents;warmup=-5", ["warmup=-5: input should be greater than or equal to 0"]),
        ("hot=documents;weight_decay=inf", ["weight_decay=inf: not a finite number"]),
    ],
)
def test_a_bad_arm_is_one_error_naming_what_is_wrong(mix, named):
    with pytest.raises(DataError) as error:
        parse_arm(mix, TOKENIZER)
    assert all(part in str(error.value) for part in named), str(error.value)


def test_two_arms_of_one_name_are_refused():
    """Runs and results are keyed by the arm's name: both would otherwise train, and report, the second mix."""
    arms = [parse_arm("a=documents", TOKENIZER), parse_arm("a=documents/clean", TOKENIZER)]
    with pytest.raises(ValidationError, match="two arms are named a: give each --mix its own NAME"):
        AblationConfig(name="x", arms=arms, tokens=TOKENS)


# --- an ablation end to end ------------------------------------------------------------------------


def cli_args(lake: Lake, name: str, *mixes: str) -> list[str]:
    """The `lmforge ablate` arguments `config(lake, name, *mixes)` stands for."""
    args = ["ablate", "--name", name, "--tokenizer", TOKENIZER, "--tokens", str(TOKENS), "--seq-len", str(SEQ_LEN)]
    args += ["--batch-size", str(BATCH), "--parallel", aligned_folder(lake), "--max-lines", str(LINES)]
    args += ["--heldout-bytes", str(HELDOUT_BYTES), "--lake", lake.root]
    return args + [option for mix in mixes for option in ("--mix", mix)]


def test_two_arms_from_two_seeds_are_compared_on_the_same_text_and_the_reproduce_command_retrains_nothing(lake, prefect_harness):
    mixes = ("clean=documents/clean", "dedup=documents")
    command = "lmforge " + shlex.join(cli_args(lake, "cd", *mixes))
    result = ablate_flow(config(lake, "cd", *mixes), lake.root, command)

    out = Path(lake.path(ABLATION_REPORTS, "cd"))
    assert result.out == out
    for made in ("documents/clean", "documents"):  # the token datasets the arms read passed their gate once, before training
        assert current_quality_summary(lake, f"tokens/{TOKENIZER}/{made}").success
    assert all((out / file).stat().st_size > 500 for file in ("report.json", "report.md", "report.html", "curves.png"))
    report = json.loads((out / "report.json").read_text())
    assert report["table"] == result.rows
    table = {row["arm"]: row for row in report["table"]}
    assert list(table) == ["clean", "dedup"]
    clean, dedup = table["clean"], table["dedup"]

    # every seed's run: a validation curve over the whole budget, bits per byte on the held-out documents and aligned lines
    seeds = {arm["arm"]["name"]: arm["seeds"] for arm in report["arms"]}
    finals = {name: [s["heldout_bpb"] for s in runs] for name, runs in seeds.items()}
    for name, runs in seeds.items():
        assert [(s["seed"], s["run"], s["diverged"]) for s in runs] == [(i, f"ablate-cd.{name}-s{i}", None) for i in (0, 1)]
        for s in runs:
            assert [tokens for tokens, _ in s["curve"]] == [step * SEQ_LEN * BATCH for step in range(1, STEPS + 1)]
            assert all(0 < bpb < 8 for _, bpb in s["curve"]) and s["curve"][-1][1] < s["curve"][0][1]
            assert 0 < s["heldout_bpb"] < 8 and 0 < s["aligned_bpb"] < 10
            assert set(s["languages"]) == {"eng_Latn", "fra_Latn", "deu_Latn"}
        assert (run_folder(lake, runs[0]["run"]) / "result.json").is_file()

    # the final table: mean, seed range, the difference from the baseline and whether the seeds' ranges overlap
    for name, row in table.items():
        assert row["held-out bits/byte"] == pytest.approx(sum(finals[name]) / 2)
        assert row["seed range"] == f"{min(finals[name]):.3f}–{max(finals[name]):.3f}"
        assert row["diverged"] == "" and 0 < row["aligned bits/byte"] < 10
    assert clean["Δ vs clean"] is None and clean["beyond seed spread"] is None
    delta = dedup["Δ vs clean"]
    assert delta == pytest.approx(dedup["held-out bits/byte"] - clean["held-out bits/byte"])
    beyond = max(finals["clean"]) < min(finals["dedup"]) or max(finals["dedup"]) < min(finals["clean"])
    assert isinstance(dedup["beyond seed spread"], bool) and dedup["beyond seed spread"] == beyond

    # every arm measured on the same text: the same bytes per language, held out and aligned
    measured = [json.loads(p.read_text())["report"] for p in sorted(evaluations(lake, "cd").glob("*.json"))]
    assert len(measured) == 4
    for part in ("heldout", "aligned"):
        sizes = [{lang: (s["bytes"], s["texts"]) for lang, s in m[part].items()} for m in measured]
        assert all(size == sizes[0] for size in sizes) and len(sizes[0]) == 3
    assert report["sources"]["heldout"]["documents"] > 0 and report["sources"]["parallel"]["lines"] == LINES

    md = (out / "report.md").read_text()
    verdict = "better" if delta < 0 else "worse"
    spread = "beyond" if dedup["beyond seed spread"] else "within"
    assert f"dedup vs clean: {delta:+.4f} bits per byte on held-out text ({verdict}; {spread} the seed spread)" in md
    assert f"`{command}`" in md.split("## Reproduce")[1]
    assert '"run": "ablate-cd.clean-s0"' in md and "![validation bits per byte per arm](curves.png)" in md

    # the command the report gives, run again: every run and every evaluation is reused as it is
    runs = [run_folder(lake, f"ablate-cd.{arm}-s{seed}") for arm in ("clean", "dedup") for seed in (0, 1)]
    kept = [p for run in runs for p in (run / "result.json", run / "metrics.jsonl")] + sorted(evaluations(lake, "cd").glob("*"))
    before = stamps(kept)
    again = lmforge(*shlex.split(command)[1:])
    assert again.returncode == 0, again.stdout
    assert stamps(kept) == before
    shown = " ".join(again.stdout.split())
    assert f"dedup vs clean: {delta:+.4f} bits per byte" in shown and f"report: {out}/report.html" in shown
    assert "Traceback" not in again.stdout
    assert json.loads((out / "report.json").read_text())["table"] == report["table"]

    # a run lost (its folder deleted) and the held-out text changed: that run alone is trained again, from the
    # same seed to the same curve, and every arm is measured again on the new text
    lost = run_folder(lake, "ablate-cd.dedup-s1")
    shutil.rmtree(lost)
    cached = stamps(sorted(evaluations(lake, "cd").glob("*.json")))
    smaller = EvalConfig(parallel=aligned_folder(lake), max_lines=LINES, heldout_bytes=HELDOUT_BYTES // 2)
    third = ablate_flow(config(lake, "cd", *mixes, evaluation=smaller), lake.root)
    others = kept[:6]  # the other three runs' results and metrics
    assert stamps(others) == {str(p): before[str(p)] for p in others}
    assert (lost / "result.json").is_file()
    assert third.arms[1].seeds[1].curve == [tuple(point) for point in seeds["dedup"][1]["curve"]]
    assert all(stamp != cached[path] for path, stamp in stamps(sorted(evaluations(lake, "cd").glob("*.json"))).items())
    assert json.loads((out / "report.json").read_text())["sources"]["heldout"]["max_bytes_per_language"] == HELDOUT_BYTES // 2


# --- faults ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(lake, prefect_harness):
    """One seed of four arms against `documents`: with the rephrasings, which the budget reads more than once
    (allowed); at a learning rate the tiny model cannot take; with the second tokenizer."""
    mixes = ("dedup=documents", "wrap=documents:1,synthetic/wrap:1", "hot=documents;lr=1000", f"tok=documents@{OTHER}")
    return ablate_flow(config(lake, "mixed", *mixes, seeds=1, allow_repeat=True), lake.root)


def no_runs(lake: Lake, name: str) -> bool:
    return not list(Path(lake.path("checkpoints")).glob(f"ablate-{name}.*"))


def test_an_unknown_dataset_or_tokenizer_is_one_error_naming_it_before_anything_is_trained(lake, prefect_harness):
    with pytest.raises(TokenizeError, match=r"unknown dataset 'documents/raw'.*datasets with text: .*documents/clean"):
        ablate_flow(config(lake, "raw", "dedup=documents", "raw=documents/raw"), lake.root)
    assert no_runs(lake, "raw")

    unknown = lmforge(*cli_args(lake, "nope", "dedup=documents", "big=documents@big-32k"))
    assert unknown.returncode == 1 and "Traceback" not in unknown.stdout
    line = " ".join(unknown.stdout.split())
    assert "unknown tokenizer 'big-32k'" in line and f"the lake has {OTHER}, {TOKENIZER}" in line, unknown.stdout
    assert no_runs(lake, "nope") and not Path(lake.path("tokens", "big-32k")).exists()


def test_a_budget_that_reads_a_dataset_more_than_once_is_refused_unless_allowed(lake, prefect_harness, mixed):
    wrap = token_manifest(lake, TOKENIZER, SYNTHETIC_WRAP).splits["train"].tokens
    epochs = TOKENS / 2 / wrap  # half the budget from a few hundred tokens of rephrasings
    assert epochs > 1
    with pytest.raises(DataError) as refused:
        ablate_flow(config(lake, "repeat", "dedup=documents", "wrap=documents:1,synthetic/wrap:1"), lake.root)
    message = str(refused.value)
    assert f"arm 'wrap': a budget of {TOKENS:,} tokens reads synthetic/wrap {epochs:.2f} times ({wrap:,} tokens)" in message
    assert f"that is {epochs:.1f} epochs" in message and "--allow-repeat" in message
    assert "documents " not in message.split("reads", 1)[1]  # documents itself is read far less than once
    assert no_runs(lake, "repeat")

    # allowed (the mixed ablation passes allow_repeat): the arm is trained and measured, its epochs in the report
    row = next(r for r in mixed.rows if r["arm"] == "wrap")
    assert row["held-out bits/byte"] > 0 and row["Δ vs dedup"] is not None
    assert mixed.arms[1].epochs["synthetic/wrap"] == pytest.approx(epochs)
    assert f"synthetic/wrap {epochs:.2f} epochs" in (mixed.out / "report.md").read_text()


def test_an_arm_that_diverges_is_reported_as_diverged_and_the_others_are_still_compared(lake, mixed):
    rows = {row["arm"]: row for row in mixed.rows}
    assert list(rows) == ["dedup", "wrap", "hot", "tok"]
    assert json.loads((mixed.out / "report.json").read_text())["table"] == mixed.rows
    hot = rows["hot"]
    assert (hot["diverged"], hot["held-out bits/byte"], hot["seed range"], hot["Δ vs dedup"]) == ("seed 0", None, "—", None)
    seed = mixed.arms[2].seeds[0]
    assert re.match(r"loss (exploded|is not finite) at step \d+ .*Lower --lr or raise --warmup", seed.diverged), seed.diverged
    assert seed.curve and seed.curve[-1][0] < TOKENS  # its curve, up to where it stopped
    assert seed.heldout_bpb is None and not (run_folder(lake, seed.run) / "result.json").exists()
    assert not (evaluations(lake, "mixed") / f"{seed.run}.json").exists()
    for name in ("wrap", "tok"):
        row = rows[name]
        assert row["diverged"] == "" and row["beyond seed spread"] is None  # one seed: no spread to compare
        assert row["Δ vs dedup"] == pytest.approx(row["held-out bits/byte"] - rows["dedup"]["held-out bits/byte"])
    md = (mixed.out / "report.md").read_text()
    assert "hot vs dedup: not compared (hot diverged)." in md and "hot, seed 0: diverged: loss" in md
    assert re.search(r"wrap vs dedup: [+-]\d\.\d{4} bits per byte .*one seed: no spread to compare", md)
    assert re.search(r"tok vs dedup: [+-]\d\.\d{4} bits per byte", md)


def test_an_arm_with_another_tokenizer_is_measured_in_bits_per_byte_on_the_same_text(lake, mixed):
    dedup, tok = (
        json.loads((evaluations(lake, "mixed") / f"ablate-mixed.{arm}-s0.json").read_text())["report"] for arm in ("dedup", "tok")
    )
    assert Path(dedup["tokenizer"]).name == TOKENIZER and Path(tok["tokenizer"]).name == OTHER
    for part in ("heldout", "aligned"):
        assert set(dedup[part]) == set(tok[part]) == {"eng_Latn", "fra_Latn", "deu_Latn"}
        for lang, score in tok[part].items():
            assert (score["bytes"], score["texts"]) == (dedup[part][lang]["bytes"], dedup[part][lang]["texts"])
            assert score["tokens"] > dedup[part][lang]["tokens"]  # 300 tokens cut the same text finer than 400
            assert 0 < score["bits_per_byte"] < 10
    row = next(r for r in mixed.rows if r["arm"] == "tok")
    assert row["spec"] == f"documents@{OTHER}" and row["held-out bits/byte"] == mixed.arms[3].seeds[0].heldout_bpb
    # the second tokenizer's tokens hold out the documents the first's do: no arm trains on the held-out text
    fractions = {
        name: json.loads(Path(lake.path("tokens", name, "documents", "_manifest.json")).read_text())["parameters"]["val_fraction"]
        for name in (TOKENIZER, OTHER)
    }
    assert fractions == {TOKENIZER: 0.1, OTHER: 0.1}
