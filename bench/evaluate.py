"""Benchmark: evaluation throughput (bytes of text scored per second), ours vs a plain transformers loop,
same model, same text, same numbers.

    python bench/evaluate.py [--model DIR] [--lake lake] [--parallel DIR] [--languages 8] [--lines 20]
                             [--repeats 3] [--json bench/results/evaluate.json]

The model is a Hugging Face Llama folder: by default the one `lmforge run` serves (SmolLM2-135M-Instruct,
converted into `lake/models/`), else the sample's pretrained export. The text is the first `--lines`
lines of `--languages` FLORES languages (`../shared/data/flores200-dev`), each line a document.

- **ours**: `model.text_scoring.score_texts` on the model loaded into our Transformer (`model.loading`):
  encode_batch, windows sorted by length and batched up to a token budget, the output head applied only
  to the scored positions.
- **plain transformers**: `AutoModelForCausalLM` (fp32, sdpa), one document at a time: encode, forward,
  cross-entropy summed over the document's tokens (in the perplexity guide's strided windows where a
  document is longer than the model's window). The anchor (target ≥ 1.0×).

Both score `<|endoftext|>` + the line's tokens, and the totals are checked equal (rel 1e-4) on every
repetition. Sides alternate; medians and the paired ratio are printed; the clocks cover encoding too.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from bench._harness import paired_ratio  # noqa: E402
from model.loading import load_model  # noqa: E402
from model.text_scoring import encode_texts, score_texts  # noqa: E402
from pipelines.common.parallel_text import read_parallel_lines  # noqa: E402
from pipelines.lake import Lake  # noqa: E402

FLORES = Path("../shared/data/flores200-dev")


def default_model(lake: Path) -> Path:
    for candidate in (lake / "models" / "SmolLM2-135M-Instruct", lake / "checkpoints" / "sample-pretrain" / "hf"):
        if (candidate / "config.json").is_file():
            return candidate
    sys.exit(f"no model in {lake}/models or {lake}/checkpoints/sample-pretrain/hf: run `make run`, or pass --model")


def plain_transformers(model: torch.nn.Module, tokenizer: Tokenizer, texts: list[str]) -> float:
    """transformers' perplexity-guide loop, one document at a time: strided windows of the model's
    length (stride = half) where a document is longer, else one forward."""
    width = model.config.max_position_embeddings
    nats = 0.0
    with torch.inference_mode():
        for ids in encode_texts(tokenizer, texts):
            x, previous_end = torch.from_numpy(ids)[None], 0
            for begin in range(0, x.shape[1], width // 2):
                end = min(begin + width, x.shape[1])
                scored = end - max(previous_end, 1)
                logits = model(x[:, begin:end]).logits[0, -scored - 1 : -1]
                nats += F.cross_entropy(logits.float(), x[0, end - scored : end], reduction="sum").item()
                previous_end = end
                if end == x.shape[1]:
                    break
    return nats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--lake", type=Path, default=Path("lake"))
    parser.add_argument("--parallel", type=Path, default=FLORES)
    parser.add_argument("--languages", type=int, default=8)
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.parallel.is_dir():
        sys.exit(f"no aligned text at {args.parallel}: pass --parallel")
    folder = args.model or default_model(args.lake)
    aligned = read_parallel_lines(args.parallel)
    languages = ["eng_Latn"] + [lang for lang in sorted(aligned) if lang != "eng_Latn"][: args.languages - 1]
    texts = [line for lang in languages for line in aligned[lang][: args.lines]]
    nbytes = sum(len(t.encode()) for t in texts)

    from transformers import AutoModelForCausalLM

    ours_model = load_model(str(folder), Lake.at(args.lake)).model
    hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa").eval()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    plain_transformers(hf_model, tokenizer, texts[:4])  # warm both sides' caches and thread pools
    score_texts(ours_model, tokenizer, texts[:4])

    ours_s, plain_s = [], []
    for _ in range(args.repeats):
        tick = time.perf_counter()
        ours = score_texts(ours_model, tokenizer, texts)
        ours_s.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        theirs = plain_transformers(hf_model, tokenizer, texts)
        plain_s.append(time.perf_counter() - tick)
        if not math.isclose(float(ours.nats.sum()), theirs, rel_tol=1e-4):
            sys.exit(f"the two sides disagree: {ours.nats.sum():.6f} vs {theirs:.6f} nats")
        print(f"ours {nbytes / ours_s[-1]:,.0f} B/s · plain transformers {nbytes / plain_s[-1]:,.0f} B/s", flush=True)

    result = {
        "model": str(folder),
        "parameters": ours_model.num_params(),
        "text": f"{len(languages)} FLORES languages × {args.lines} lines",
        "bytes": nbytes,
        "tokens": int(ours.tokens.sum()),
        "bits_per_byte": ours.bits_per_byte(),
        "ours_bytes_per_s": nbytes / statistics.median(ours_s),
        "transformers_bytes_per_s": nbytes / statistics.median(plain_s),
        "ratio_of_medians": statistics.median(plain_s) / statistics.median(ours_s),
        "paired_ratio": paired_ratio(plain_s, ours_s),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "device": "cpu",
    }
    print(
        f"{result['model']} ({result['parameters']:,} parameters), {result['text']}, {nbytes:,} bytes, "
        f"{result['bits_per_byte']:.3f} bits/byte\n"
        f"ours {result['ours_bytes_per_s']:,.0f} B/s vs plain transformers {result['transformers_bytes_per_s']:,.0f} B/s: "
        f"{result['ratio_of_medians']:.2f}x (paired {result['paired_ratio']:.2f}x)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
