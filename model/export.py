"""Export our Transformer as a Hugging Face Llama folder, and read such a folder back (DESIGN §4 Trainer).

`export_hf` writes what transformers (`trust_remote_code=False`), vLLM and the Hub load as they are:
a `LlamaForCausalLM` (LM head) or a `LlamaForSequenceClassification` with one label (value head),
its `config.json`, `model.safetensors` in HF's parameter names (the fused `qkv` and `gate_up` split
back into q/k/v and gate/up), `generation_config.json` for a causal LM, and the tokenizer's files.
The folder appears whole or not at all (`publish_folder`). `load_exported` is the reverse.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
from pathlib import Path

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from model.hf_layout import ARCHITECTURES, hf_config, hf_state_dict
from model.transformer import ModelConfig, Transformer
from pipelines.common.errors import UserError
from pipelines.lake import MANIFEST, publish_folder

EOS_TOKEN = "<|endoftext|>"  # ends a document (pretraining)
END_OF_TURN = "<|im_end|>"  # ends an assistant turn (ChatML); generation stops at either
PAD_TOKEN = "<|pad|>"
WEIGHTS = "model.safetensors"


class ExportError(UserError, ValueError):
    """A model or tokenizer that cannot be exported, or a folder `load_exported` will not read."""


def export_hf(
    model: Transformer, tokenizer_dir: str | os.PathLike[str], dest: str | os.PathLike[str], *, generation: dict | None = None
) -> Path | str:
    """Write `model` with the tokenizer of `tokenizer_dir` as an HF Llama folder at `dest` (a path or
    fsspec URL; an existing folder is replaced whole); returns where it is (a Path when local).

    `generation` adds defaults to `generation_config.json` (e.g. `{"temperature": 0.7, "do_sample": True}`).
    Raises ExportError when the tokenizer folder has no `tokenizer.json`, holds ids the model's vocabulary
    lacks, or (value head) has no pad token, which HF's classifier needs to find each sequence's end.
    """
    model = getattr(model, "_orig_mod", model)  # a torch.compile'd model exports its original module
    c = model.config
    source_fs, source = fsspec.url_to_fs(str(tokenizer_dir))
    dest_fs, dest_path = fsspec.url_to_fs(str(dest))
    dest = dest_path if isinstance(dest_fs, LocalFileSystem) else dest_fs.unstrip_protocol(dest_path)
    # Built beside `dest` when it is local (same disk, and a crash leaves only a hidden temporary folder).
    parent = posixpath.dirname(dest_path.rstrip("/")) if isinstance(dest_fs, LocalFileSystem) else None
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{posixpath.basename(dest_path.rstrip('/'))}.", suffix=".build", dir=parent) as tmp:
        os.chmod(tmp, 0o755)  # the temporary folder is private; the published one is not
        _copy_tokenizer(source_fs, source, tmp)
        ids = _special_ids(Path(tmp), c)
        config = hf_config(c, ids)
        Path(tmp, "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if c.head == "lm":
            _generation_config(ids, generation or {}).save_pretrained(tmp)
        save_file(hf_state_dict(model), os.path.join(tmp, WEIGHTS), metadata={"format": "pt"})
        publish_folder(dest_fs, tmp, dest)
    return Path(dest) if parent is not None else dest


def load_exported(folder: str | os.PathLike[str]) -> Transformer:
    """Our Transformer from a folder `export_hf` wrote (or any plain HF Llama with one safetensors file).

    Raises ExportError for a config that is not a Llama our model can hold: code of its own
    (`auto_map`, which would need `trust_remote_code`), another architecture, biases, RoPE scaling.
    """
    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    architecture = (raw.get("architectures") or ["?"])[0]
    head = {v: k for k, v in ARCHITECTURES.items()}.get(architecture)
    if "auto_map" in raw or raw.get("model_type") != "llama" or head is None:
        raise ExportError(
            f"{folder} holds a {raw.get('model_type')!r} model ({architecture}"
            f"{', with code of its own (trust_remote_code)' if 'auto_map' in raw else ''}); "
            f"only {' and '.join(ARCHITECTURES.values())} without remote code can be loaded"
        )
    from transformers import LlamaConfig

    hf = LlamaConfig.from_dict(raw)  # reads `rope_parameters` or the legacy `rope_theta`
    rope = hf.rope_parameters or {}
    unsupported = {
        "attention_bias": hf.attention_bias,
        "mlp_bias": hf.mlp_bias,
        "hidden_act": hf.hidden_act != "silu",
        "rope_type": rope.get("rope_type", "default") != "default",
        "num_labels": head == "value" and hf.num_labels != 1,
    }
    if any(unsupported.values()):
        raise ExportError(f"{folder}: a Llama our model cannot hold ({', '.join(k for k, v in unsupported.items() if v)})")
    config = ModelConfig(
        vocab_size=hf.vocab_size,
        d_model=hf.hidden_size,
        n_layers=hf.num_hidden_layers,
        n_heads=hf.num_attention_heads,
        n_kv_heads=hf.num_key_value_heads,
        ffn_hidden=hf.intermediate_size,
        max_seq_len=hf.max_position_embeddings,
        rope_theta=float(rope.get("rope_theta", 10_000.0)),
        norm_eps=hf.rms_norm_eps,
        tie_embeddings=bool(hf.tie_word_embeddings),
        head=head,
    )
    if (hf.head_dim or config.head_dim) != config.head_dim:
        raise ExportError(f"{folder}: head_dim {hf.head_dim} is not hidden_size / num_attention_heads")
    if not (folder / WEIGHTS).is_file():
        raise ExportError(f"{folder} has no single {WEIGHTS} (sharded checkpoints are not read)")
    model = Transformer(config)
    model.load_state_dict(_our_state_dict(load_file(folder / WEIGHTS), config))
    return model


def _our_state_dict(hf: dict[str, torch.Tensor], c: ModelConfig) -> dict[str, torch.Tensor]:
    ours = {"embed_tokens.weight": hf["model.embed_tokens.weight"], "norm.weight": hf["model.norm.weight"]}
    for i in range(c.n_layers):
        p, h = f"layers.{i}.", f"model.layers.{i}."
        attn = [hf[f"{h}self_attn.{n}_proj.weight"] for n in "qkv"]
        ours |= {
            p + "self_attn.qkv.weight": torch.cat(attn),
            p + "self_attn.o_proj.weight": hf[h + "self_attn.o_proj.weight"],
            p + "mlp.gate_up.weight": torch.cat([hf[h + "mlp.gate_proj.weight"], hf[h + "mlp.up_proj.weight"]]),
            p + "mlp.down_proj.weight": hf[h + "mlp.down_proj.weight"],
            p + "input_layernorm.weight": hf[h + "input_layernorm.weight"],
            p + "post_attention_layernorm.weight": hf[h + "post_attention_layernorm.weight"],
        }
    if c.head == "value":
        ours["score.weight"] = hf["score.weight"]
    else:  # tied: the head is the embedding table, whether or not the file repeats it
        ours["lm_head.weight"] = ours["embed_tokens.weight"] if c.tie_embeddings else hf["lm_head.weight"]
    return ours


def _copy_tokenizer(fs: fsspec.AbstractFileSystem, source: str, folder: str) -> None:
    """Every file of the tokenizer folder but its lake manifest (training provenance, not a tokenizer file)."""
    if not fs.isfile(posixpath.join(source, "tokenizer.json")):
        raise ExportError(
            f"{source} is not a tokenizer folder (no tokenizer.json): give the folder `lmforge tokenizer train` wrote"
        )
    for path in fs.ls(source, detail=False):
        name = posixpath.basename(path.rstrip("/"))
        if name != MANIFEST and fs.isfile(path):
            if isinstance(fs, LocalFileSystem):
                shutil.copyfile(path, os.path.join(folder, name))
            else:
                fs.get(path, os.path.join(folder, name))


def _special_ids(folder: Path, c: ModelConfig) -> dict[str, int | None]:
    """bos/eos/pad ids as the tokenizer config names them (eos `<|endoftext|>`, pad `<|pad|>` by default),
    and `<|im_end|>`'s; checked to fit the model's vocabulary."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    settings = json.loads((folder / "tokenizer_config.json").read_text()) if (folder / "tokenizer_config.json").is_file() else {}

    def token_id(key: str, default: str | None) -> int | None:
        token = settings.get(key, default)
        token = token.get("content") if isinstance(token, dict) else token  # an AddedToken written out
        return tokenizer.token_to_id(token) if token else None

    ids = {
        "bos": token_id("bos_token", None),
        "eos": token_id("eos_token", EOS_TOKEN),
        "pad": token_id("pad_token", PAD_TOKEN),
        "end_of_turn": tokenizer.token_to_id(END_OF_TURN),
    }
    if tokenizer.get_vocab_size() > c.vocab_size:
        raise ExportError(
            f"the tokenizer has {tokenizer.get_vocab_size()} tokens but the model's vocabulary only {c.vocab_size}: "
            "export with the tokenizer the model was trained with"
        )
    if c.head == "value" and ids["pad"] is None:
        raise ExportError("a reward model needs a pad token (HF's classifier scores the last token before padding)")
    return ids


def _generation_config(ids: dict[str, int | None], extra: dict):
    from transformers import GenerationConfig

    stops = [i for i in (ids["end_of_turn"], ids["eos"]) if i is not None]  # the chat turn's end first
    return GenerationConfig(**{"bos_token_id": ids["bos"], "eos_token_id": stops, "pad_token_id": ids["pad"]} | extra)
