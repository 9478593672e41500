"""Checked against a reference no one here wrote: on the same weights and the same batch, our SFT, reward and
DPO losses equal what TRL's own trainers (`SFTTrainer`, `RewardTrainer`, `DPOTrainer`) compute.

How the two sides are set up:
- one tokenizer folder, as `lmforge tokenizer train` writes it (byte-level BPE, the four special tokens, the
  ChatML template with its `{% generation %}` block), read by both sides through `AutoTokenizer`;
- one tiny random `Transformer`; `export_hf` writes it as an HF `LlamaForCausalLM` /
  `LlamaForSequenceClassification` folder (fused `qkv` and `gate_up` split back), loaded in fp32 for TRL.
  Its weights are drawn wider than the N(0, 0.02) init (`sharpened`), so the next-token distribution is far
  from uniform and the per-token losses spread over several nats: a token scored on one side and not on the
  other moves a loss by ~1e-2 or more, where a near-uniform model (every loss ≈ log V) would hide it;
- TRL runs in fp32 on the CPU (`bf16=False`: TRL's configs default it to True), batches are read in order
  (`train_sampling_strategy="sequential"`) with every row in one batch, and the loss is TRL's
  `trainer.compute_loss(model, batch)` on the first batch of `trainer.get_train_dataloader()`.

Tolerance: fp32 on both sides, `rtol=1e-5, atol=1e-5` (measured: 0.0 for SFT and reward, 5e-7 for DPO).
The forwards agree to a few ulps (tests/test_export.py); what may remain elsewhere is summation order (TRL's
chunked log-softmax, sums of ~20 log-probabilities of magnitude ~10). A mask shifted by one token, a per-sequence
instead of a per-token mean, the newline after `<|im_end|>` scored in DPO, or a reward read at the wrong token
each move these losses by 1e-2 or more (measured while writing this test).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from builders import chat_tokenizer_folder

from model.data import lm_batch, render_chat, value_batch
from model.export import export_hf
from model.objectives import last_values
from model.tasks import dpo_step, lm_step, render_pair, reward_step
from model.transformer import Transformer, preset

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

RTOL, ATOL = 1e-5, 1e-5
MAX_TOKENS = 256  # the tiny preset's context; every row here is shorter, so nothing is cut on either side

CONVERSATIONS = [
    [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "When does the village library open?"},
        {"role": "assistant", "content": "It opens early on market days."},
    ],
    [
        {"role": "user", "content": "What do the farmers borrow?"},
        {"role": "assistant", "content": "Books about the weather."},
        {"role": "user", "content": "Why?"},
        {"role": "assistant", "content": "A good harvest depends on the rain."},
    ],
    [
        {"role": "user", "content": "Who reads comics there?"},
        {"role": "assistant", "content": "Children, in the afternoon, at the long wooden table near the window."},
    ],
]

PAIRS = [
    {"prompt": "When does the library open?", "chosen": "Early on market days.", "rejected": "Never."},
    {"prompt": "What do the farmers borrow?", "chosen": "Books about the weather and the rain.", "rejected": "Tea."},
    {"prompt": "Where do children read?", "chosen": "At the long table.", "rejected": "They read comics at home in winter."},
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A tokenizer folder as `lmforge tokenizer train` writes it, trained on the test prose."""
    return chat_tokenizer_folder(tmp_path_factory.mktemp("tokenizer"))


def chat_tokenizer(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def sharpened(model: Transformer, seed: int) -> Transformer:
    """The model with every matrix redrawn from N(0, 0.3) and every norm weight from U(0.5, 1.5)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fresh = (
                torch.randn(p.shape, generator=generator) * 0.3 if p.dim() > 1 else torch.rand(p.shape, generator=generator) + 0.5
            )
            p.copy_(fresh)
    return model.eval()


def tiny(tokenizer_dir: Path, seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    return sharpened(Transformer(preset("tiny", len(chat_tokenizer(tokenizer_dir)), **overrides)), seed)


def hf_twin(model: Transformer, tokenizer_dir: Path, dest: Path):
    """The same weights as a transformers model (through our export), in fp32."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = AutoModelForSequenceClassification if model.config.head == "value" else AutoModelForCausalLM
    return auto.from_pretrained(export_hf(model, tokenizer_dir, dest), dtype=torch.float32).eval()


def trl_args(tmp_path: Path, rows: int) -> dict:
    return dict(
        output_dir=str(tmp_path / "trl"),
        report_to="none",
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=rows,
        train_sampling_strategy="sequential",
        dataloader_num_workers=0,
        seed=0,
    )


def first_batch(trainer) -> dict:
    return next(iter(trainer.get_train_dataloader()))


def trl_metrics(trainer) -> dict[str, list[float]]:
    """What TRL's `compute_loss` recorded for logging (its `_metrics`, per mode; the model is in eval mode here)."""
    return trainer._metrics["train" if trainer.model.training else "eval"]


def test_sft_loss_with_the_assistant_mask_equals_trl_sft_trainer(tokenizer_dir, tmp_path):
    """SFT: `SFTTrainer(assistant_only_loss=True)` on `messages` rows vs our `lm_step` on `render_chat` + `lm_batch`.

    Alignment: both render the conversations with the same template and take the assistant mask from its
    `{% generation %}` block (TRL's labels are the ids where `assistant_masks` is set, -100 elsewhere; ours are
    the next-token targets where the target's mask is set), so TRL's labels shifted by one are our targets,
    checked below. No packing, no padding-free, no truncation (`max_length=None`). Both losses are the mean
    over every scored token of the batch (TRL divides the summed NLL by the number of label tokens when
    `num_items_in_batch` is None, as it is for a single batch; `F.cross_entropy` with `ignore_index` does the
    same), not a mean of per-sequence means: the rows here have 17 to 31 assistant tokens, so the two
    averages differ (by ~3e-2 on these weights).
    """
    tokenizer = chat_tokenizer(tokenizer_dir)
    ours = tiny(tokenizer_dir)
    config = trl.SFTConfig(
        **trl_args(tmp_path, len(CONVERSATIONS)), assistant_only_loss=True, packing=False, padding_free=False, max_length=None
    )
    trainer = trl.SFTTrainer(
        model=hf_twin(ours, tokenizer_dir, tmp_path / "lm"),
        args=config,
        train_dataset=datasets.Dataset.from_list([{"messages": m} for m in CONVERSATIONS]),
        processing_class=tokenizer,
    )
    batch = first_batch(trainer)
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, batch)

    examples = [render_chat(tokenizer, m, MAX_TOKENS) for m in CONVERSATIONS]
    inputs, targets = lm_batch(examples, tokenizer.pad_token_id)
    assert torch.equal(batch["labels"][:, 1:], targets)
    for row, example in zip(batch["input_ids"], examples):
        assert row[: len(example.ids)].tolist() == example.ids.tolist()
    with torch.no_grad():
        loss, _ = lm_step(ours, (inputs, targets))
    torch.testing.assert_close(loss, theirs, rtol=RTOL, atol=ATOL)


def test_reward_loss_equals_trl_reward_trainer(tokenizer_dir, tmp_path):
    """Reward: `RewardTrainer` on conversational (prompt, chosen, rejected) rows vs our `reward_step`.

    Alignment: TRL renders `prompt + chosen` and `prompt + rejected` with the chat template (no generation
    prompt), as `render_pair` renders (user, assistant) conversations, and its collator stacks the chosen rows,
    then the rejected ones, right-padded with the pad token, which is our `value_batch` layout: the two
    batches' ids are checked equal. `LlamaForSequenceClassification` reads each row's score at its last
    non-pad token, we at `lengths - 1`; the pad token never occurs in the text, so they are the same position.
    No margin column and `center_rewards_coefficient=None`, so TRL's loss is the plain Bradley–Terry
    `-logsigmoid(r_chosen - r_rejected)` averaged over pairs.
    """
    tokenizer = chat_tokenizer(tokenizer_dir)
    ours = tiny(tokenizer_dir, head="value")
    rows = [
        {
            "prompt": [{"role": "user", "content": p["prompt"]}],
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
        }
        for p in PAIRS
    ]
    config = trl.RewardConfig(**trl_args(tmp_path, len(rows)), center_rewards_coefficient=None, max_length=None)
    trainer = trl.RewardTrainer(
        model=hf_twin(ours, tokenizer_dir, tmp_path / "reward"),
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    batch = first_batch(trainer)
    assert "margin" not in batch
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, batch)

    pairs = [render_pair(tokenizer, p, MAX_TOKENS) for p in PAIRS]
    inputs, lengths = value_batch([c for c, _ in pairs] + [r for _, r in pairs], tokenizer.pad_token_id)
    assert torch.equal(batch["input_ids"], inputs)
    assert torch.equal(batch["attention_mask"].sum(1), lengths)
    with torch.no_grad():
        loss, extra = reward_step(ours, (inputs, lengths))
        rewards = last_values(ours(inputs), lengths)
    assert rewards.max() - rewards.min() > 1.0  # far apart: a reward read at the wrong token would show
    torch.testing.assert_close(loss, theirs, rtol=RTOL, atol=ATOL)
    logged = trl_metrics(trainer)  # the mean reward margin and accuracy TRL logs for this batch
    assert extra["margin"].item() == pytest.approx(logged["margin"][-1], rel=RTOL, abs=ATOL)
    assert extra["accuracy"].item() == logged["accuracy"][-1]


def test_dpo_loss_equals_trl_dpo_trainer(tokenizer_dir, tmp_path):
    """DPO: `DPOTrainer` (sigmoid loss, β 0.1) vs our `dpo_step(reference, 0.1)`, the policy a perturbed copy
    of the reference so that the loss is not log 2.

    Alignment: TRL scores a pair's completion tokens, those after the prompt; we score the assistant mask of
    `render_pair`'s rendering, which covers the answer and its `<|im_end|>` but not the newline the template
    writes after every turn. TRL's conversational path would take the completion as everything after the
    generation prompt, that newline included, so it is fed the same ChatML text in its standard (string)
    format instead: prompt = the rendered user turn plus the generation prompt `<|im_start|>assistant\\n`,
    chosen/rejected = answer + `<|im_end|>`, with `<|im_end|>` as the tokenizer's EOS so that TRL appends
    nothing. Its completion mask is then exactly our assistant mask (checked below, shifted by one as our
    targets are). Both sides sum log-probabilities over those tokens (no length normalisation, `ld_alpha`
    None), take the reference's under no_grad from a separate model, and average the loss over pairs.
    """
    tokenizer = chat_tokenizer(tokenizer_dir)
    reference = tiny(tokenizer_dir, seed=0)
    policy = copy.deepcopy(reference)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    beta = 0.1

    trl_tokenizer = chat_tokenizer(tokenizer_dir)
    trl_tokenizer.eos_token = "<|im_end|>"
    rows = []
    for p in PAIRS:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": p["prompt"]}], tokenize=False, add_generation_prompt=True
        )
        rows.append({"prompt": prompt, "chosen": p["chosen"] + "<|im_end|>", "rejected": p["rejected"] + "<|im_end|>"})
    config = trl.DPOConfig(
        **trl_args(tmp_path, len(rows)), beta=beta, loss_type=["sigmoid"], max_length=None, precompute_ref_log_probs=False
    )
    trainer = trl.DPOTrainer(
        model=hf_twin(policy, tokenizer_dir, tmp_path / "policy"),
        ref_model=hf_twin(reference, tokenizer_dir, tmp_path / "reference"),
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=trl_tokenizer,
    )
    batch = first_batch(trainer)
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, batch)

    pairs = [render_pair(tokenizer, p, MAX_TOKENS) for p in PAIRS]
    examples = [c for c, _ in pairs] + [r for _, r in pairs]
    inputs, targets = lm_batch(examples, tokenizer.pad_token_id)
    # TRL's rows are ours without the newline after the last `<|im_end|>`, one column narrower once padded;
    # that column and the newline's are unscored on our side.
    for row, example in zip(batch["input_ids"], examples):
        assert row[: len(example.ids) - 1].tolist() == example.ids[:-1].tolist()
    scored = torch.nn.functional.pad(batch["completion_mask"][:, 1:], (0, 1)).bool()
    assert torch.equal(scored, targets != -100)
    assert torch.equal(batch["input_ids"][:, 1:][scored[:, :-1]], targets[targets != -100])
    with torch.no_grad():
        loss, extra = dpo_step(reference, beta)(policy, (inputs, targets))
    assert abs(loss.item() - math.log(2)) > 1e-3  # the policy is not the reference
    torch.testing.assert_close(loss, theirs, rtol=RTOL, atol=ATOL)
    logged = trl_metrics(trainer)  # TRL's implicit rewards β·(π − ref) per response; their margin is ours
    assert extra["margin"].item() == pytest.approx(logged["rewards/margins"][-1], rel=RTOL, abs=ATOL)
    assert extra["accuracy"].item() == logged["rewards/accuracies"][-1]
