"""Decoding the default run's pairs: today's full-prompt path vs the shared-prefix KV cache, side by side in one run.

Target (issue #12): the shared-prefix path (``add_decoded_text(shared_prefix=True)``, opt-in) decodes >= 2x
faster than prefilling the whole copy prompt P_d for every pair (``shared_prefix=False``), with identical greedy
text. The workload is the default ``embedsdg run``: 24 pairs from the built-in word-problem pool, one batch of 32,
the default token budget. Both paths are timed in the same process, alternating, the prefix cache cleared before
each shared-prefix run (its one-off prefill is counted).

    python benchmarks/bench_decode.py [--pairs 24] [--pool 300] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--pool", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch
    from datasets import Dataset, disable_caching

    from embedsdg_hf import add_coords, add_decoded_text, add_embeddings, add_interpolations, fit_reducer
    from embedsdg_hf.common.models import load_student
    from embedsdg_hf.data.word_problems import make_word_problems
    from embedsdg_hf.generation import decode

    disable_caching()  # a benchmark: every map really runs
    load_student(args.model)
    pool = make_word_problems(args.pool, seed=0)
    embedded = add_embeddings(pool, model=args.model)
    reducer = fit_reducer(embedded, n_components=2, seed=0)
    coords = np.asarray(add_coords(embedded, reducer)["coords"])
    rng = np.random.default_rng(0)
    seeds = [rng.choice(len(pool), size=2, replace=False).tolist() for _ in range(args.pairs)]
    raw = Dataset.from_dict(
        {
            "seed_a": [a for a, _ in seeds],
            "seed_b": [b for _, b in seeds],
            "region_lower": [np.minimum(coords[a], coords[b]).tolist() for a, b in seeds],
            "region_upper": [np.maximum(coords[a], coords[b]).tolist() for a, b in seeds],
        }
    )
    pairs = add_interpolations(raw, pool, model=args.model, reducer=reducer)
    paths = {"full_prompt": False, "shared_prefix": True}
    times = {name: [] for name in paths}
    texts = {}
    for _ in range(args.repeats):  # alternate, so drift on a shared machine hits both paths alike
        for name, shared in paths.items():
            decode._prefix_cache.cache_clear()
            start = time.perf_counter()
            out = add_decoded_text(pairs, pool, model=args.model, shared_prefix=shared)
            times[name].append(time.perf_counter() - start)
            texts[name] = out["decoded_text"]
    same = texts["full_prompt"] == texts["shared_prefix"]
    n_same = sum(a == b for a, b in zip(texts["full_prompt"], texts["shared_prefix"]))
    # where the texts that differ part ways, as a share of the full-prompt text (bf16 rounding flips near-ties)
    parted = [
        next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))) / max(len(a), 1)
        for a, b in zip(texts["full_prompt"], texts["shared_prefix"])
        if a != b
    ]
    med = {name: statistics.median(t) for name, t in times.items()}
    ratio = med["full_prompt"] / med["shared_prefix"]
    print(f"{args.pairs} pairs, one batch, median of {args.repeats}, torch threads {torch.get_num_threads()}\n")
    print("| path | seconds | pairs/s |")
    print("|---|---:|---:|")
    for name in paths:
        print(f"| {name} | {med[name]:.1f} | {args.pairs / med[name]:.3f} |")
    print(f"\nshared_prefix / full_prompt throughput = {ratio:.2f}x (target >= 2); identical: {n_same}/{args.pairs}")
    print(f"differing texts part ways at these shares of their length: {[round(x, 2) for x in parted]}")
    RESULTS.mkdir(exist_ok=True)
    result = {
        "pairs": args.pairs,
        "pool": args.pool,
        "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "speedup": round(ratio, 2),
        "identical_texts": same,
        "identical_count": n_same,
        "differing_texts_part_at": [round(x, 2) for x in parted],
        "load_average": os.getloadavg(),
    }
    (RESULTS / "decode.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
