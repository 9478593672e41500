"""Turn a GGUF checkpoint into a safetensors model folder that vLLM and transformers load as they are.

Run as a script in the generation server's venv (it has torch and transformers; the project's venv
need not): `python convert_gguf.py GGUF OUT_DIR`. It imports nothing from lmforge.
transformers dequantizes the GGUF weights on load (`gguf_file=`, fp32); to save them as plain
safetensors, the loaded model's quantizer and `quantization_config` must be cleared first, or
`save_pretrained` writes a config that claims GGUF quantization (DESIGN §8). The folder is written
beside OUT_DIR under a temporary name and renamed, so it appears only complete.
"""

from __future__ import annotations

import os
import shutil
import sys


def convert(gguf_path: str, out_dir: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(gguf_path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = f"{out_dir.rstrip('/')}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    os.replace(tmp, out_dir)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: convert_gguf.py GGUF OUT_DIR")
    convert(sys.argv[1], sys.argv[2])
