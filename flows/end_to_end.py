"""The whole path on the embedded default, as one Prefect flow: `lmforge run`.

Today: ingest the sample corpus, deduplicate the lake, train a small BPE tokenizer on it and
report its per-language compression beside the reference tokenizers given, then generate a small
amount of each kind of synthetic data with the embedded vLLM server (WRAP, Self-Instruct,
preference pairs) and the 1:1 pretraining mix, then tokenize the lake and train the `tiny` model:
pretraining (documents and WRAP 1:1), SFT, a reward model, each exported to the Hugging Face layout;
last, a small data ablation: the same tiny model on the cleaned and on the deduplicated documents.
Quality gates sit between the stages: the documents are validated after dedup and the token shards
before training (a failed gate stops the run there), the synthetic data after synthesis (a dataset
that failed is reported and left out of training).
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.ablate import AblationResult, ablate_flow
from flows.dedup import dedup_flow
from flows.ingest import ingest_flow
from flows.sample_training import SampleTraining, sample_training_flow
from flows.summaries import run_markdown
from flows.synthetic import SynthesisResult, synthesize_flow
from flows.tokenizer import ReportResult, tokenizer_report_flow, train_tokenizer_flow
from flows.validate import validate_flow
from model.ablate import AblationConfig, Arm
from model.evaluate import EvalConfig
from pipelines.dedup.run import DedupConfig, DedupResult
from pipelines.ingest.run import IngestConfig, IngestResult
from pipelines.lake import Lake, read_manifest
from pipelines.lake.catalog import VIEWS
from pipelines.lake.quality_record import QualitySummary
from pipelines.synthetic.generation import Sampling
from pipelines.synthetic.mix_run import MixConfig
from pipelines.synthetic.preferences_run import PreferencesConfig
from pipelines.synthetic.self_instruct_run import SelfInstructConfig
from pipelines.synthetic.serving import ServerConfig
from pipelines.synthetic.wrap_run import WrapConfig
from tokenizer_training.train import TokenizerConfig, TrainResult

SAMPLE_TOKENIZER = TokenizerConfig(name="sample-8k", vocab_size=8192)
# A small amount of each kind, sized so that the whole default run stays under ~15 minutes on 2 cores.
# SmolLM2-135M rambles: ~150-token chunks keep about half its rephrasings within 384 tokens (at 300, a third).
SAMPLE_WRAP = WrapConfig(max_documents=4, max_chunks_per_document=1, chunk_tokens=150, sampling=Sampling(max_tokens=384))
SAMPLE_SELF_INSTRUCT = SelfInstructConfig(target=8, batch=8, max_rounds=3)
SAMPLE_PREFERENCES = PreferencesConfig(max_prompts=6, responses=3, margin=1)
# clean vs dedup, tiny, 2 seeds: 120 steps of 8×256 tokens per run keep the four runs to ~2 minutes on 2 cores.
SAMPLE_ABLATION_TOKENS = 120 * 8 * 256
SAMPLE_ABLATION_LINES = 20
SAMPLE_ABLATION_BYTES = 50_000


DOCUMENT_GATES = ["documents_clean", "documents", "rejected"]
SYNTHETIC_GATES = ["wrap", "self_instruct", "preferences", "pretrain_mix", "synthetic_rejected"]


def present(lake: str | None, names: list[str]) -> list[str]:
    """The catalog names among `names` whose dataset a stage has written (a manifest exists)."""
    root = Lake.at(lake)
    return [n for n in names if read_manifest(root, VIEWS[n]) is not None]


def sample_ablation(tokenizer: str, parallel: str | None) -> AblationConfig:
    """The default run's ablation: clean vs dedup, the tiny model, 2 seeds."""
    return AblationConfig(
        name="sample-clean-vs-dedup",
        arms=[
            Arm(name="clean", mixture="documents/clean", tokenizer=tokenizer),
            Arm(name="dedup", mixture="documents", tokenizer=tokenizer),
        ],
        tokens=SAMPLE_ABLATION_TOKENS,
        seeds=2,
        evaluation=EvalConfig(parallel=parallel, max_lines=SAMPLE_ABLATION_LINES, heldout_bytes=SAMPLE_ABLATION_BYTES),
    )


@dataclass
class EndToEndResult:
    ingest: IngestResult
    dedup: DedupResult
    tokenizer: TrainResult
    report: ReportResult
    synthetic: SynthesisResult | None
    training: SampleTraining | None
    ablation: AblationResult | None
    quality: list[QualitySummary]


@flow(name="end-to-end", log_prints=True)
def end_to_end(
    sample: list[str],
    lake: str | None = None,
    config: IngestConfig | None = None,
    dedup: DedupConfig | None = None,
    tokenizer: TokenizerConfig = SAMPLE_TOKENIZER,
    references: list[str] | None = None,
    parallel: str | None = None,
    synthetic: bool = True,
    server: ServerConfig | None = None,
    training: bool = True,
) -> EndToEndResult:
    """Ingest the sample corpus (WARC paths), deduplicate it, train a tokenizer on it and report on it.

    The tokenizer is the run's own: retrained (replaced) when the lake changed. `references`
    (tokenizer files) are measured beside it; `parallel` (aligned <lang>.txt files) gives the
    premium against English, else the lake's held-out documents are the text measured. `synthetic`
    adds the synthetic stage on `server` (default: vLLM from `.venv-vllm` with SmolLM2-135M);
    `training` the trainer's stage on what the lake then holds, and the clean-vs-dedup ablation.
    """
    ingested = ingest_flow(sample, lake, config)
    deduped = dedup_flow(lake, dedup)
    quality = validate_flow(present(lake, DOCUMENT_GATES), lake)
    trained = train_tokenizer_flow(tokenizer, lake, overwrite=True)
    report = tokenizer_report_flow([trained.path, *(references or [])], lake, parallel)
    synthesized = None
    if synthetic:
        synthesized = synthesize_flow(lake, server, None, SAMPLE_WRAP, SAMPLE_SELF_INSTRUCT, SAMPLE_PREFERENCES, MixConfig())
        # reported, not enforced here: training leaves out a synthetic dataset that failed its gate
        quality += validate_flow(present(lake, SYNTHETIC_GATES), lake, enforce=False)
    trained_models = sample_training_flow(lake, tokenizer.name, synthetic) if training else None
    quality += trained_models.quality if trained_models else []
    ablation = ablate_flow(sample_ablation(tokenizer.name, parallel), lake) if training else None
    create_markdown_artifact(key="end-to-end-summary", markdown=run_markdown(ingested, deduped))
    return EndToEndResult(ingested, deduped, trained, report, synthesized, trained_models, ablation, quality)
