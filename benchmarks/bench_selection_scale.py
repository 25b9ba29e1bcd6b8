"""The ``rarity`` selector's analysis stage (views + sparsity + pairs) on large built-in pools (issue 21, item 6).

Sparsity is measured against a fixed-size random reference sample of the pool (``reference_size``, default 8000
rows), so the k-NN step costs n x reference instead of n x n. With ``--exact-check`` the selection is repeated with
the whole pool as the reference and the overlap of the chosen centres is reported (the exact run is O(n^2): use it
at the smaller sizes; at 400k rows it takes about an hour, in blocks of ~256 MB). Rows measured now replace the
rows of the same size in ``benchmarks/results/selection_scale.json``; the other sizes' rows stay, each with its date.

    python benchmarks/bench_selection_scale.py --rows 100000 400000 [--exact-check 20000] [--pairs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "smollm2-135m-instruct"


def _pool(n: int):
    """``n`` built-in questions with random 2-D map coordinates (the map is not timed; only the boxes use it)."""
    import datasets
    import numpy as np

    from embedsdg_hf.data.word_problems import make_word_problems

    questions = make_word_problems(n, seed=0)["question"]
    coords = np.random.default_rng(0).random((n, 2), dtype=np.float32)
    features = datasets.Features(
        {"question": datasets.Value("string"), "coords": datasets.List(datasets.Value("float32"), length=2)}
    )
    return datasets.Dataset.from_dict({"question": questions, "coords": coords}, features=features)


def _select(pool, n_pairs: int, **settings):
    from embedsdg_hf.space.rarity import rarity_seed_pairs

    t0 = time.perf_counter()
    regions, pairs, spec = rarity_seed_pairs(pool, n_pairs=n_pairs, model=MODEL, **settings)
    return time.perf_counter() - t0, regions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 400_000])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--exact-check", type=int, nargs="*", default=[], help="Sizes also run with reference = pool.")
    args = parser.parse_args()
    results = []
    for n in sorted(set(args.rows) | set(args.exact_check)):
        pool = _pool(n)
        seconds, regions = _select(pool, args.pairs)
        row = {
            "rows": n,
            "seconds": round(seconds, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "load": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        if n in args.exact_check:
            exact_seconds, exact = _select(pool, args.pairs, reference_size=n)
            a, b = set(regions["centre"]), set(exact["centre"])
            row.update(
                {
                    "exact_seconds": round(exact_seconds, 1),
                    "exact_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                    "centre_overlap": round(len(a & b) / len(b), 3),
                }
            )
        print(json.dumps(row), flush=True)
        results.append(row)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "selection_scale.json"
    measured = {row["rows"] for row in results}
    kept = [row for row in json.loads(path.read_text()) if row["rows"] not in measured] if path.exists() else []
    path.write_text(json.dumps(sorted(kept + results, key=lambda row: row["rows"]), indent=2))


if __name__ == "__main__":
    main()
