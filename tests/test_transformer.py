"""The model: shapes, causality, padding on the right, grouped-query attention, presets, FLOPs."""

from __future__ import annotations

import pytest
import torch

from model.transformer import ModelConfig, Transformer, preset


@pytest.fixture
def config() -> ModelConfig:
    return ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=48, max_seq_len=16)


def test_a_token_never_sees_the_tokens_after_it(config):
    torch.manual_seed(0)
    model = Transformer(config).eval()
    ids = torch.randint(0, 97, (2, 12))
    changed = ids.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 97
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.equal(a[:, :8], b[:, :8]) and not torch.allclose(a[:, 8:], b[:, 8:])


def test_right_padding_leaves_the_real_tokens_outputs_unchanged(config):
    """Why SFT and pairs need no attention mask (model/data.py): padding comes after every real token."""
    torch.manual_seed(0)
    model = Transformer(config).eval()
    ids = torch.randint(0, 97, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(padded)[:, :7], rtol=1e-5, atol=1e-6)


def test_grouped_query_attention_equals_full_attention_with_repeated_key_value_heads(config):
    torch.manual_seed(0)
    gqa = Transformer(config).eval()
    mha = Transformer(ModelConfig(**{**config.to_dict(), "n_kv_heads": 4})).eval()
    state = gqa.state_dict()
    d, hd = config.d_model, config.head_dim
    for i in range(config.n_layers):
        q, k, v = state[f"layers.{i}.self_attn.qkv.weight"].split((d, 2 * hd, 2 * hd))
        repeat = lambda w: w.view(2, hd, d).repeat_interleave(2, dim=0).reshape(4 * hd, d)  # noqa: E731
        state[f"layers.{i}.self_attn.qkv.weight"] = torch.cat([q, repeat(k), repeat(v)])
    mha.load_state_dict(state)
    ids = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(gqa(ids), mha(ids), rtol=1e-5, atol=1e-5)


def test_value_head_gives_one_scalar_per_position_and_the_lm_head_is_tied_by_default(config):
    lm = Transformer(config)
    assert lm.lm_head.weight is lm.embed_tokens.weight
    value = Transformer(ModelConfig(**{**config.to_dict(), "head": "value"}))
    assert value(torch.randint(0, 97, (3, 5))).shape == (3, 5) and not hasattr(value, "lm_head")


def test_weights_start_as_llama_and_presets_have_their_sizes():
    model = Transformer(preset("tiny", 8192))
    assert model.layers[0].mlp.down_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(model.norm.weight, torch.ones(64))
    assert 0.5e6 < model.num_params() < 1.5e6
    with torch.device("meta"):
        medium = Transformer(preset("medium", 32768))
    assert medium.num_params() == pytest.approx(366e6, rel=0.01)  # DESIGN §8's GPU reference size
    # 6N + 12·L·d·T, N without the input embedding (a lookup costs no FLOPs)
    n = medium.num_params() - 32768 * 1024
    assert medium.flops_per_token(2048) == 6 * n + 12 * 24 * 1024 * 2048


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="must divide"):
        ModelConfig(vocab_size=10, d_model=30, n_heads=4, n_kv_heads=2)
    with pytest.raises(ValueError, match="unknown model size"):
        preset("huge", 100)
    with pytest.raises(ValueError, match="longer than the model"):
        Transformer(ModelConfig(vocab_size=10, d_model=16, n_heads=2, n_kv_heads=1, max_seq_len=4))(
            torch.zeros(1, 5, dtype=torch.long)
        )
