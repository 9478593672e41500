"""Export to the HF Llama layout: transformers loads it (trust_remote_code=False) and computes what our
model computes, the tokenizer comes along with its chat template, the reverse load is exact, the
folder appears whole or not at all, and vLLM serves it.

Tolerance: logits and values must agree to atol 1e-5. Both sides run in fp32 with the same op order
(RMSNorm in fp32, HF's half-split RoPE from the same fp32 tables, SDPA, SwiGLU); the only difference is
that we multiply by the fused `qkv` / `gate_up` matrices, whose output rows are the same dot products as
HF's separate projections, so a BLAS that blocks the wider matmul differently can move the last few
bits (measured: 0.0 here); 1e-5 is a few hundred fp32 ulps at these magnitudes, and far below any real
mismatch (a wrong split, a permuted RoPE or a missing norm moves logits by 1e-2 or more).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import torch
from builders import chat_tokenizer_folder
from safetensors import safe_open

from model.export import ExportError, export_hf, load_exported
from model.transformer import Transformer, preset

ATOL = 1e-5
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a river."}]
CHATML = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a river.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A tokenizer folder as `lmforge tokenizer train` writes it (its manifest included), trained on the test prose."""
    return chat_tokenizer_folder(tmp_path_factory.mktemp("tokenizer"))


def vocab(tokenizer_dir: Path) -> dict[str, int]:
    return json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"]


def token_id(tokenizer_dir: Path, token: str) -> int:
    added = json.loads((tokenizer_dir / "tokenizer.json").read_text())["added_tokens"]
    return next(t["id"] for t in added if t["content"] == token)


def tiny(tokenizer_dir: Path, seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(preset("tiny", len(vocab(tokenizer_dir)), **overrides)).eval()


def random_batch(model: Transformer, shape: tuple[int, int] = (3, 48), avoid: int | None = None) -> torch.Tensor:
    ids = torch.randint(0, model.config.vocab_size, shape, generator=torch.Generator().manual_seed(1))
    return ids if avoid is None else torch.where(ids == avoid, (avoid + 1) % model.config.vocab_size, ids)


def loaded(auto_class, folder: Path):
    """A transformers model from the folder in fp32, checking that every tensor was used and none was missing."""
    model, info = auto_class.from_pretrained(folder, trust_remote_code=False, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model.eval()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="gqa-tied"),  # the tiny preset: 2 query heads over 1 key/value head
        pytest.param({"tie_embeddings": False}, id="gqa-untied"),
        pytest.param({"n_heads": 4, "n_kv_heads": 4, "tie_embeddings": False}, id="mha-untied"),
    ],
)
def test_transformers_loads_the_causal_lm_export_and_computes_our_logits(tokenizer_dir, tmp_path, overrides):
    from transformers import AutoModelForCausalLM

    ours = tiny(tokenizer_dir, **overrides)
    dest = export_hf(ours, tokenizer_dir, tmp_path / "export")
    model_files = ["config.json", "generation_config.json", "model.safetensors"]
    tokenizer_files = ["chat_template.jinja", "tokenizer.json", "tokenizer_config.json"]  # not its _manifest.json
    assert sorted(p.name for p in dest.iterdir()) == sorted(model_files + tokenizer_files)
    with safe_open(dest / "model.safetensors", "pt") as f:
        names = set(f.keys())
    assert ("lm_head.weight" in names) == (not ours.config.tie_embeddings)  # a tied head is written once, as the embedding
    assert "model.layers.3.self_attn.k_proj.weight" in names and not any("qkv" in n or "gate_up" in n for n in names)

    hf = loaded(AutoModelForCausalLM, dest)
    config = json.loads((dest / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    assert config["rope_parameters"]["rope_theta"] == config["rope_theta"] == ours.config.rope_theta
    eos, pad, end_of_turn = (token_id(tokenizer_dir, t) for t in ("<|endoftext|>", "<|pad|>", "<|im_end|>"))
    assert (config["eos_token_id"], config["pad_token_id"]) == (eos, pad)
    assert hf.generation_config.eos_token_id == [end_of_turn, eos]  # a chat turn's end, or a document's
    assert hf.config.num_key_value_heads == ours.config.n_kv_heads

    x = random_batch(ours)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x), rtol=0, atol=ATOL)


def test_transformers_loads_the_reward_export_and_scores_each_sequence_at_its_last_real_token(tokenizer_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    ours = tiny(tokenizer_dir, head="value")
    dest = export_hf(ours, tokenizer_dir, tmp_path / "reward")
    config = json.loads((dest / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and len(config["id2label"]) == 1
    assert not (dest / "generation_config.json").exists()

    pad = token_id(tokenizer_dir, "<|pad|>")
    x = random_batch(ours, (4, 32), avoid=pad)
    lengths = torch.tensor([32, 20, 7, 1])
    real = torch.arange(32) < lengths[:, None]
    x = torch.where(real, x, pad)  # right-padded, as our reward loop batches pairs
    hf = loaded(AutoModelForSequenceClassification, dest)
    with torch.no_grad():
        theirs = hf(input_ids=x, attention_mask=real.long()).logits
        values = ours(x)
    assert theirs.shape == (4, 1)
    torch.testing.assert_close(theirs[:, 0], values[torch.arange(4), lengths - 1], rtol=0, atol=ATOL)


def test_the_exported_tokenizer_renders_chatml_and_greedy_generation_matches_ours(tokenizer_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ours = tiny(tokenizer_dir)
    dest = export_hf(ours, tokenizer_dir, tmp_path / "chat")
    tokenizer = AutoTokenizer.from_pretrained(dest)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|endoftext|>", "<|pad|>")
    assert tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True) == CHATML

    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    hf = loaded(AutoModelForCausalLM, dest)
    generated = hf.generate(**prompt, max_new_tokens=5, do_sample=False)[0, prompt["input_ids"].shape[1] :]
    assert 1 <= len(generated) <= 5

    ids, stops = prompt["input_ids"], set(hf.generation_config.eos_token_id)
    with torch.no_grad():
        for _ in range(5):  # our own greedy decoding, without a KV cache, stopping where HF's stops
            ids = torch.cat([ids, ours(ids)[:, -1:].argmax(-1)], dim=1)
            if ids[0, -1].item() in stops:
                break
    assert generated.tolist() == ids[0, prompt["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="lm-tied"),
        pytest.param({"tie_embeddings": False, "n_kv_heads": 1}, id="lm-untied"),
        pytest.param({"head": "value"}, id="value"),
    ],
)
def test_load_exported_gives_back_the_same_model(tokenizer_dir, tmp_path, overrides):
    ours = tiny(tokenizer_dir, **overrides)
    back = load_exported(export_hf(ours, tokenizer_dir, tmp_path / "export")).eval()
    # A value head has no output matrix to tie; its export says `tie_word_embeddings: false`.
    assert back.config == replace(ours.config, tie_embeddings=ours.config.tie_embeddings and ours.config.head == "lm")
    if ours.config.head == "lm" and ours.config.tie_embeddings:
        assert back.lm_head.weight is back.embed_tokens.weight
    x = random_batch(ours)
    with torch.no_grad():
        assert torch.equal(back(x), ours(x))


def test_a_failing_export_leaves_no_folder_and_keeps_the_previous_one(tokenizer_dir, tmp_path, monkeypatch):
    import model.export as export

    first = tiny(tokenizer_dir, seed=0)
    export_hf(first, tokenizer_dir, tmp_path / "exports" / "kept")

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(export, "save_file", disk_full)
    second = tiny(tokenizer_dir, seed=1)
    for name in ("kept", "new"):
        with pytest.raises(OSError, match="No space left"):
            export_hf(second, tokenizer_dir, tmp_path / "exports" / name)
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["kept"]  # no `new`, no temporary folder beside it
    x = random_batch(first)
    with torch.no_grad():
        assert torch.equal(load_exported(tmp_path / "exports" / "kept")(x), first(x))


@pytest.mark.parametrize(
    "config, reason",
    [
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "'gpt2' model"),
        ({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "auto_map": {"AutoModel": "x.Y"}}, "trust_remote_code"),
        ({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "attention_bias": True}, "attention_bias"),
    ],
)
def test_load_exported_refuses_what_is_not_a_plain_llama(tmp_path, config, reason):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=reason):
        load_exported(tmp_path)


def test_export_refuses_a_tokenizer_larger_than_the_model_vocabulary(tokenizer_dir, tmp_path):
    torch.manual_seed(0)
    small = Transformer(preset("tiny", 300))
    with pytest.raises(ExportError, match="tokenizer has .* tokens but the model's vocabulary only 300"):
        export_hf(small, tokenizer_dir, tmp_path / "export")
    assert not (tmp_path / "export").exists()


@pytest.mark.slow
def test_vllm_serves_an_exported_model_over_the_openai_api(tokenizer_dir, tmp_path):
    """The synthetic stage's server takes an export as `--model`, with its defaults: the tiny preset's head
    size is 32 (vLLM's CPU attention has no kernel below), and the server's context defaults to the
    export's `max_position_embeddings` (256; vLLM refuses to start asked for more)."""
    from pipelines.synthetic.serving import ServerConfig, served

    ours = tiny(tokenizer_dir)
    dest = export_hf(ours, tokenizer_dir, tmp_path / "tiny-chat")
    request = {"messages": CHAT, "max_tokens": 5, "temperature": 0}
    request |= {"logprobs": True, "top_logprobs": 5, "return_tokens_as_token_ids": True}
    with served(ServerConfig(model=str(dest)), str(tmp_path / "vllm.log")) as endpoint:
        endpoint.ensure_up()
        response = httpx.post(f"{endpoint.url}/v1/chat/completions", json={"model": endpoint.model, **request}, timeout=120)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert isinstance(choice["message"]["content"], str) and endpoint.model == "tiny-chat"

    # vLLM's distribution over the first answer token is ours, to the precision of its CPU kernels.
    from transformers import AutoTokenizer

    prompt = AutoTokenizer.from_pretrained(dest).apply_chat_template(
        CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        logprobs = torch.log_softmax(ours(prompt["input_ids"])[0, -1], dim=-1)
    for top in choice["logprobs"]["content"][0]["top_logprobs"]:
        assert top["logprob"] == pytest.approx(logprobs[int(top["token"].removeprefix("token_id:"))].item(), abs=1e-4)
