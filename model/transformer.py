"""The model: one Llama-architecture decoder (RMSNorm, RoPE, grouped-query attention through
`scaled_dot_product_attention`, SwiGLU), with a language-model head or a scalar value head.

Parameter names follow Hugging Face's `LlamaForCausalLM` except where two projections are fused for
speed (`qkv`, `gate_up`); `model/export.py` splits them back. RoPE uses the same half-split
rotation as HF Llama, so exported weights need no permutation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # label of a position that takes no loss (prompts, padding), as in PyTorch and HF

Head = Literal["lm", "value"]


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_hidden: int = 192
    max_seq_len: int = 256
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    head: Head = "lm"  # "value": one scalar per position instead of logits (reward models)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"d_model {self.d_model} must divide into n_heads {self.n_heads}, and n_heads into n_kv_heads {self.n_kv_heads}"
            )
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"head dimension {self.d_model // self.n_heads} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


# Sizes by name. `tiny` (~0.7 M parameters at an 8k vocab) is for tests and the default run (head
# size 32: vLLM's CPU attention takes 32 and up, so its exports can be served);
# `medium` is the 366 M-class model of DESIGN §8's GPU reference (d=1024, 24 layers, 16 heads).
PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=64, n_layers=4, n_heads=2, n_kv_heads=1, ffn_hidden=192, max_seq_len=256),
    "small": dict(d_model=512, n_layers=8, n_heads=8, n_kv_heads=4, ffn_hidden=1408, max_seq_len=1024),
    "medium": dict(d_model=1024, n_layers=24, n_heads=16, n_kv_heads=16, ffn_hidden=2688, max_seq_len=2048, tie_embeddings=False),
}


def preset(name: str, vocab_size: int, **overrides: object) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model size {name!r}: one of {', '.join(PRESETS)}")
    return ModelConfig(vocab_size=vocab_size, **{**PRESETS[name], **overrides})


def rope_tables(config: ModelConfig, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (max_seq_len, head_dim), computed in fp32 as HF Llama does."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim))
    t = torch.arange(config.max_seq_len, dtype=torch.float32, device=device)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one fused kernel, weight included
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        # Lower precision: normalise in fp32 and scale after casting back, as HF's LlamaRMSNorm does.
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        kv = config.n_kv_heads * config.head_dim
        self.qkv = nn.Linear(config.d_model, config.d_model + 2 * kv, bias=False)
        self.o_proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        kv = self.n_kv_heads * self.head_dim
        # Three matmuls on row slices of the fused weight rather than one whose output is split: the split
        # output's strided views and the backward's activation-sized concatenation cost ~3% of a CPU step.
        q, k, v = (F.linear(x, w) for w in self.qkv.weight.split((d, kv, kv)))
        q = apply_rope(q.view(b, t, self.n_heads, self.head_dim).transpose(1, 2), cos, sin)
        k = apply_rope(k.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = v.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        # Causal only: a sequence is one example or a stretch of packed documents, and padding sits on
        # the right, where no real token can see it (see model/data.py).
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(config.d_model, 2 * config.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(config.ffn_hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_gate, w_up = self.gate_up.weight.chunk(2)  # as in Attention: slices of the weight, not of the output
        return self.down_proj(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.d_model, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        if config.head == "value":
            self.score = nn.Linear(config.d_model, 1, bias=False)
        else:
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
            if config.tie_embeddings:
                self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # As HF's LlamaPreTrainedModel: N(0, 0.02) for every linear and embedding, norms at 1.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final normalised hidden states (B, T, d) of token ids (B, T)."""
        t = idx.shape[1]
        if t > self.config.max_seq_len:
            raise ValueError(f"sequence of {t} tokens is longer than the model's {self.config.max_seq_len}")
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.embed_tokens(idx)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for the LM head; per-position scalar values (B, T) for the value head."""
        h = self.hidden(idx)
        if self.config.head == "value":
            return self.score(h).squeeze(-1)
        return self.lm_head(h)

    def num_params(self, embeddings: bool = True) -> int:
        """Parameters, each shared tensor once; `embeddings=False` leaves out the input table, whose
        lookup costs no FLOPs (a tied table still counts once, as the output head's matmul)."""
        n = sum(p.numel() for p in self.parameters())
        if not embeddings and not (self.config.head == "lm" and self.config.tie_embeddings):
            n -= self.embed_tokens.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token: 6N for the matmuls forward and backward plus 12·L·d·T for attention
        (PaLM appendix B; nanoGPT's estimate_mfu)."""
        c = self.config
        return 6 * self.num_params(embeddings=False) + 12 * c.n_layers * c.d_model * seq_len


def with_head(config: ModelConfig, head: Head) -> ModelConfig:
    return replace(config, head=head)
