"""Our model in Hugging Face Llama's terms: the `LlamaConfig` of a `ModelConfig` and the state dict under
HF's parameter names. Only torch and transformers: the export (model/export.py) and the training
benchmark (bench/train.py, which runs on a bare GPU machine) share it.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig

from model.transformer import ModelConfig, Transformer

ARCHITECTURES = {"lm": "LlamaForCausalLM", "value": "LlamaForSequenceClassification"}


def llama_config(c: ModelConfig, ids: dict[str, int | None] | None = None) -> LlamaConfig:
    """The `LlamaConfig` of exactly our network; `ids` (bos, eos, pad) from the tokenizer when exporting."""
    ids = ids or {"bos": None, "eos": None, "pad": None}
    labels = {"num_labels": 1} if c.head == "value" else {}
    return LlamaConfig(
        architectures=[ARCHITECTURES[c.head]],
        vocab_size=c.vocab_size,
        hidden_size=c.d_model,
        intermediate_size=c.ffn_hidden,
        num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads,
        num_key_value_heads=c.n_kv_heads,
        head_dim=c.head_dim,
        hidden_act="silu",
        max_position_embeddings=c.max_seq_len,
        rms_norm_eps=c.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta},
        tie_word_embeddings=c.head == "lm" and c.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["pad"],
        dtype="float32",
        **labels,
    )


def hf_config(c: ModelConfig, ids: dict[str, int | None]) -> dict:
    """config.json of `llama_config`: every Llama field (as `save_pretrained` writes them), plus the
    legacy `rope_theta` that transformers 4.x reads (5.x reads `rope_parameters` and accepts it)."""
    return llama_config(c, ids).to_diff_dict() | {"rope_theta": c.rope_theta}


def hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our parameters under HF Llama's names, fp32, contiguous, on the CPU; a tied output head is left
    out (HF ties it to `model.embed_tokens.weight` on load, and safetensors refuses shared tensors)."""
    c = model.config
    d, kv, f = c.d_model, c.n_kv_heads * c.head_dim, c.ffn_hidden
    ours = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    out = {"model.embed_tokens.weight": ours["embed_tokens.weight"], "model.norm.weight": ours["norm.weight"]}
    for i in range(c.n_layers):
        p, hf = f"layers.{i}.", f"model.layers.{i}."
        q, k, v = ours[p + "self_attn.qkv.weight"].split((d, kv, kv))
        gate, up = ours[p + "mlp.gate_up.weight"].split((f, f))
        out |= {
            hf + "self_attn.q_proj.weight": q,
            hf + "self_attn.k_proj.weight": k,
            hf + "self_attn.v_proj.weight": v,
            hf + "self_attn.o_proj.weight": ours[p + "self_attn.o_proj.weight"],
            hf + "mlp.gate_proj.weight": gate,
            hf + "mlp.up_proj.weight": up,
            hf + "mlp.down_proj.weight": ours[p + "mlp.down_proj.weight"],
            hf + "input_layernorm.weight": ours[p + "input_layernorm.weight"],
            hf + "post_attention_layernorm.weight": ours[p + "post_attention_layernorm.weight"],
        }
    if c.head == "value":
        out["score.weight"] = ours["score.weight"]
    elif not c.tie_embeddings:
        out["lm_head.weight"] = ours["lm_head.weight"]
    return {k: v.contiguous() for k, v in out.items()}
