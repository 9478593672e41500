"""Benchmark: Self-Instruct's ROUGE-L novelty filter, ours (`NoveltyFilter`) vs the naive loop of rouge-score.

    python bench/novelty_filter.py [--instructions 50000] [--naive 2000] [--threshold 0.7]
                                   [--json bench/results/novelty_filter.json]

Input: `--instructions` synthetic instructions built deterministically (seeded `random`) from the
seed tasks: each is a seed instruction with about half its words swapped for words of the seed
file's vocabulary (drawn with Zipf weights, so "the", "a", "and" are as common as in real text)
plus up to 8 more such words; a quarter are near-duplicates of an earlier one (1–2 words replaced,
deleted or inserted), so the filter has real rejections to make. The pool starts with the seed
instructions, as in a generation run, and each instruction is streamed through `accept` in order.

(a) **common prefix**: the first `--naive` instructions through the naive anchor, the way the
    original Self-Instruct code filters: `RougeScorer(["rougeL"], use_stemmer=False).score(candidate,
    pool_item)` against every pool member in a plain loop, single process, keep if the max < threshold;
    then through ours. Both must accept the same instructions and report the same max score for
    every candidate (compared with ==). Ratio = naive seconds / our seconds.
(b) **full stream**: all `--instructions` through ours: instructions/s and accepted count.
Wall and CPU time (this VM's wall time varies ±10%); one process, the sides one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._harness import cpu_seconds, peak_rss_mb  # noqa: E402
from pipelines.synthetic.self_instruct import SEED_TASKS, NoveltyFilter, load_seed_tasks  # noqa: E402


def build_instructions(n: int, seed_file: Path, rng_seed: int = 0, near_duplicates: float = 0.25) -> list[str]:
    """`n` instructions, the same for the same arguments (see the module docstring)."""
    tasks = load_seed_tasks(seed_file)
    text = " ".join(t.instruction + " " + " ".join(i.input + " " + i.output for i in t.instances) for t in tasks)
    vocabulary = [w for w, _ in Counter(re.findall(r"[a-z']+", text.lower())).most_common()]
    weights = [1 / rank for rank in range(1, len(vocabulary) + 1)]
    rng = random.Random(rng_seed)
    made: list[str] = []
    while len(made) < n:
        if made and rng.random() < near_duplicates:
            words = rng.choice(made).split()
            for _ in range(rng.randint(1, 2)):
                edit, at = rng.randrange(3), rng.randrange(len(words))
                if edit == 0:
                    words[at] = rng.choices(vocabulary, weights)[0]
                elif edit == 1 and len(words) > 4:
                    del words[at]
                else:
                    words.insert(at, rng.choices(vocabulary, weights)[0])
            made.append(" ".join(words))
            continue
        words = rng.choice(tasks).instruction.rstrip(".?").split()
        words = [w if rng.random() < 0.5 else rng.choices(vocabulary, weights)[0] for w in words]
        words += rng.choices(vocabulary, weights, k=rng.randint(0, 8))
        made.append(" ".join(words).capitalize() + ".")
    return made


def naive(seeds: list[str], stream: list[str], threshold: float) -> tuple[list[bool], list[float]]:
    """The reference: every candidate scored by rouge-score against every pool member."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = list(seeds)
    kept, best = [], []
    for candidate in stream:
        score = max((scorer.score(candidate, p)["rougeL"].fmeasure for p in pool), default=0.0)
        kept.append(score < threshold)
        best.append(score)
        if score < threshold:
            pool.append(candidate)
    return kept, best


def ours(seeds: list[str], stream: list[str], threshold: float) -> tuple[list[bool], list[float]]:
    novelty = NoveltyFilter(threshold)
    for s in seeds:
        novelty.add(s)
    kept, best = [], []
    for candidate in stream:
        ok, score = novelty.accept(candidate)
        kept.append(ok)
        best.append(score)
    return kept, best


def timed(fn, *args) -> tuple[object, float, float]:  # noqa: ANN001
    started, cpu = time.perf_counter(), cpu_seconds()
    out = fn(*args)
    return out, time.perf_counter() - started, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instructions", type=int, default=50_000, help="instructions streamed through ours")
    parser.add_argument("--naive", type=int, default=2_000, help="the common prefix run through both (naive is O(n²))")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--seed-file", type=Path, default=SEED_TASKS)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "novelty_filter.json")
    args = parser.parse_args()
    seeds = [t.instruction for t in load_seed_tasks(args.seed_file)]
    stream = build_instructions(max(args.instructions, args.naive), args.seed_file)
    prefix = stream[: args.naive]
    print(f"{len(stream)} instructions ({len(seeds)} seeds in the pool first), threshold {args.threshold}")

    (naive_kept, naive_best), naive_s, naive_cpu = timed(naive, seeds, prefix, args.threshold)
    (our_kept, our_best), ours_s, ours_cpu = timed(ours, seeds, prefix, args.threshold)
    same_accepted = naive_kept == our_kept
    same_scores = naive_best == our_best
    (full_kept, _), full_s, full_cpu = timed(ours, seeds, stream[: args.instructions], args.threshold)

    rows = [
        ("naive rouge-score loop", len(prefix), sum(naive_kept), naive_s, naive_cpu),
        ("ours NoveltyFilter", len(prefix), sum(our_kept), ours_s, ours_cpu),
        ("ours NoveltyFilter", args.instructions, sum(full_kept), full_s, full_cpu),
    ]
    print(f"{'side':<24}{'streamed':>10}{'accepted':>10}{'wall s':>10}{'cpu s':>10}{'instr/s':>12}")
    for side, n, kept, wall, cpu in rows:
        print(f"{side:<24}{n:>10}{kept:>10}{wall:>10.2f}{cpu:>10.2f}{n / wall:>12.0f}")
    ratio, cpu_ratio = naive_s / ours_s, naive_cpu / ours_cpu
    print(
        f"common prefix of {len(prefix)}: ours {ratio:.0f}x the naive loop (CPU time {cpu_ratio:.0f}x); "
        f"identical accepted sets: {same_accepted}; identical max scores: {same_scores}"
    )
    rate = args.instructions / full_s
    print(f"full stream: {rate:.0f} instructions/s, {sum(full_kept)} accepted; peak RSS {peak_rss_mb():.0f} MB")
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "threshold": args.threshold,
        "seed_instructions": len(seeds),
        "prefix": {
            "instructions": len(prefix),
            "accepted": {"naive": sum(naive_kept), "ours": sum(our_kept)},
            "seconds": {"naive": round(naive_s, 3), "ours": round(ours_s, 3)},
            "cpu_seconds": {"naive": round(naive_cpu, 3), "ours": round(ours_cpu, 3)},
            "ratio": round(ratio, 1),
            "cpu_ratio": round(cpu_ratio, 1),
            "identical_accepted": same_accepted,
            "identical_max_scores": same_scores,
        },
        "full": {
            "instructions": args.instructions,
            "accepted": sum(full_kept),
            "seconds": round(full_s, 3),
            "cpu_seconds": round(full_cpu, 3),
            "instructions_per_s": round(args.instructions / full_s, 1),
        },
        "peak_rss_mb": round(peak_rss_mb()),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    if not (same_accepted and same_scores):
        sys.exit("ours and the naive loop disagree")


if __name__ == "__main__":
    main()
